"""Issue 10: each way a reviewer rewrote a verdict now fails `verify` or `check` (exit 1), saying why.

The runs are the fixture runs (tests/fixtures/runs/generate.py), started and
sealed into a ledger the way `resilience run` does it; every attack is done
the way a forger with write access to the reports directory would do it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from resilience import evidence
from resilience.cli import main
from resilience.errors import UserError
from resilience.recheck import recheck
from resilience.results import RunResult
from run_fixtures import load_generator



@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings come only from the --config file a test writes, never from the machine."""
    monkeypatch.delenv("RESILIENCE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def sealed_run(reports: Path, kind: str, signing_key: Path | None = None) -> Path:
    """A fixture run, recorded as started and sealed (optionally signed) like `resilience run` does."""
    run_dir: Path = load_generator().make_run(reports, kind)
    result = json.loads((run_dir / "result.json").read_text())
    evidence.record_start(run_dir, result["experiment"])
    evidence.seal_run(run_dir, result["experiment"], result["verdict"], signing_key)
    return run_dir


def config(tmp_path: Path, trusted: list[Path] | None = None) -> str:
    path = tmp_path / "resilience.yaml"
    keys = "".join(f"\n    - {p}" for p in trusted or [])
    path.write_text(f"evidence:\n  trusted_public_keys:{keys or ' []'}\n")
    return str(path)


def verify_cli(run_dir: Path, cfg: str, *extra: str) -> int:
    return main(["verify", str(run_dir), "--config", cfg, *extra])


def forge_verdict(run_dir: Path, targets: dict[str, float], drop: tuple[str, ...] = ()) -> RunResult:
    """Loosen targets in settings.json, clear `drop` fields of result.json, regenerate it, rewrite the manifest."""
    settings = json.loads((run_dir / "settings.json").read_text())
    settings["targets"].update(targets)
    (run_dir / "settings.json").write_text(json.dumps(settings))
    stored = json.loads((run_dir / "result.json").read_text())
    for name in drop:
        stored[name] = [] if name == "deviations" else None
    (run_dir / "result.json").write_text(json.dumps(stored))
    forged, _ = recheck(run_dir)
    (run_dir / "result.json").write_text(json.dumps(forged.to_json()))
    evidence.write_manifest(run_dir)
    return forged


def test_an_untouched_sealed_run_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = sealed_run(tmp_path / "reports", "fail")
    assert verify_cli(run_dir, config(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "unsigned-intact" in out and "seal recorded at line 2" in out


def test_loosened_target_rewritten_result_and_manifest_is_caught_by_the_ledger(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = sealed_run(tmp_path / "reports", "fail")
    forged = forge_verdict(run_dir, {"rto_s": 1000.0, "p99_ms": 5000.0, "availability": 0.5}, drop=("deviations",))
    assert forged.verdict == "pass"  # the forgery works on the run directory alone ...
    assert evidence.verify(run_dir).ok
    assert main(["check", str(run_dir)]) == 0
    capsys.readouterr()
    assert verify_cli(run_dir, config(tmp_path)) == 1  # ... but not against the ledger
    out = capsys.readouterr().out
    assert f"{run_dir}: modified" in out
    assert "the manifest differs from the one the ledger recorded when the run was sealed" in out
    assert "recorded verdict 'fail', the run now says 'pass'" in out


def test_removed_aborted_reason_is_caught_by_the_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = sealed_run(tmp_path / "reports", "aborted")
    forged = forge_verdict(run_dir, {"availability": 0.4}, drop=("aborted_reason",))
    assert forged.verdict == "aborted"  # issue 22: `check` recomputes the abort from the history, so ...
    stored = json.loads((run_dir / "result.json").read_text())
    stored.update(aborted_reason=None, verdict="pass")  # ... the forger edits result.json by hand
    (run_dir / "result.json").write_text(json.dumps(stored))
    evidence.write_manifest(run_dir)
    assert evidence.verify(run_dir).ok
    assert recheck(run_dir)[1] is False  # `check` sees it
    assert verify_cli(run_dir, config(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "modified" in out and "the ledger recorded when the run was sealed" in out


def test_edited_last_ledger_line_is_detected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    sealed_run(reports, "pass")
    run_dir = sealed_run(reports, "fail")
    ledger = reports / evidence.LEDGER
    lines = ledger.read_text().splitlines()
    assert '"event":"sealed"' in lines[-1] and '"verdict":"fail"' in lines[-1]
    lines[-1] = lines[-1].replace('"verdict":"fail"', '"verdict":"pass"')  # no line follows: the chain cannot see it
    ledger.write_text("\n".join(lines) + "\n")
    assert verify_cli(run_dir, config(tmp_path)) == 1
    assert "recorded verdict 'pass', the run now says 'fail'" in capsys.readouterr().out
    assert any("verdict 'fail' differs from the ledger's 'pass'" in p for p in evidence.verify_ledger(reports).problems)


def test_a_consistent_rewrite_of_run_and_last_line_needs_a_recorded_head(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The threat model's limit: whoever rewrites the run and the ledger's last line together is caught only by a
    ledger head kept where they could not reach it."""
    reports = tmp_path / "reports"
    run_dir = sealed_run(reports, "fail")
    head = evidence.verify_ledger(reports).head
    forged = forge_verdict(run_dir, {"rto_s": 1000.0, "p99_ms": 5000.0, "availability": 0.5}, drop=("deviations",))
    ledger = reports / evidence.LEDGER
    lines = ledger.read_text().splitlines()
    entry = json.loads(lines[-1])
    entry.update(verdict=forged.verdict, manifest_sha256=evidence.manifest_digest(run_dir))
    lines[-1] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    ledger.write_text("\n".join(lines) + "\n")
    assert verify_cli(run_dir, config(tmp_path)) == 0
    capsys.readouterr()
    assert verify_cli(run_dir, config(tmp_path), "--ledger-head", head) == 1
    out = capsys.readouterr().out
    assert "ledger-broken" in out and f"no line has the recorded head {head}" in out


def test_an_edited_middle_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    first = sealed_run(reports, "pass")
    sealed_run(reports, "fail")
    ledger = reports / evidence.LEDGER
    lines = ledger.read_text().splitlines()
    lines[1] = lines[1].replace('"event":"sealed"', '"event":"sealed","note":"x"')
    ledger.write_text("\n".join(lines) + "\n")
    assert verify_cli(first, config(tmp_path)) == 1
    out = capsys.readouterr().out
    assert f"{first}: ledger-broken" in out and f"{ledger}:3: chain broken" in out


def test_a_run_missing_from_the_ledger_is_not_intact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    run_dir: Path = load_generator().make_run(reports, "pass")
    evidence.write_manifest(run_dir)  # a manifest, but never sealed into the ledger
    sealed_run(reports, "fail")
    assert verify_cli(run_dir, config(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "not-in-ledger" in out and "has no line for" in out


def test_a_run_that_never_finished_shows_as_never_sealed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    run_dir = evidence.new_run_dir(reports, "zone-failure", datetime(2025, 3, 10, tzinfo=timezone.utc))
    evidence.record_start(run_dir, "zone-failure")
    assert verify_cli(run_dir, config(tmp_path)) == 1
    assert "records the run's start, but the run was never sealed" in capsys.readouterr().out
    ledger = evidence.verify_ledger(reports)
    assert ledger.never_sealed == [run_dir.name] and ledger.ok, ledger.problems


def test_old_ledger_lines_without_event_still_read_as_seals(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run_dir: Path = load_generator().make_run(reports, "pass")
    digest = evidence.write_manifest(run_dir)
    old = {"run_dir": run_dir.name, "experiment": "pod-kill", "verdict": "pass", "manifest_sha256": digest,
           "time": "2025-03-10T05:31:00Z", "prev": evidence.GENESIS}  # the format before "event" existed
    (reports / evidence.LEDGER).write_text(json.dumps(old, sort_keys=True, separators=(",", ":")) + "\n")
    result = evidence.verify(run_dir, ledger=reports / evidence.LEDGER)
    assert result.ok and result.ledger_line == 1, result.summary()


def test_resealed_unsigned_is_refused_when_trusted_keys_are_configured(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "keys" / "signing.pem"
    public = evidence.keygen(key)
    run_dir = sealed_run(tmp_path / "reports", "fail", signing_key=key)
    assert verify_cli(run_dir, config(tmp_path, [public])) == 0
    capsys.readouterr()
    evidence.write_manifest(run_dir)  # re-seal without the key: removes MANIFEST.sig
    result = evidence.verify(run_dir, trusted_keys=[public])  # the trusted keys alone catch it, ledger or not
    assert result.status == evidence.UNSIGNED and not result.ok
    assert verify_cli(run_dir, config(tmp_path, [public])) == 1
    out = capsys.readouterr().out
    assert "unsigned" in out and "is required, but the run has no MANIFEST.sig" in out


def test_resigned_with_another_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ours = tmp_path / "keys" / "ours.pem"
    ours_public = evidence.keygen(ours)
    theirs = tmp_path / "keys" / "theirs.pem"
    evidence.keygen(theirs)
    run_dir = sealed_run(tmp_path / "reports", "fail", signing_key=ours)
    evidence.write_manifest(run_dir)
    evidence.sign_manifest(run_dir, theirs)
    result = evidence.verify(run_dir, trusted_keys=[ours_public])
    assert result.status == evidence.SIGNATURE_INVALID and not result.ok
    assert verify_cli(run_dir, config(tmp_path, [ours_public])) == 1
    out = capsys.readouterr().out
    assert "signature-invalid" in out and "not by the keys in evidence.trusted_public_keys" in out
    assert verify_cli(run_dir, config(tmp_path), "--public-key", str(ours_public)) == 1  # --public-key still works
    assert "not by the supplied key" in capsys.readouterr().out


def test_a_bad_trusted_key_setting_names_the_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = sealed_run(tmp_path / "reports", "pass")
    assert verify_cli(run_dir, config(tmp_path, [tmp_path / "missing.pub"])) == 2
    err = capsys.readouterr().err
    assert "evidence.trusted_public_keys" in err and "missing.pub" in err and "does not exist" in err
    not_a_key = tmp_path / "not-a-key.pub"
    not_a_key.write_text("hello\n")
    with pytest.raises(UserError, match="neither a PEM public nor private key"):
        evidence.load_public_key(not_a_key)
    assert verify_cli(run_dir, config(tmp_path, [not_a_key])) == 2


def test_check_exits_3_when_the_stored_result_differs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir: Path = load_generator().make_run(tmp_path / "reports", "pass")  # hand-written figures: not recomputable
    assert main(["check", str(run_dir)]) == 3  # its own code: 1 is a failed verdict
    captured = capsys.readouterr()
    assert "DIFFERENT from result.json" in captured.out and "DIFFERENT" in captured.err
    recomputed, _ = recheck(run_dir)
    (run_dir / "result.json").write_text(json.dumps(recomputed.to_json()))
    assert main(["check", str(run_dir)]) == 0  # same, and a pass: exit codes as before
    assert "same measurements and verdict as stored" in capsys.readouterr().out


def test_the_compliance_report_shows_a_never_sealed_run_and_the_ledger_head(tmp_path: Path) -> None:
    from resilience.config import Settings
    from resilience.reports.compliance import GamedayEntry, build_compliance
    reports = tmp_path / "reports"
    finished = sealed_run(reports, "pass")
    crashed = evidence.new_run_dir(reports, "zone-failure", datetime(2025, 3, 10, tzinfo=timezone.utc))
    evidence.record_start(crashed, "zone-failure")
    model = build_compliance([GamedayEntry("pod-kill", finished)], Settings(), "quick", "r-1",
                             datetime(2025, 3, 10, 6, tzinfo=timezone.utc), reports)
    assert model["ledger"]["head"] == evidence.verify_ledger(reports).head
    assert model["ledger"]["never_sealed"] == [crashed.name]  # not part of the suite, still not omitted
    assert any(f["run_dir"] == crashed.name and "never sealed" in f["finding"] for f in model["findings"])
