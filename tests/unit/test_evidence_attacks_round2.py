"""Issue 22, classes 7 and 8: a run directory or ledger is read within limits, and `verify` accepts only evidence.

Each case damages a sealed fixture run the way someone with write access to the
reports folder could, then runs the command: exit 1 (evidence: the run is not
what was sealed) or exit 2 (input that cannot be read at all), one paragraph,
no traceback, within seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from resilience import evidence
from resilience.cli import main
from test_evidence_attacks import config, sealed_run


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RESILIENCE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def _deep(levels: int = 5000) -> str:
    return "[" * levels + "]" * levels


def _link(target: str | Path) -> Callable[[Path], None]:
    def plant(path: Path) -> None:
        path.unlink(missing_ok=True)
        path.symlink_to(target)
    return plant


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _write(text: str | bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _ledger_line(extra: str) -> Callable[[Path], None]:
    def add(run_dir: Path) -> None:
        with (run_dir.parent / "ledger.jsonl").open("a") as f:
            f.write(extra + "\n")
    return add


def _file(name: str, damage: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda run_dir: damage(run_dir / name)


# name -> (damage to a sealed run, command ("check", "verify", "report"), expected exit code)
RUNDIR_CORPUS: dict[str, tuple[Callable[[Path], None], str, int]] = {
    # class 7: run directories are read within limits
    "history-fifo-check": (_file("history.jsonl", _fifo), "check", 2),
    "history-fifo-verify": (_file("history.jsonl", _fifo), "verify", 1),
    "history-dev-zero-check": (_file("history.jsonl", _link("/dev/zero")), "check", 2),
    "history-deep-record": (_file("history.jsonl", lambda p: p.write_text(p.read_text() + _deep() + "\n")),
                            "check", 2),
    "history-deep-report": (_file("history.jsonl", lambda p: p.write_text(p.read_text() + _deep() + "\n")),
                            "report", 2),
    "history-fifo-report": (_file("history.jsonl", _fifo), "report", 2),
    "history-link-report": (_file("history.jsonl", _link("/etc/hostname")), "report", 2),
    "result-dev-zero-check": (_file("result.json", _link("/dev/zero")), "check", 2),
    "result-dev-zero-report": (_file("result.json", _link("/dev/zero")), "report", 2),
    "result-dev-zero-verify": (_file("result.json", _link("/dev/zero")), "verify", 1),
    "result-fifo-check": (_file("result.json", _fifo), "check", 2),
    "result-symlink-elsewhere": (_file("result.json", _link("/etc/hostname")), "check", 2),
    "result-deep-check": (_file("result.json", _write(_deep())), "check", 2),
    "result-deep-report": (_file("result.json", _write(_deep())), "report", 2),
    "result-huge-int": (_file("result.json", _write('{"verdict": ' + "9" * 5000 + "}")), "check", 2),
    "result-duplicate-verdict": (_file("result.json", lambda p: p.write_text(
        p.read_text()[:-1] + ', "verdict": "pass"}')), "check", 2),
    "settings-dev-zero": (_file("settings.json", _link("/dev/zero")), "check", 2),
    "settings-deep": (_file("settings.json", _write(_deep())), "check", 2),
    "signature-deep": (_file("MANIFEST.sig", _write(_deep())), "verify", 1),
    "signature-dev-zero": (_file("MANIFEST.sig", _link("/dev/zero")), "verify", 1),
    "signature-huge-int": (_file("MANIFEST.sig", _write('{"signature": ' + "9" * 5000 + "}")), "verify", 1),
    "manifest-binary": (_file("MANIFEST.sha256", _write(b"\xff\xfe\x00")), "verify", 1),
    "manifest-dev-zero": (_file("MANIFEST.sha256", _link("/dev/zero")), "verify", 1),
    "manifest-fifo": (_file("MANIFEST.sha256", _fifo), "verify", 1),
    "manifest-not-sha256sum": (_file("MANIFEST.sha256", _write("hello\n")), "verify", 1),
    "manifest-lists-outside": (_file("MANIFEST.sha256", lambda p: p.write_text(
        p.read_text() + "0" * 64 + "  ../../../etc/shadow\n")), "verify", 1),
    "ledger-deep-line": (_ledger_line(_deep()), "verify", 1),
    "ledger-huge-int": (_ledger_line('{"prev": ' + "9" * 5000 + "}"), "verify", 1),
    "ledger-junk": (_ledger_line("\x00\x01junk"), "verify", 1),
    "ledger-dev-zero": (lambda run_dir: _link("/dev/zero")(run_dir.parent / "ledger.jsonl"), "verify", 1),
    "ledger-fifo": (lambda run_dir: _fifo(run_dir.parent / "ledger.jsonl"), "verify", 1),
    # class 8: only regular files are evidence
    "extra-symlink-file": (_file("notes.txt", _link("/etc/hostname")), "verify", 1),
    "extra-symlink-dir": (_file("more", _link("/etc")), "verify", 1),
    "extra-dangling-link": (_file("gone", _link("/nonexistent/x")), "verify", 1),
    "extra-fifo": (_file("pipe", _fifo), "verify", 1),
    "replaced-by-link": (lambda run_dir: (shutil.copy(run_dir / "history.jsonl", run_dir.parent / "h"),
                                          _link(run_dir.parent / "h")(run_dir / "history.jsonl")), "verify", 1),
    "sig-replaced-by-link": (lambda run_dir: _link(run_dir.parent / "sig")(run_dir / "MANIFEST.sig"), "verify", 1),
    "ledger-time-backwards": (lambda run_dir: _rewrite_last_time(run_dir, "2001-01-01T00:00:00Z"), "verify", 1),
    "ledger-time-missing": (lambda run_dir: _rewrite_last_time(run_dir, None), "verify", 1),
}


def _rewrite_last_time(run_dir: Path, when: str | None) -> None:
    """Re-chain the ledger with the last line's time changed (a forger can rewrite the whole file consistently)."""
    ledger = run_dir.parent / "ledger.jsonl"
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    ledger.unlink()
    for i, entry in enumerate(entries):
        if i == len(entries) - 1:
            entry.pop("time")
            if when is not None:
                entry["time"] = when
        evidence.append_ledger(run_dir.parent, entry)


