"""The run directory as evidence: naming, manifest, signature, verification, ledger.

A run directory is worth something to an auditor only if nobody can change it
unnoticed. So, after the reports are rendered:

1. `write_manifest` hashes every file (SHA-256, `sha256sum` format, so
   `sha256sum -c MANIFEST.sha256` works without this tool);
2. `sign_manifest` signs the manifest with an Ed25519 key (optional);
3. `append_ledger` adds one line to `reports/ledger.jsonl` that quotes the
   manifest digest and the hash of the previous line (a hash chain), so a run
   that is deleted or whose ledger line is edited is noticed too.

`seal_run` does all three in that order; `verify` and `verify_ledger` check them.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import UserError

MANIFEST = "MANIFEST.sha256"
SIGNATURE = "MANIFEST.sig"
LEDGER = "ledger.jsonl"
GENESIS = "0" * 64  # the "previous hash" of the first ledger line

# VerifyResult.status values
INTACT = "intact"  # files match the manifest and the signature is valid
UNSIGNED_INTACT = "unsigned-intact"  # files match the manifest; there is no signature
MODIFIED = "modified"  # a file was changed, removed or added since the manifest was written
SIGNATURE_INVALID = "signature-invalid"  # files match the manifest, but the manifest is not what was signed
NO_MANIFEST = "no-manifest"  # the run was never sealed

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# -- run directory ---------------------------------------------------------------

def new_run_dir(reports_dir: Path, experiment: str, now: datetime) -> Path:
    """Create `<reports_dir>/<YYYYmmddTHHMMSSZ>-<experiment>`; add `-2`, `-3`... if taken.

    Creation is atomic (mkdir without exist_ok), so two runs starting in the
    same second never share a directory.
    """
    if not _RUN_NAME.match(experiment):
        raise UserError(f"experiment name {experiment!r} cannot name a run directory: use letters, digits, '.', '_' "
                        f"and '-' only (e.g. 'zone-failure').")
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    reports_dir.mkdir(parents=True, exist_ok=True)
    base = f"{stamp}-{experiment}"
    for n in range(1, 1000):
        candidate = reports_dir / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise UserError(f"{reports_dir}: more than 999 run directories named {base}*; remove old ones.")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- manifest --------------------------------------------------------------------

def _evidence_files(run_dir: Path) -> list[str]:
    """Every file under run_dir except the manifest and its signature, as sorted POSIX paths."""
    names = []
    for path in run_dir.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        rel = path.relative_to(run_dir).as_posix()
        if rel in (MANIFEST, SIGNATURE):
            continue
        if "\n" in rel or "\\" in rel:
            raise UserError(f"{run_dir}: file name {rel!r} contains a newline or backslash and cannot be listed in "
                            f"{MANIFEST}; rename it.")
        names.append(rel)
    return sorted(names)


def manifest_text(run_dir: Path) -> str:
    """The manifest as `sha256sum` would print it (two spaces, relative path)."""
    return "".join(f"{sha256_file(run_dir / name)}  {name}\n" for name in _evidence_files(run_dir))


def write_manifest(run_dir: Path) -> str:
    """Write MANIFEST.sha256 over every other file; return the SHA-256 of the manifest itself.

    That digest stands for the whole run: the ledger and the compliance report quote it.
    """
    text = manifest_text(run_dir)
    path = run_dir / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    stale = run_dir / SIGNATURE
    if stale.exists():  # a signature over an older manifest would only mislead
        stale.unlink()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest_digest(run_dir: Path) -> str | None:
    """SHA-256 of the run's manifest file, or None when the run was never sealed."""
    path = run_dir / MANIFEST
    return sha256_file(path) if path.is_file() else None


