"""A killed run's directory, hand-built: `resilience rollback` undoes its fault and seals it as aborted.

No stack and no network: the target is a fake implementing the base Target
interface; its URL points at a closed port (the read-back is skipped because the
platform does not answer), or at a tiny local HTTP server standing in for the
platform's /orders/lookup.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from resilience import evidence
from resilience.cli import main
from resilience.config import Targets, load_settings
from resilience.history import PARTIAL, History, Record
from resilience.recheck import recheck
from resilience.salvage import rollback_and_seal, unsealed_message
from resilience.fault_registry import FAULTS, FaultCall
from resilience.targets.base import Nemesis, Platform, PlatformEvent, Recorder, RollbackStep, StackStatus, no_record
from resilience.targets.target import COMPOSITIONS, Target

ORIGIN_WALL = 1_750_000_000.0
FAULT_T = 10.0
KILL_T = 20.0


class QuietPlatform(Platform):
    """Implements the platform protocol and never contacts anything."""

    name = "local"

    def __init__(self, url: str) -> None:
        self._url = url

    def up(self) -> StackStatus:
        raise AssertionError("sealing a killed run must not deploy anything")

    def down(self) -> None:
        raise AssertionError("sealing a killed run must not tear anything down")

    def status(self) -> StackStatus:
        return StackStatus(self.name, True, self._url, "process")

    def url(self) -> str:
        return self._url

    def ready_replicas(self) -> int:
        return 3

    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        return []


class FakeNemesis(Nemesis):
    """Supports every fault; records the rollbacks and heals it is asked for."""

    name = "local"
    SUPPORT = {name: None for name, fault in FAULTS.items() if fault.touches_target}

    def __init__(self) -> None:
        self.rolled_back: list[RollbackStep] = []
        self.healed = 0

    def plan(self, call: FaultCall) -> list[str]:
        return [f"{call.fault}: fake"]

    def inject(self, call: FaultCall, seed: int | None = None, record: Recorder = no_record) -> RollbackStep:
        if call.fault == "lose_zone":
            return RollbackStep("restore_zone", {"zone": "zone-a"}, "restore zone-a")
        return RollbackStep("none")

    def rollback(self, step: RollbackStep) -> None:
        self.rolled_back.append(step)

    def heal(self) -> None:
        self.healed += 1


class FakeTarget(Target):
    """The local composition of a fake platform and a fake nemesis."""

    def __init__(self, url: str) -> None:
        self.nemesis = FakeNemesis()
        super().__init__(COMPOSITIONS["local"], QuietPlatform(url), {"local": self.nemesis})

    @property
    def rolled_back(self) -> list[RollbackStep]:
        return self.nemesis.rolled_back

    @property
    def healed(self) -> int:
        return self.nemesis.healed

    def primary_zone(self) -> str | None:
        return "zone-a"


def closed_port_url() -> str:
    """A URL nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def load_rows(kill_t: float = KILL_T) -> list[Record]:
    """Requests every 0.05 s from 0 s to the kill; failing from the fault on; every 4th an acknowledged order."""
    rows = []
    for i in range(int(kill_t / 0.05)):
        t = round(i * 0.05, 3)
        failing = t >= FAULT_T
        if i % 4 == 0:
            rows.append(Record(t, "load", "POST /orders", "fail" if failing else "ok", 0.01, f"k{i}",
                               None if failing else {"order_id": f"o{i}"}))
        else:
            rows.append(Record(t, "load", "GET /menu", "fail" if failing else "ok", 0.01))
    return rows


def harness_records() -> list[Record]:
    return [
        Record(0.5, "platform", "stack", "info", detail={"url": "http://lb", "zone_mode": "process",
                                                         "components": [{}, {}, {}]}),
        Record(1.0, "phase", "steady", "info"),
        Record(FAULT_T, "fault", "inject", "ok", detail={"capability": "lose_zone", "arguments": {"zone": "primary"},
                                                         "rollback": {"capability": "restore_zone"}}),
        Record(FAULT_T, "phase", "fault", "info"),
    ]