def _run(command: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """main(command) in a thread, so a hang fails the test instead of stopping it."""
    box: dict[str, int] = {}
    worker = threading.Thread(target=lambda: box.setdefault("code", main(command)), daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), f"{command} hung"
    assert time.monotonic() - start < 20
    captured = capsys.readouterr()
    return box["code"], captured.out + captured.err


@pytest.mark.parametrize("case", sorted(RUNDIR_CORPUS))
def test_damaged_run_directory_is_exit_1_or_2_within_seconds(case: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    damage, command, expected = RUNDIR_CORPUS[case]
    run_dir = sealed_run(tmp_path / "reports", "fail", signing_key=_key(tmp_path))
    damage(run_dir)
    args = {"check": ["check", str(run_dir)], "report": ["report", str(run_dir), "--format", "json"],
            "verify": ["verify", str(run_dir), "--config", config(tmp_path)]}[command]
    code, output = _run(args, capsys)
    assert code == expected, output
    assert "Traceback" not in output
    if expected == 2:
        assert output.strip().count("\n") == 0, output  # one paragraph


def _key(tmp_path: Path) -> Path:
    key = tmp_path / "keys" / "signing"
    if not key.exists():
        evidence.keygen(key)
    return key


def test_an_extra_link_is_named_as_extra(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = sealed_run(tmp_path / "reports", "pass")
    (run_dir / "more").symlink_to("/etc")
    (run_dir / "notes.txt").symlink_to("/etc/hostname")
    code, out = _run(["verify", str(run_dir), "--config", config(tmp_path)], capsys)
    assert code == 1 and "modified" in out
    assert "more (a symbolic link)" in out and "notes.txt (a symbolic link)" in out


def test_a_run_directory_that_is_a_link_to_a_forgery_is_checked_against_the_ledger_beside_the_link(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    real = sealed_run(reports, "fail")
    forged = sealed_run(tmp_path / "forgery", "pass")  # a consistent forgery with its own ledger
    shutil.rmtree(real)
    real.symlink_to(forged)
    code, out = _run(["verify", str(real), "--config", config(tmp_path)], capsys)
    assert code == 1 and "symbolic link" in out
    assert str(reports / "ledger.jsonl") in out  # not the forgery's ledger


def test_a_run_sealed_after_the_recorded_head_is_not_covered_by_it(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    sealed_run(reports, "fail")
    head = evidence.verify_ledger(reports).head
    later = sealed_run(reports, "pass")  # appended after the head was written down
    code, out = _run(["verify", str(later), "--config", config(tmp_path), "--ledger-head", head], capsys)
    assert code == 1 and "not-covered-by-head" in out and "does not cover it" in out
    code, out = _run(["verify", str(later), "--config", config(tmp_path)], capsys)
    assert code == 0, out  # without a head there is nothing to be covered by


def test_a_look_alike_run_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    real = sealed_run(reports, "fail")
    fake = reports / real.name.replace("-", "\u2010", 1)
    shutil.copytree(real, fake)
    evidence.seal_run(fake, "fake", "pass")
    head = evidence.verify_ledger(reports).head
    code, out = _run(["verify", str(fake), "--config", config(tmp_path), "--ledger-head", head], capsys)
    assert code == 1 and "not a name the harness gives" in out
    assert not evidence.verify_ledger(reports).ok


def test_one_junk_ledger_line_does_not_crash_verify_or_the_compliance_report(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    sealed_run(reports, "fail")
    with (reports / "ledger.jsonl").open("a") as f:
        f.write('{"prev": ' + "9" * 5000 + "}\n" + _deep() + "\n")
    result = evidence.verify_ledger(reports)
    assert not result.ok and any("not a JSON object" in p for p in result.problems)


@pytest.mark.parametrize("command", ["check", "verify", "report"])
def test_a_run_path_longer_than_the_system_allows_is_exit_2(command: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    for path in (tmp_path / ("x" * 300), tmp_path / "/".join(["y" * 200] * 25)):
        args = {"check": ["check", str(path)], "report": ["report", str(path), "--format", "json"],
                "verify": ["verify", str(path), "--config", config(tmp_path)]}[command]
        code, output = _run(args, capsys)
        assert code == 2 and "Traceback" not in output and output.strip().count("\n") == 0, output


@pytest.mark.parametrize("where", ["parent-is-a-file", "name-too-long", "unwritable"])
def test_keygen_where_it_cannot_write_is_exit_2(where: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    path = {"parent-is-a-file": tmp_path / "file" / "key", "name-too-long": tmp_path / ("k" * 300),
            "unwritable": Path("/proc/resilience-test/key")}[where]
    code, output = _run(["keygen", str(path)], capsys)
    assert code == 2 and "Traceback" not in output, output


def test_keygen_into_a_missing_directory_creates_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = _run(["keygen", str(tmp_path / "new" / "dir" / "key")], capsys)
    assert code == 0 and (tmp_path / "new" / "dir" / "key.pub").is_file(), output


# -- class 9: `check` recomputes the abort and the deviations from the history ------------------------

def _edit_result(run_dir: Path, **fields: object) -> None:
    stored = json.loads((run_dir / "result.json").read_text())
    stored.update(fields)
    (run_dir / "result.json").write_text(json.dumps(stored))


def _consistent(run_dir: Path) -> Path:
    """The run with result.json rewritten to what `check` recomputes (so it says 'same' before the attack)."""
    from resilience.recheck import recheck
    (run_dir / "result.json").write_text(json.dumps(recheck(run_dir)[0].to_json()))
    assert recheck(run_dir)[1] is True
    return run_dir


def test_check_recomputes_a_removed_abort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resilience.recheck import recheck
    run_dir = _consistent(sealed_run(tmp_path / "reports", "aborted"))
    _edit_result(run_dir, aborted_reason=None, verdict="pass")
    new, same = recheck(run_dir)
    assert not same and new.verdict == "aborted" and new.aborted_reason and "stop condition" in new.aborted_reason
    assert main(["check", str(run_dir)]) != 0
    assert "DIFFERENT" in capsys.readouterr().out


def test_check_recomputes_an_invented_deviation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resilience.checkers import verdict
    from resilience.recheck import recheck
    from resilience.results import RunResult
    run_dir = _consistent(sealed_run(tmp_path / "reports", "pass"))
    stored = RunResult.from_json(json.loads((run_dir / "result.json").read_text()), "x")
    flipped = verdict(list(stored.measurements), deviated=True)
    assert flipped != stored.verdict
    _edit_result(run_dir, deviations=["the load generator saturated"], verdict=flipped)
    new, same = recheck(run_dir)
    assert not same and new.verdict == stored.verdict and list(new.deviations) == []
    assert main(["check", str(run_dir)]) != 0


def test_check_recomputes_a_removed_deviation(tmp_path: Path) -> None:
    from resilience.history import History
    from resilience.recheck import recheck
    run_dir = sealed_run(tmp_path / "reports", "pass")
    history = History.load(run_dir / "history.jsonl")
    history.add("fault", "inject", "fail", t=20.5, detail={"capability": "kill_replicas", "error": "no replicas"})
    history.dump(run_dir / "history.jsonl")
    _consistent(run_dir)
    assert any("could not be injected" in d for d in json.loads((run_dir / "result.json").read_text())["deviations"])
    _edit_result(run_dir, deviations=[], verdict="pass")
    new, same = recheck(run_dir)
    assert not same and any("could not be injected" in d for d in new.deviations) and new.verdict != "pass"


def test_a_rollback_that_failed_and_was_replayed_is_no_deviation(tmp_path: Path) -> None:
    from resilience.history import History
    from resilience.recheck import recheck
    run_dir = sealed_run(tmp_path / "reports", "pass")
    history = History.load(run_dir / "history.jsonl")
    step = {"capability": "restart", "arguments": {"n": 1}}
    history.add("fault", "rollback", "fail", t=31.0, detail={**step, "error": "timeout"})
    history.dump(run_dir / "history.jsonl")
    assert any("rollback(s) failed" in d for d in recheck(run_dir)[0].deviations)
    history.add("fault", "rollback", "ok", t=59.0, detail={**step, "replayed_by": "resilience rollback"})
    history.dump(run_dir / "history.jsonl")
    assert not any("rollback(s) failed" in d for d in recheck(run_dir)[0].deviations)


# -- rollback.json: read through the same reader ----------------------------------------------------

_STEP = {"fault": "lose_zone", "arguments": {}, "status": "pending",
         "step": {"capability": "restore_zone", "arguments": {}, "description": "restore"}}
ROLLBACK_CORPUS: dict[str, Callable[[Path], None]] = {
    "dev-zero": _link("/dev/zero"),
    "fifo": _fifo,
    "link-to-a-good-file": lambda p: (p.with_name("elsewhere.json").write_text(
        json.dumps({"target": "local", "steps": [_STEP]})), _link(p.with_name("elsewhere.json"))(p)),
    "deep": _write(_deep()),
    "huge-int": _write('{"target": "local", "steps": [], "n": ' + "9" * 5000 + "}"),
    "duplicate-status": _write('{"target": "local", "steps": [{"fault": "lose_zone", "arguments": {}, '
                               '"status": "pending", "status": "done", "step": null}]}'),
    "duplicate-steps": _write('{"target": "local", "steps": [], "steps": []}'),
    "trailing-comma": _write('{"target": "local", "steps": [],}'),
}


@pytest.mark.parametrize("case", sorted(ROLLBACK_CORPUS))
def test_a_damaged_rollback_file_is_exit_2_and_touches_nothing(case: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run" / "rollback.json"
    path.parent.mkdir()
    ROLLBACK_CORPUS[case](path)
    code, output = _run(["rollback", str(path.parent), "--yes"], capsys)
    assert code == 2 and "Traceback" not in output and str(path) in output, output
    assert output.strip().count("\n") == 0, output


def test_the_malformed_input_corpus_has_grown_past_150() -> None:
    """test_input_safety.CORPUS (75 at the start of issue 22) plus this round's experiment, settings, run-directory
    and rollback-file cases."""
    from test_input_safety import CORPUS
    from test_input_safety_round2 import CORPUS2, SETTINGS_CORPUS
    total = len(CORPUS) + len(CORPUS2) + len(SETTINGS_CORPUS) + len(RUNDIR_CORPUS) + len(ROLLBACK_CORPUS)
    assert total >= 150, total