def _parse_manifest(text: str, where: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise UserError(f"{where}:{number}: not a sha256sum line ('<64 hex digits>  <path>'); the manifest is "
                            f"damaged — treat the run as modified.")
        entries[name.lstrip("*")] = digest.lower()
    return entries


# -- keys and signature ----------------------------------------------------------

def keygen(path: Path) -> Path:
    """Create an Ed25519 key pair: private key at `path` (PEM, mode 600), public at `path.pub`.

    Refuses to overwrite either file: losing a signing key silently would make
    old signatures unverifiable against the key people trust.
    """
    path = Path(path)
    public_path = path.with_name(path.name + ".pub")
    for existing in (path, public_path):
        if existing.exists():
            raise UserError(f"{existing} already exists; refusing to overwrite a key. Choose another path or move "
                            f"the old key away first.")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    os.chmod(path, 0o600)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    public_path.write_bytes(public_pem)
    return public_path


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(key: Ed25519PublicKey) -> str:
    """`SHA256:<hex>` of the raw 32-byte public key: short enough to compare by eye."""
    return "SHA256:" + hashlib.sha256(_raw_public(key)).hexdigest()


def _load_private(key_path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except FileNotFoundError:
        raise UserError(f"signing key {key_path} does not exist. Create one with `resilience keygen {key_path}` "
                        f"or fix 'evidence.signing_key'.") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"signing key {key_path} is not an unencrypted PEM private key ({exc}). "
                        f"Create one with `resilience keygen PATH`.") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"signing key {key_path} is not an Ed25519 key. Create one with `resilience keygen PATH`.")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (or from a private key file, whose public half is used)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"public key {path} does not exist. Pass the .pub file `resilience keygen` wrote.") from None
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path} is neither a PEM public nor private key ({exc}).") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"{path} is not an Ed25519 key. Pass the .pub file `resilience keygen` wrote.")
    return key


def sign_manifest(run_dir: Path, key_path: Path) -> Path:
    """Sign MANIFEST.sha256 with an Ed25519 private key; write MANIFEST.sig (JSON) and return its path."""
    manifest = run_dir / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{run_dir} has no {MANIFEST} to sign; write the manifest first (write_manifest).")
    key = _load_private(key_path)
    signature = key.sign(manifest.read_bytes())
    public = key.public_key()
    data = {
        "algorithm": "ed25519",
        "signed_file": MANIFEST,
        "signature": base64.b64encode(signature).decode("ascii"),
        "public_key": base64.b64encode(_raw_public(public)).decode("ascii"),
        "public_key_fingerprint": key_fingerprint(public),
    }
    path = run_dir / SIGNATURE
    write_json_atomic(path, data)
    return path


# -- verify ----------------------------------------------------------------------

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
    key_trusted: bool = False  # checked against a public key the caller supplied
    manifest_digest: str | None = None
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
            trust = "checked against the key you supplied" if self.key_trusted else \
                "NOT checked against a trusted key (pass --public-key to do so)"
            lines.append(f"  signature: {'valid' if self.signature_valid else 'INVALID'}; key {self.key_fingerprint}, "
                         f"{trust}")
        lines.extend(f"  {note}" for note in self.notes)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "status": self.status, "ok": self.ok, "changed": self.changed,
                "missing": self.missing, "extra": self.extra, "signed": self.signed,
                "signature_valid": self.signature_valid, "key_fingerprint": self.key_fingerprint,
                "key_trusted": self.key_trusted, "manifest_digest": self.manifest_digest, "notes": self.notes}