def make_killed_run(tmp_path: Path, measures: list[str] | None = None) -> Path:
    """What a harness killed mid-fault leaves: no result.json, no seal; a streamed history and load rows."""
    reports = tmp_path / "reports"
    run_dir = reports / "20250615T120000Z-zone-failure"
    (run_dir / "load").mkdir(parents=True)
    evidence.record_start(run_dir, "zone-failure")
    experiment = {"title": "Losing a zone", "description": "A zone is lost.",
                  "extensions": [{"name": "resilience", "experiment": "zone-failure",
                                  "hypothesis": "The platform recovers within the RTO."}]}
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(experiment))
    (run_dir / "settings.json").write_text(json.dumps({
        "target": "local", "context": None, "profile": "short", "experiment": "zone-failure",
        "measures": measures or ["availability", "p99", "rto", "rpo"], "targets": Targets().__dict__,
        "load": {"users": 30, "stages": [], "user_class": "LunchRushUser"}}))
    (run_dir / "rollback.json").write_text(json.dumps({"target": "local", "context": None, "config": "defaults", "steps": [
        {"fault": "lose_zone", "arguments": {"zone": "primary"}, "status": "pending",
         "step": {"capability": "restore_zone", "arguments": {"zone": "zone-a"}, "description": "restore zone-a"}}]}))
    header = {"kind": "resilience-history", "version": 1, "origin_monotonic": 100.0, "origin_wall": ORIGIN_WALL,
              "partial": True}
    lines = [json.dumps(header)] + [json.dumps(r.to_row()) for r in harness_records()]
    (run_dir / PARTIAL).write_text("\n".join(lines) + "\n" + '[11.0,"controller","sca')  # cut mid-line by the kill
    rows = "".join(json.dumps(r.to_row()) + "\n" for r in load_rows())
    (run_dir / "load" / "rows.jsonl").write_text(rows + '[20.01,"load","GET /me')  # the worker's last line, cut
    return run_dir


def seal(run_dir: Path, target: FakeTarget) -> tuple[Any, list[str]]:
    said: list[str] = []
    salvage = rollback_and_seal(run_dir, load_settings(None), target_factory=lambda *a, **k: target, say=said.append)
    return salvage, said


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in result["measurements"]}


def test_a_killed_run_is_rolled_back_and_sealed_as_aborted(tmp_path: Path) -> None:
    run_dir = make_killed_run(tmp_path)
    target = FakeTarget(closed_port_url())
    salvage, said = seal(run_dir, target)

    assert [s.capability for s in target.rolled_back] == ["restore_zone"] and salvage.failed_rollbacks == 0
    assert json.loads((run_dir / "rollback.json").read_text())["steps"][0]["status"] == "done"
    result = json.loads((run_dir / "result.json").read_text())
    assert salvage.result is not None and salvage.result.to_json() == result  # what `resilience rollback` read back
    assert result["verdict"] == "aborted"
    assert result["aborted_reason"].startswith("the harness was killed during fault; sealed by `resilience rollback` at ")
    assert result["fault"]["capability"] == "lose_zone" and result["fault"]["injected_t"] == FAULT_T
    assert result["target_detail"]["components"] == 3 and result["title"] == "Losing a zone"
    # every record up to the kill is in the final history; the half-written last lines are not
    history = History.load(run_dir / "history.jsonl")
    assert sum(1 for r in history.records if r.source == "load") == len(load_rows())
    assert [r.op for r in history.records if r.source == "phase"] == ["steady", "fault", "abort", "end"]
    assert any(r.source == "fault" and r.op == "rollback" and r.status == "ok" for r in history.records)
    assert not (run_dir / PARTIAL).exists()
    # the observation was cut short while the service failed: RTO inconclusive, not a breach
    measured = by_name(result)
    assert measured["rto_s"]["status"] == "inconclusive" and "cut short" in measured["rto_s"]["detail"]["reason"]
    assert measured["lost_writes"]["status"] == "inconclusive"  # the platform did not answer: unverified
    assert any("does not answer" in line for line in said)
    # reports, manifest, ledger: the run verifies and re-checks like any other
    for name in ("report.html", "report.pdf", "junit.xml", "events.jsonl", "journal.json", evidence.MANIFEST):
        assert (run_dir / name).is_file(), name
    checked = evidence.verify(run_dir, ledger=run_dir.parent / evidence.LEDGER)
    assert checked.ok and checked.status == evidence.UNSIGNED_INTACT, checked.summary()
    assert recheck(run_dir)[1]
    assert evidence.verify_ledger(run_dir.parent).never_sealed == []


def test_sealing_twice_changes_nothing(tmp_path: Path) -> None:
    run_dir = make_killed_run(tmp_path)
    seal(run_dir, FakeTarget(closed_port_url()))
    manifest = (run_dir / evidence.MANIFEST).read_text()
    _, said = seal(run_dir, FakeTarget(closed_port_url()))
    assert "already sealed" in said[-1] and (run_dir / evidence.MANIFEST).read_text() == manifest
    assert "nothing to roll back" in said[0]


