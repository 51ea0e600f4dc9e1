"""Issue 3's must-shows: every experiment runs end to end under load on the real local stack
(short profile), leaves a run directory and a verdict; the measurements tell the truth. db-failover's run also
shows issue 20's RTO phases taken from the services' own signals."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from resilience.checkers.failover_phases import phases
from resilience.cli import main
from resilience.evidence import LEDGER, MANIFEST, verify
from resilience.history import PARTIAL, History, load_partial
from resilience.recheck import recheck
from resilience.targets.local.target import LocalTarget

from stack_helpers import ROOT, wait_until

pytestmark = pytest.mark.stack


def run(capsys: Any, reports: Path, experiment: str, *extra: str, profile: str = "short") -> tuple[int, dict[str, Any]]:
    code = main(["run", experiment, "--profile", profile, "--keep-up", "--json", "--quiet",
                 "--reports-dir", str(reports), "--seed", "3", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out[out.index("{"):])


def values(summary: dict[str, Any]) -> dict[str, Any]:
    return {m["name"]: m["value"] for m in summary["measurements"]}


def check_evidence(summary: dict[str, Any]) -> None:
    run_dir = Path(summary["run_dir"])
    for name in ("experiment.yaml", "settings.json", "journal.json", "history.jsonl", "events.jsonl",
                 "rollback.json", "result.json", "report.html", "report.pdf", "junit.xml", "MANIFEST.sha256"):
        assert (run_dir / name).is_file(), f"{name} missing from {run_dir}"
    rollback = json.loads((run_dir / "rollback.json").read_text())
    assert all(step["status"] == "done" for step in rollback["steps"]), rollback
    result, same = recheck(run_dir)
    assert same, "resilience check recomputed different measurements from the stored history"
    assert verify(run_dir).ok
    assert summary["verdict"] in ("pass", "fail", "inconclusive")
    assert summary["target"] == "local"


def check_failover_phases_from_signals(summary: dict[str, Any], records: list[Any]) -> None:
    """Patroni's leader key in etcd, Sentinel's events and HAProxy's server states were watched for the whole run,
    and each phase of the database failover comes from them, within the bound its configuration implies."""
    signals = [r for r in records if r.source == "signal"]
    ops = [r.op for r in signals]
    assert ops[0] == "watching" and ops[-1] == "stopped" and "unreachable" not in ops, ops
    assert signals[-1].detail == {"alive": []}  # every watch thread ended with the run
    found = phases(records)
    assert found is not None, "no failover found in the history"
    pg = found["postgres"]
    print(json.dumps({k: v for k, v in pg.items() if k != "phases"}, indent=1))
    assert pg["sources"]["detect"].startswith("signal/leader deleted")
    assert pg["sources"]["promote"].startswith("signal/leader set")
    assert pg["sources"]["route"].startswith("signal/lb_server")
    for phase in pg["phases"]:  # each measured and within its bound; route's margin is ~0.4 s, so on a busy
        assert phase["s"] is not None, phase  # machine it may report over its bound (reported, not judged)
        assert phase["within"] is not False or (phase["phase"] == "route" and phase["s"] <= 2 * phase["bound_s"]), phase
    # judged against db-failover's own targets (150 s, 360 s for production windows; / 30 here)
    print({m["name"]: (m["value"], m["target"], m["status"]) for m in summary["measurements"]
           if m["name"] in ("detection_s", "alert_cleared_s")})
    failover = next(m for m in summary["measurements"] if m["name"] == "failover_s")
    assert abs(failover["value"] - (pg["detect_s"] + pg["promote_s"] + pg["reconnect_s"])) < 0.01


@pytest.fixture
def healthy(stack: LocalTarget) -> LocalTarget:
    wait_until(lambda: stack.status().healthy and stack.ready_replicas() >= 3, 90, "a healthy stack")
    return stack


@pytest.mark.parametrize("experiment", ["pod-kill", "zone-failure", "db-failover", "redis-outage",
                                        "redis-failover", "traffic-spike"])
def test_experiment_runs_end_to_end(experiment: str, healthy: LocalTarget, capsys: Any, tmp_path: Path) -> None:
    # the spike's load comes from a Locust master and two workers (issue 12); the others from one process
    workers = 2 if experiment == "traffic-spike" else 1
    code, summary = run(capsys, tmp_path, experiment, "--workers", str(workers))
    assert code in (0, 1), summary
    assert summary["experiment"] == experiment
    check_evidence(summary)
    v = values(summary)
    if experiment in ("pod-kill", "zone-failure", "db-failover", "redis-outage", "redis-failover"):
        assert v["rto_s"] is not None and v["rto_s"] != "inf", v
        assert v["rto_s"] < 90
    if experiment in ("zone-failure", "db-failover"):  # synchronous replication: nothing acknowledged is lost
        assert v["lost_writes"] == 0 and v["rpo_s"] == 0, v
    if experiment in ("redis-outage", "redis-failover"):  # graceful degradation: orders keep succeeding
        assert v["availability_fault"] >= 0.98, v
    if experiment == "traffic-spike":
        assert v["autoscale_first_s"] is not None and v["autoscale_first_s"] != "inf", v
    # every request recorded once: the history's rows = the workers' own counts = Locust's own tally
    records = History.load(Path(summary["run_dir"]) / "history.jsonl").sorted()
    if experiment == "db-failover":  # issue 20 item 6: the RTO taken apart from the services' own signals
        check_failover_phases_from_signals(summary, records)
    load_summary = next(r.detail for r in records if r.source == "load" and r.op == "summary" and r.detail)
    assert load_summary["recorded"] == load_summary["reported"] == load_summary["locust_requests"] > 0, load_summary
    assert load_summary["dropped"] == 0 and load_summary["workers_expected"] == workers
    assert json.loads((Path(summary["run_dir"]) / "result.json").read_text())["load"]["workers"] == workers
    assert healthy.status().healthy or wait_until(lambda: healthy.status().healthy, 60, "the stack healthy again")


def test_measured_rto_matches_a_known_5s_outage(healthy: LocalTarget, capsys: Any, tmp_path: Path) -> None:
    code, summary = run(capsys, tmp_path, str(ROOT / "tests" / "experiments" / "freeze-replicas.yaml"), profile="full")
    check_evidence(summary)
    rto = values(summary)["rto_s"]
    assert rto is not None and math.isfinite(rto)
    frozen_s, outage_s = outage_caused(History.load(Path(summary["run_dir"]) / "history.jsonl").sorted())
    assert abs(frozen_s - 5.0) <= 0.2, f"the replicas were frozen {frozen_s:.3f} s, not 5 s"
    assert abs(rto - outage_s) <= 0.5, (f"measured RTO {rto:.3f} s for an outage of {outage_s:.3f} s "
                                        f"(frozen {frozen_s:.3f} s, then until the load balancer routed again)")


def outage_caused(records: list[Any]) -> tuple[float, float]:
    """How long the replicas were frozen, and how long users had no service: from the SIGSTOP until HAProxy routed
    to a replica again. HAProxy marks frozen replicas DOWN after `fall` timed-out checks and takes one back only
    after `rise` good ones, which a thawed replica answers after its backlog: on a busy machine that adds most of a
    second (0.78 s seen in CI). Both ends come from the supervisor's events and HAProxy's own states, not from the
    load whose RTO is being checked."""
    events = {r.detail["phase"]: r.t for r in records
              if r.source == "platform" and r.op == "fault:pause_replicas" and r.detail}
    frozen, thawed = events["inject"], events["undo"]
    went_down = any(r.source == "signal" and r.op == "lb_server" and r.detail and r.detail["status"] == "DOWN"
                    and frozen <= r.t <= thawed for r in records)
    back_up = [r.t for r in records if r.source == "signal" and r.op == "lb_server" and r.detail
               and r.detail["status"] == "UP" and r.t >= thawed]
    routed = (back_up[0] if back_up else math.inf) if went_down else thawed
    return thawed - frozen, routed - frozen


def test_invalid_experiment_is_exit_2_and_touches_nothing(healthy: LocalTarget, capsys: Any, tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text((ROOT / "experiments" / "pod-kill.yaml").read_text().replace("func: kill_replicas",
                                                                                 "func: kill_everything"))
    before = healthy.status()
    code = main(["run", str(bad), "--reports-dir", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert code == 2 and "kill_everything" in err and str(bad) in err
    assert not (tmp_path / "reports").exists()
    assert healthy.status().components == before.components


def _default_sigint() -> None:
    """In the child: SIGINT back to its default, so Python turns it into KeyboardInterrupt (Ctrl-C) even when
    the test runner was started with SIGINT ignored (e.g. in the background), which the child would inherit."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def _streamed_phases(run_dir: Path) -> list[str]:
    """The phases the live run has streamed to history.partial.jsonl so far."""
    return [r.op for r in load_partial(run_dir / PARTIAL)[0].records if r.source == "phase"]