def verify(run_dir: Path, public_key: Path | None = None) -> VerifyResult:
    """Compare every file with the manifest and check the signature (against `public_key` if given)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory. Pass a run directory, e.g. reports/20250101T000000Z-pod-kill.")
    manifest = run_dir / MANIFEST
    if not manifest.is_file():
        return VerifyResult(run_dir, NO_MANIFEST, notes=[f"no {MANIFEST}: the run was never sealed, so its integrity "
                                                         f"cannot be shown"])
    result = VerifyResult(run_dir, UNSIGNED_INTACT, manifest_digest=sha256_file(manifest))
    listed = _parse_manifest(manifest.read_text(encoding="utf-8"), manifest)
    present = set(_evidence_files(run_dir))
    for name, digest in listed.items():
        if name not in present:
            result.missing.append(name)
        elif sha256_file(run_dir / name) != digest:
            result.changed.append(name)
    result.extra = sorted(present - set(listed))
    _check_signature(run_dir, public_key, result)
    if result.changed or result.missing or result.extra:
        result.status = MODIFIED
    elif result.signed and not result.signature_valid:
        result.status = SIGNATURE_INVALID
    elif result.signed:
        result.status = INTACT
    elif public_key is not None:
        result.status = SIGNATURE_INVALID
        result.notes.append(f"a public key was supplied but the run has no {SIGNATURE}")
    return result


def _check_signature(run_dir: Path, public_key: Path | None, result: VerifyResult) -> None:
    path = run_dir / SIGNATURE
    if not path.is_file():
        return
    result.signed = True
    result.signature_valid = False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        signature = base64.b64decode(data["signature"], validate=True)
        embedded = Ed25519PublicKey.from_public_bytes(base64.b64decode(data["public_key"], validate=True))
        result.key_fingerprint = str(data.get("public_key_fingerprint"))
    except (ValueError, KeyError, TypeError) as exc:
        result.notes.append(f"{SIGNATURE} is damaged ({exc.__class__.__name__}: {exc})")
        return
    key = embedded
    if result.key_fingerprint != key_fingerprint(embedded):
        result.notes.append(f"{SIGNATURE}: the fingerprint does not match the embedded public key")
        return
    if public_key is not None:
        key = load_public_key(public_key)
        result.key_trusted = True
        if key_fingerprint(key) != result.key_fingerprint:
            result.notes.append(f"signed by {result.key_fingerprint}, not by the supplied key {key_fingerprint(key)}")
            return
    try:
        key.verify(signature, (run_dir / MANIFEST).read_bytes())
    except InvalidSignature:
        result.notes.append(f"the signature does not match {MANIFEST}: the manifest was changed after signing")
        return
    result.signature_valid = True


# -- ledger ----------------------------------------------------------------------

def _line_hash(line: str) -> str:
    return hashlib.sha256(line.rstrip("\n").encode("utf-8")).hexdigest()


def ledger_entry(run_dir: Path, experiment: str, verdict: str, digest: str | None,
                 now: datetime | None = None) -> dict[str, Any]:
    """The fields of one ledger line (append_ledger adds `prev`)."""
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {"run_dir": run_dir.name, "experiment": experiment, "verdict": verdict, "manifest_sha256": digest,
            "time": when.isoformat().replace("+00:00", "Z")}


def append_ledger(reports_dir: Path, entry: dict[str, Any]) -> str:
    """Append one line to reports/ledger.jsonl chained to the previous line; return the new line's hash.

    The file is locked while appending, so concurrent runs cannot interleave lines.
    """
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / LEDGER
    with path.open("a+", encoding="utf-8") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            f.seek(0)
            lines = [line for line in f.read().splitlines() if line.strip()]
            prev = _line_hash(lines[-1]) if lines else GENESIS
            line = json.dumps({**{k: v for k, v in entry.items() if k != "prev"}, "prev": prev},
                              sort_keys=True, separators=(",", ":"))
            f.seek(0, os.SEEK_END)
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return _line_hash(line)


@dataclass
class LedgerResult:
    """What verify_ledger found; `head` is the last line's hash (write it down somewhere else to anchor the chain)."""

    ok: bool
    entries: int
    head: str
    problems: list[str] = field(default_factory=list)


def verify_ledger(reports_dir: Path) -> LedgerResult:
    """Check the hash chain, and that ledger and run directories agree.

    An edited or removed line breaks the chain at the next line. A removed last
    line, or a deleted run, shows as a run directory without a line or a line
    without its directory; a re-sealed run shows as a manifest digest mismatch.
    """
    path = reports_dir / LEDGER
    if not path.is_file():
        return LedgerResult(False, 0, GENESIS, [f"{path} does not exist"])
    problems: list[str] = []
    prev = GENESIS
    names: dict[str, str | None] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    count = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        count += 1
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{path}:{number}: not JSON (edited?)")
            prev = _line_hash(line)
            continue
        if entry.get("prev") != prev:
            problems.append(f"{path}:{number}: chain broken — 'prev' does not match the hash of the line before "
                            f"(a line was edited, inserted or removed above line {number})")
        prev = _line_hash(line)
        if isinstance(entry, dict) and "run_dir" in entry:
            names[str(entry["run_dir"])] = entry.get("manifest_sha256")
    for name, digest in names.items():
        run_dir = reports_dir / name
        if not run_dir.is_dir():
            problems.append(f"{name}: listed in the ledger but the run directory is gone")
            continue
        current = manifest_digest(run_dir)
        if digest is not None and current != digest:
            problems.append(f"{name}: manifest digest {current} differs from the ledger's {digest}")
    for child in sorted(reports_dir.iterdir()):
        if child.is_dir() and (child / MANIFEST).is_file() and child.name not in names:
            problems.append(f"{child.name}: sealed run directory with no ledger line (line removed?)")
    return LedgerResult(not problems, count, prev, problems)


# -- all of it, in order ---------------------------------------------------------

def seal_run(run_dir: Path, experiment: str, verdict: str, signing_key: Path | None = None,
             reports_dir: Path | None = None) -> str:
    """Manifest, optional signature, ledger line — the last thing a run does. Returns the manifest digest."""
    digest = write_manifest(run_dir)
    if signing_key is not None:
        sign_manifest(run_dir, signing_key)
    append_ledger(reports_dir or run_dir.parent, ledger_entry(run_dir, experiment, verdict, digest))
    return digest