class FakePlatform(BaseHTTPRequestHandler):
    """/health/ready and /orders/lookup: every order is found except those whose key ends in 0."""

    def do_GET(self) -> None:  # noqa: N802
        self._answer({"ready": True})

    def do_POST(self) -> None:  # noqa: N802
        keys = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["keys"]
        self._answer({"found": {k: {} for k in keys if not k.endswith("0")}})

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def platform_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePlatform)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_acknowledged_orders_are_read_back_when_the_platform_answers(tmp_path: Path, platform_url: str) -> None:
    run_dir = make_killed_run(tmp_path)
    seal(run_dir, FakeTarget(platform_url))
    lost = by_name(json.loads((run_dir / "result.json").read_text()))["lost_writes"]
    acked = [r for r in load_rows() if r.op == "POST /orders" and r.status == "ok"]
    missing = [r for r in acked if (r.key or "").endswith("0")]
    assert lost["detail"]["unverified"] == 0 and lost["detail"]["acknowledged"] == len(acked)
    assert lost["value"] == len(missing) > 0 and lost["status"] == "breached"


def test_check_report_and_verify_point_an_unsealed_run_to_resilience_rollback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = make_killed_run(tmp_path)
    assert "resilience rollback" in (unsealed_message(run_dir) or "")
    for command in ("check", "report"):
        assert main([command, str(run_dir)]) == 2
        err = capsys.readouterr().err
        assert "never sealed" in err and f"resilience rollback {run_dir}" in err, err
    assert main(["verify", str(run_dir)]) == 1
    out = capsys.readouterr().out
    assert "no-manifest" in out and f"resilience rollback {run_dir}" in out
    assert unsealed_message(tmp_path) is None  # not a run directory: no such advice


def test_a_run_killed_after_its_result_but_before_its_seal_is_sealed_as_it_stands(tmp_path: Path) -> None:
    run_dir = make_killed_run(tmp_path)
    seal(run_dir, FakeTarget(closed_port_url()))
    for name in (evidence.MANIFEST, "report.html"):
        (run_dir / name).unlink()
    (run_dir / ".report.pdf.tmp").write_text("half")  # the kill interrupted an atomic write
    _, said = seal(run_dir, FakeTarget(closed_port_url()))
    assert "stored verdict ABORTED" in said[-1]
    assert not (run_dir / ".report.pdf.tmp").exists() and (run_dir / "report.html").is_file()
    assert evidence.verify(run_dir).ok


# -- a damaged rollback.json: exit 2, one paragraph, nothing touched -----------------------------------------

GOOD_STEP = {"fault": "lose_zone", "arguments": {}, "status": "pending",
             "step": {"capability": "restore_zone", "arguments": {}, "description": "restore"}}


@pytest.mark.parametrize("content, expected", [
    ("{not json", "not valid JSON"),
    (json.dumps([GOOD_STEP]), "must be a JSON object"),
    (json.dumps({"target": "local", "steps": {"0": GOOD_STEP}}), "'steps' must be a list"),
    (json.dumps({"target": 3, "steps": []}), "'target' must be a string"),
    (json.dumps({"target": "local", "steps": [{**GOOD_STEP, "colour": "red"}]}),
     "steps[0] has unknown field(s) 'colour'"),
    (json.dumps({"target": "local", "steps": [{**GOOD_STEP, "step": {"capability": "x", "how": 1}}]}),
     "steps[0].step has unknown field(s) 'how'"),
    (json.dumps({"target": "local", "steps": [{**GOOD_STEP, "status": "maybe"}]}), "steps[0].status is 'maybe'"),
    (json.dumps({"target": "local", "steps": [{**GOOD_STEP, "arguments": []}]}),
     "steps[0].arguments must be an object"),
    (json.dumps({"target": "local", "steps": [{**GOOD_STEP, "fault": "drop_tables"}]}),
     "steps[0].fault is 'drop_tables', which is not a registered fault"),
])
def test_a_malformed_rollback_file_is_exit_2_naming_the_file_and_the_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str) -> None:
    (tmp_path / "rollback.json").write_text(content)
    assert main(["rollback", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "rollback.json") in err and expected in err, err
    assert "Traceback" not in err and err.count("\n") == 1  # one paragraph
    assert (tmp_path / "rollback.json").read_text() == content  # nothing rewritten
