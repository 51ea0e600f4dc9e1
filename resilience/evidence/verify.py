"""`resilience verify`: a run directory against its manifest, signature, trusted keys and the ledger."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import UserError
from ..inputs import RUN_FILE_BYTES, check_path, load_json, read_bytes
from .ledger import SEALED, STARTED, read_ledger
from .manifest import MANIFEST, SIGNATURE, parse_manifest, sha256_file, walk
from .rundir import RUN_NAME, run_verdict

SIGNATURE_BYTES = 64 * 1024
from .signature import key_fingerprint, load_public_key

# VerifyResult.status values
INTACT = "intact"  # files match the manifest and the signature is valid
UNSIGNED_INTACT = "unsigned-intact"  # files match the manifest; there is no signature
MODIFIED = "modified"  # a file was changed, removed or added since the manifest was written
SIGNATURE_INVALID = "signature-invalid"  # files match the manifest, but the manifest is not what was signed
NO_MANIFEST = "no-manifest"  # the run was never sealed
UNSIGNED = "unsigned"  # files match the manifest, but a signature by a trusted key is required and there is none
NOT_IN_LEDGER = "not-in-ledger"  # the ledger has no "sealed" line for the run (or there is no ledger)
LEDGER_BROKEN = "ledger-broken"  # the ledger's hash chain does not hold (a line was edited, inserted or removed)
NOT_COVERED = "not-covered-by-head"  # sealed after the line of the recorded head (--ledger-head) the caller trusts


@dataclass
class VerifyResult:
    """What `resilience verify` found. `ok` is what the exit code follows."""

    run_dir: Path
    status: str
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    signed: bool = False
    signature_valid: bool | None = None  # None: no signature
    key_fingerprint: str | None = None
    key_trusted: bool = False  # checked against a key the caller trusts (--public-key or evidence.trusted_public_keys)
    trusted_by: str | None = None  # which keys those were, for people
    manifest_digest: str | None = None
    ledger: Path | None = None  # the ledger the run was checked against (None: not checked)
    ledger_line: int | None = None  # the line that recorded the run's seal
    ledger_head: str | None = None  # hash of the ledger's last line: record it elsewhere to anchor the chain
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in (INTACT, UNSIGNED_INTACT)

    def summary(self) -> str:
        """One paragraph for people: what is wrong, naming the files."""
        lines = [f"{self.run_dir}: {self.status}"]
        for label, names in (("changed", self.changed), ("missing", self.missing), ("extra", self.extra)):
            if names:
                lines.append(f"  {label}: {', '.join(names)}")
        if self.manifest_digest:
            lines.append(f"  manifest sha256: {self.manifest_digest}")
        if self.signed:
            trust = f"checked against {self.trusted_by}" if self.key_trusted else \
                "NOT checked against a trusted key (pass --public-key or set evidence.trusted_public_keys)"
            lines.append(f"  signature: {'valid' if self.signature_valid else 'INVALID'}; key {self.key_fingerprint}, "
                         f"{trust}")
        if self.ledger is not None:
            sealed = f"seal recorded at line {self.ledger_line}" if self.ledger_line else "no seal recorded"
            lines.append(f"  ledger {self.ledger}: {sealed}; head {self.ledger_head}")
        lines.extend(f"  {note}" for note in self.notes)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "status": self.status, "ok": self.ok, "changed": self.changed,
                "missing": self.missing, "extra": self.extra, "signed": self.signed,
                "signature_valid": self.signature_valid, "key_fingerprint": self.key_fingerprint,
                "key_trusted": self.key_trusted, "manifest_digest": self.manifest_digest,
                "ledger": None if self.ledger is None else str(self.ledger), "ledger_line": self.ledger_line,
                "ledger_head": self.ledger_head, "notes": self.notes}


def verify(run_dir: Path, public_key: Path | None = None, *, trusted_keys: Sequence[Path] = (),
           ledger: Path | None = None, ledger_anchor: str | None = None) -> VerifyResult:
    """Compare every file with the manifest, check the signature, and (given `ledger`) the run's ledger lines.

    `public_key`, or else `trusted_keys`, makes a valid signature by one of those
    keys mandatory: without trusted keys a signature only shows the manifest was
    not changed after *someone* signed it. `ledger` adds what the run directory
    alone cannot show: that its manifest is the one recorded when it was sealed
    (a forger can rewrite a run and its manifest together, but not the ledger's
    older lines without breaking the chain). `ledger_anchor` is a ledger head
    recorded elsewhere earlier; the ledger must still contain that line.
    """
    run_dir = check_path(Path(run_dir), "run directory")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory. Pass a run directory, e.g. reports/20250101T000000Z-pod-kill.")
    manifest = run_dir / MANIFEST
    if not manifest.is_file() and not manifest.is_symlink():
        result = VerifyResult(run_dir, NO_MANIFEST, notes=[f"no {MANIFEST}: the run was never sealed, so its "
                                                           f"integrity cannot be shown"])
        _check_run_path(run_dir, result)
        if ledger is not None:
            _check_ledger(run_dir, Path(ledger), ledger_anchor, result)
        return result
    result = VerifyResult(run_dir, UNSIGNED_INTACT)
    try:
        manifest_bytes = read_bytes(manifest, "manifest", RUN_FILE_BYTES)
        result.manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
        listed = parse_manifest(manifest_bytes.decode("utf-8"), manifest)
    except (UserError, UnicodeDecodeError) as exc:
        result.status = MODIFIED
        result.notes.append(f"modified: {MANIFEST} cannot be read ({exc}); it is damaged, so the run's integrity "
                            f"cannot be shown")
        _check_run_path(run_dir, result)
        if ledger is not None:
            _check_ledger(run_dir, Path(ledger), ledger_anchor, result)
        return result
    regular, other = walk(run_dir)
    present = {name for name in regular if name not in (MANIFEST, SIGNATURE)}
    for name, digest in listed.items():
        if name not in present:
            result.missing.append(name)
            continue
        try:
            same = sha256_file(run_dir / name) == digest
        except UserError:  # replaced by something else since the walk
            same = False
        if not same:
            result.changed.append(name)
    result.extra = sorted(present - set(listed)) + other  # a link, FIFO or device is never evidence
    _check_run_path(run_dir, result)
    if public_key is not None:
        keys, result.trusted_by = [load_public_key(public_key)], f"the supplied key {public_key}"
    else:
        keys = [load_public_key(path) for path in trusted_keys]
        result.trusted_by = "the keys in evidence.trusted_public_keys" if keys else None
    _check_signature(run_dir, keys, result, manifest_bytes)
    if result.changed or result.missing or result.extra or result.status == MODIFIED:
        result.status = MODIFIED
    elif result.signed and not result.signature_valid:
        result.status = SIGNATURE_INVALID
    elif result.signed:
        result.status = INTACT
    elif keys:
        result.status = UNSIGNED
        result.notes.append(f"a signature by {result.trusted_by} is required, but the run has no {SIGNATURE} "
                            f"(never signed, or re-sealed without the key)")
    if ledger is not None:
        _check_ledger(run_dir, Path(ledger), ledger_anchor, result)
    return result


def _check_signature(run_dir: Path, keys: Sequence[Ed25519PublicKey], result: VerifyResult,
                     manifest_bytes: bytes) -> None:
    """Check MANIFEST.sig; with `keys`, only a signature by one of them counts."""
    path = run_dir / SIGNATURE
    if not path.is_file() and not path.is_symlink():
        return
    result.signed = True
    result.signature_valid = False
    try:
        data = load_json(path, "signature", SIGNATURE_BYTES, ours=True)
        signature = base64.b64decode(data["signature"], validate=True)
        embedded = Ed25519PublicKey.from_public_bytes(base64.b64decode(data["public_key"], validate=True))
        result.key_fingerprint = str(data.get("public_key_fingerprint"))
    except (ValueError, KeyError, TypeError, UserError) as exc:
        result.notes.append(f"{SIGNATURE} is damaged ({exc.__class__.__name__}: {str(exc)[:300]})")
        return
    key = embedded
    if result.key_fingerprint != key_fingerprint(embedded):
        result.notes.append(f"{SIGNATURE}: the fingerprint does not match the embedded public key")
        return
    if keys:
        result.key_trusted = True
        match = next((k for k in keys if key_fingerprint(k) == result.key_fingerprint), None)
        if match is None:
            wanted = ", ".join(key_fingerprint(k) for k in keys)
            result.notes.append(f"signed by {result.key_fingerprint}, not by {result.trusted_by} ({wanted}): "
                                f"re-signed with another key, or the key is not trusted yet")
            return
        key = match
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        result.notes.append(f"the signature does not match {MANIFEST}: the manifest was changed after signing")
        return
    result.signature_valid = True


def _check_run_path(run_dir: Path, result: VerifyResult) -> None:
    """A run directory is a real directory with a name the harness gives; anything else is not evidence."""
    if run_dir.is_symlink():
        result.notes.append(f"modified: {run_dir} is a symbolic link (to {os.path.realpath(run_dir)}); a run "
                            f"directory is verified where it lies, against the ledger beside it")
        result.status = MODIFIED
    if not RUN_NAME.fullmatch(run_dir.name):
        result.notes.append(f"modified: {run_dir.name!r} is not a name the harness gives a run directory "
                            f"(ASCII letters, digits, '.', '_' and '-'): a look-alike of another run's name?")
        result.status = MODIFIED


def _check_ledger(run_dir: Path, ledger: Path, anchor: str | None, result: VerifyResult) -> None:
    """The run's seal as the ledger recorded it, and the whole chain; sets the status when the files alone were ok."""
    result.ledger = ledger
    if not ledger.is_file():
        result.notes.append(f"ledger {ledger} does not exist, so nothing shows this run was sealed when it ran. "
                            f"Pass the ledger the run was sealed into with --ledger FILE.")
        _worsen(result, NOT_IN_LEDGER)
        return
    chain = read_ledger(ledger, anchor)
    result.ledger_head = chain.head
    mine = [line for line in chain.lines if line.run_dir == run_dir.name]
    sealed = [line for line in mine if line.event == SEALED]
    if not sealed:
        started = next((line for line in mine if line.event == STARTED), None)
        if started is not None:
            result.notes.append(f"{ledger}:{started.number} records the run's start, but the run was never sealed "
                                f"(it did not finish, or its 'sealed' line was removed)")
        else:
            result.notes.append(f"{ledger} has no line for {run_dir.name}: the run was not sealed into this ledger, "
                                f"or its line was removed")
        _worsen(result, NOT_IN_LEDGER)
    else:
        first = sealed[0]
        result.ledger_line = first.number
        if chain.anchor_line is not None and first.number > chain.anchor_line:
            result.notes.append(f"{ledger}:{first.number} sealed the run after line {chain.anchor_line}, the "
                                f"recorded head {anchor}: that head does not cover it (a run appended later, or "
                                f"forged); verify it against a head recorded after it was sealed")
            _worsen(result, NOT_COVERED)
        if len(sealed) > 1:
            result.notes.append(f"{ledger}: the run was sealed {len(sealed)} times (lines "
                                f"{', '.join(str(line.number) for line in sealed)}); a run is sealed once, so only "
                                f"line {first.number} counts")
        recorded = first.entry.get("manifest_sha256")
        if recorded != result.manifest_digest:
            result.notes.append(f"modified: the manifest differs from the one the ledger recorded when the run was "
                                f"sealed ({ledger}:{first.number} recorded {recorded}, {MANIFEST} is now "
                                f"{result.manifest_digest})")
            _worsen(result, MODIFIED)
        verdict_now, verdict_then = run_verdict(run_dir), first.entry.get("verdict")
        if verdict_now is not None and verdict_then is not None and verdict_now != verdict_then:
            result.notes.append(f"modified: {ledger}:{first.number} recorded verdict {verdict_then!r}, the run now "
                                f"says {verdict_now!r}")
            _worsen(result, MODIFIED)
    if chain.problems:
        result.notes.extend(chain.problems)
        _worsen(result, LEDGER_BROKEN)


def _worsen(result: VerifyResult, status: str) -> None:
    """Set `status` unless the files themselves already failed (that finding is the more specific one)."""
    if result.ok or (result.status == NO_MANIFEST and status != NOT_IN_LEDGER):
        result.status = status
