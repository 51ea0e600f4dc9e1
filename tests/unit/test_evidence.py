"""Run directory naming, manifest, signature, verify and the ledger hash chain."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from resilience import evidence
from resilience.atomic import write_json_atomic
from resilience.errors import UserError

NOW = datetime(2025, 3, 10, 5, 30, 0, tzinfo=timezone.utc)


def make_run(reports: Path, name: str = "pod-kill") -> Path:
    run = evidence.new_run_dir(reports, name, NOW)
    write_json_atomic(run / "result.json", {"schema_version": 1, "verdict": "pass"})
    (run / "history.jsonl").write_text('{"kind": "resilience-history"}\n[0.1,"load","GET /menu","ok",0.01,null,null]\n')
    (run / "plots").mkdir()
    (run / "plots" / "a.svg").write_text("<svg/>")
    return run


def test_new_run_dir_is_named_by_utc_time_and_unique_within_a_second(tmp_path: Path) -> None:
    first = evidence.new_run_dir(tmp_path, "pod-kill", NOW)
    second = evidence.new_run_dir(tmp_path, "pod-kill", NOW)
    assert first.name == "20250310T053000Z-pod-kill"
    assert second.name == "20250310T053000Z-pod-kill-2"
    assert first.is_dir() and second.is_dir()


def test_new_run_dir_rejects_a_name_that_is_not_a_plain_word(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="letters, digits"):
        evidence.new_run_dir(tmp_path, "../escape", NOW)


def test_write_json_atomic_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_manifest_is_sha256sum_compatible_and_digest_is_of_the_manifest(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    digest = evidence.write_manifest(run)
    lines = (run / evidence.MANIFEST).read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["history.jsonl", "plots/a.svg", "result.json"]
    assert digest == evidence.sha256_file(run / evidence.MANIFEST)
    check = subprocess.run(["sha256sum", "-c", evidence.MANIFEST], cwd=run, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_unsigned_intact_run_verifies(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    evidence.write_manifest(run)
    result = evidence.verify(run)
    assert result.status == evidence.UNSIGNED_INTACT and result.ok


def test_one_changed_byte_is_named(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    evidence.write_manifest(run)
    data = bytearray((run / "history.jsonl").read_bytes())
    data[5] ^= 0x01
    (run / "history.jsonl").write_bytes(bytes(data))
    result = evidence.verify(run)
    assert result.status == evidence.MODIFIED and not result.ok
    assert result.changed == ["history.jsonl"]
    assert "history.jsonl" in result.summary()


def test_missing_and_extra_files_are_named(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    evidence.write_manifest(run)
    (run / "plots" / "a.svg").unlink()
    (run / "injected.txt").write_text("x")
    result = evidence.verify(run)
    assert result.status == evidence.MODIFIED
    assert result.missing == ["plots/a.svg"] and result.extra == ["injected.txt"]


def test_run_without_manifest_is_not_ok(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    assert evidence.verify(run).status == evidence.NO_MANIFEST


def test_keygen_writes_private_key_mode_600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "signing.pem"
    public = evidence.keygen(key)
    assert public == tmp_path / "keys" / "signing.pem.pub"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert b"BEGIN PUBLIC KEY" in public.read_bytes()
    with pytest.raises(UserError, match="refusing to overwrite"):
        evidence.keygen(key)


def test_signed_run_verifies_against_its_public_key(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    public = evidence.keygen(key)
    run = make_run(tmp_path / "reports")
    evidence.write_manifest(run)
    evidence.sign_manifest(run, key)
    sig = json.loads((run / evidence.SIGNATURE).read_text())
    assert sig["algorithm"] == "ed25519" and sig["public_key_fingerprint"].startswith("SHA256:")
    result = evidence.verify(run, public_key=public)
    assert result.status == evidence.INTACT and result.key_trusted and result.signature_valid


def test_signature_tamper_is_detected(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    public = evidence.keygen(key)
    run = make_run(tmp_path / "reports")
    evidence.write_manifest(run)
    evidence.sign_manifest(run, key)
    sig = json.loads((run / evidence.SIGNATURE).read_text())
    raw = bytearray(__import__("base64").b64decode(sig["signature"]))
    raw[0] ^= 0xFF
    sig["signature"] = __import__("base64").b64encode(bytes(raw)).decode()
    (run / evidence.SIGNATURE).write_text(json.dumps(sig))
    result = evidence.verify(run, public_key=public)
    assert result.status == evidence.SIGNATURE_INVALID and not result.ok


def test_manifest_rewritten_after_a_change_breaks_the_signature(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    evidence.keygen(key)
    run = make_run(tmp_path / "reports")
    evidence.write_manifest(run)
    evidence.sign_manifest(run, key)
    signature = (run / evidence.SIGNATURE).read_bytes()
    (run / "result.json").write_text('{"verdict": "pass", "forged": true}')
    evidence.write_manifest(run)  # the forger re-hashes ...
    (run / evidence.SIGNATURE).write_bytes(signature)  # ... and puts the old signature back
    result = evidence.verify(run)
    assert result.status == evidence.SIGNATURE_INVALID


def test_signature_by_another_key_is_rejected(tmp_path: Path) -> None:
    evidence.keygen(tmp_path / "ours.pem")
    other_public = evidence.keygen(tmp_path / "theirs.pem")
    run = make_run(tmp_path / "reports")
    evidence.write_manifest(run)
    evidence.sign_manifest(run, tmp_path / "ours.pem")
    result = evidence.verify(run, public_key=other_public)
    assert result.status == evidence.SIGNATURE_INVALID
    assert any("not by the supplied key" in note for note in result.notes)


def test_ledger_chain_verifies_and_detects_an_edited_line(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    for name in ("pod-kill", "zone-failure", "db-failover"):
        run = make_run(reports, name)
        evidence.seal_run(run, name, "pass")
    good = evidence.verify_ledger(reports)
    assert good.ok and good.entries == 3, good.problems
    ledger = reports / evidence.LEDGER
    lines = ledger.read_text().splitlines()
    lines[0] = lines[0].replace('"verdict":"pass"', '"verdict":"fail"')
    ledger.write_text("\n".join(lines) + "\n")
    bad = evidence.verify_ledger(reports)
    assert not bad.ok and any(":2: chain broken" in p for p in bad.problems)


def test_ledger_detects_a_removed_line(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    for name in ("pod-kill", "zone-failure", "db-failover"):
        evidence.seal_run(make_run(reports, name), name, "fail")
    ledger = reports / evidence.LEDGER
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join(lines[:-1]) + "\n")  # the last line: the chain alone cannot see this
    bad = evidence.verify_ledger(reports)
    assert not bad.ok and any("db-failover: sealed run directory with no ledger line" in p for p in bad.problems)
    ledger.write_text("\n".join([lines[0], lines[2]]) + "\n")  # a middle line
    assert any("chain broken" in p for p in evidence.verify_ledger(reports).problems)


def test_ledger_detects_a_resealed_run(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run = make_run(reports)
    evidence.seal_run(run, "pod-kill", "fail")
    (run / "result.json").write_text('{"verdict": "pass"}')
    evidence.write_manifest(run)
    bad = evidence.verify_ledger(reports)
    assert any("differs from the ledger" in p for p in bad.problems)