def _start_run_and_wait_for_fault(reports: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-m", "resilience.cli", "run", "zone-failure", "--profile", "short",
                             "--keep-up", "--quiet", "--reports-dir", str(reports)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True, preexec_fn=_default_sigint)

    def fault_pending() -> bool:
        files = list(reports.glob("*-zone-failure/rollback.json"))
        return (bool(files) and any(s["status"] == "pending" for s in json.loads(files[0].read_text())["steps"])
                and "fault" in _streamed_phases(files[0].parent))
    try:
        wait_until(fault_pending, 90, "the zone-failure fault to be injected")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc, next(reports.glob("*-zone-failure"))


def _check_aborted_evidence(run_dir: Path, reports: Path) -> dict[str, Any]:
    """An aborted run with everything a finished run has: result, history, reports, manifest, ledger line."""
    for name in ("experiment.yaml", "settings.json", "journal.json", "history.jsonl", "events.jsonl",
                 "rollback.json", "result.json", "report.html", "report.pdf", "junit.xml", MANIFEST):
        assert (run_dir / name).is_file(), f"{name} missing from {run_dir}"
    assert not (run_dir / PARTIAL).exists(), "the streamed history is folded into history.jsonl when sealed"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["verdict"] == "aborted", result
    checked = verify(run_dir, ledger=reports / LEDGER)
    assert checked.status in ("intact", "unsigned-intact"), checked.summary()
    sealed = [json.loads(line) for line in (reports / LEDGER).read_text().splitlines() if line.strip()]
    assert any(e.get("event") == "sealed" and e["run_dir"] == run_dir.name and e["verdict"] == "aborted"
               for e in sealed), sealed
    assert recheck(run_dir)[1], "resilience check recomputed different measurements from the stored history"
    cli = subprocess.run([sys.executable, "-m", "resilience.cli", "verify", str(run_dir)], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert cli.returncode == 0 and "intact" in cli.stdout, cli.stdout + cli.stderr
    return result


def test_ctrl_c_mid_fault_rolls_back_and_reports_aborted(healthy: LocalTarget, tmp_path: Path) -> None:
    proc, run_dir = _start_run_and_wait_for_fault(tmp_path)
    assert healthy.status().detail["lost_zones"], "the zone should be lost while the fault is held"
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    steps = json.loads((run_dir / "rollback.json").read_text())["steps"]
    assert steps and all(s["status"] == "done" for s in steps), steps
    assert healthy.status().detail["lost_zones"] == []
    result = json.loads((run_dir / "result.json").read_text())
    assert result["verdict"] == "aborted" and proc.returncode == 1, (proc.returncode, err[-500:])
    _check_aborted_evidence(run_dir, tmp_path)
    wait_until(lambda: healthy.status().healthy, 90, "the stack healthy again after Ctrl-C")


def test_ctrl_c_during_recovery_ends_aborted_with_full_evidence(healthy: LocalTarget, tmp_path: Path) -> None:
    """Issue 10: Ctrl-C after the rollback, in the recovery window, used to exit 130 with no result at all."""
    proc, run_dir = _start_run_and_wait_for_fault(tmp_path)

    def recovering() -> bool:
        steps = json.loads((run_dir / "rollback.json").read_text())["steps"]
        return "recovery" in _streamed_phases(run_dir) and bool(steps) and all(s["status"] == "done" for s in steps)
    try:
        wait_until(recovering, 240, "the fault rolled back and the recovery phase streamed")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, (proc.returncode, err[-800:])
    result = _check_aborted_evidence(run_dir, tmp_path)
    reason = result["aborted_reason"]
    assert reason.startswith("interrupted (Ctrl-C") and "recovery" in reason, reason
    phases = [r.op for r in History.load(run_dir / "history.jsonl").sorted() if r.source == "phase"]
    assert phases[:3] == ["steady", "fault", "recovery"] and phases[-2:] == ["abort", "end"], phases
    assert healthy.status().detail["lost_zones"] == []
    wait_until(lambda: healthy.status().healthy, 90, "the stack healthy again after Ctrl-C in recovery")


def test_sigterm_mid_fault_ends_the_run_as_ctrl_c_does(healthy: LocalTarget, tmp_path: Path) -> None:
    """Issue 18: SIGTERM (a CronJob deadline, a cancelled CI job) used to be judged PASS or FAIL, or exit 2.
    Now, as Ctrl-C: rollback, sealed as aborted naming the signal, exit 1, and the stack whole afterwards."""
    proc, run_dir = _start_run_and_wait_for_fault(tmp_path)
    assert healthy.status().detail["lost_zones"], "the zone should be lost while the fault is held"
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    steps = json.loads((run_dir / "rollback.json").read_text())["steps"]
    assert steps and all(s["status"] == "done" for s in steps), steps
    assert healthy.status().detail["lost_zones"] == []
    result = _check_aborted_evidence(run_dir, tmp_path)
    assert proc.returncode == 1, (proc.returncode, err[-800:])
    assert result["aborted_reason"] == "interrupted (SIGTERM) during fault", result["aborted_reason"]
    records = History.load(run_dir / "history.jsonl").sorted()
    assert [r.status for r in records if r.source == "fault" and r.op == "rollback"] == ["ok"]
    wait_until(lambda: healthy.status().healthy, 90, "the stack healthy again after SIGTERM")


def test_crash_mid_fault_is_undone_by_resilience_rollback(healthy: LocalTarget, tmp_path: Path) -> None:
    proc, run_dir = _start_run_and_wait_for_fault(tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)  # the harness and its load generator die mid-fault
    proc.wait()
    assert healthy.status().detail["lost_zones"], "nothing undid the fault yet"
    out = subprocess.run([sys.executable, "-m", "resilience.cli", "rollback", str(run_dir)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "rolled back lose_zone" in out.stdout
    assert healthy.status().detail["lost_zones"] == []
    # issue 10: the killed run is sealed as aborted, with every record up to the kill
    assert "sealed" in out.stdout and "ABORTED" in out.stdout, out.stdout
    result = _check_aborted_evidence(run_dir, tmp_path)
    reason = result["aborted_reason"]
    assert reason.startswith("the harness was killed during fault; sealed by `resilience rollback` at "), reason
    history = History.load(run_dir / "history.jsonl")
    rows = [line for line in (run_dir / "load" / "rows.jsonl").read_text().splitlines(keepends=True)
            if line.endswith("\n")]
    assert sum(1 for r in history.records if r.source == "load") == len(rows)
    assert any(r.source == "fault" and r.op == "inject" for r in history.records)
    phases = [r.op for r in history.sorted() if r.source == "phase"]
    assert phases[:2] == ["steady", "fault"] and phases[-2:] == ["abort", "end"], phases
    assert any(r.source == "fault" and r.op == "rollback" and r.detail and r.detail.get("replayed_by")
               for r in history.records)
    rpo = {m["name"]: m for m in result["measurements"]}["lost_writes"]
    assert rpo["detail"]["unverified"] == 0, rpo  # the stack was back: every acknowledged order was read back
    wait_until(lambda: healthy.status().healthy, 90, "the stack healthy again after `resilience rollback`")
