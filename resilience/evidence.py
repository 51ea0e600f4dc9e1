"""The run directory as evidence: naming, manifest, signature, verification, ledger.

A run directory is worth something to an auditor only if nobody can change it
unnoticed. So, after the reports are rendered:

1. `write_manifest` hashes every file (SHA-256, `sha256sum` format, so
   `sha256sum -c MANIFEST.sha256` works without this tool);
2. `sign_manifest` signs the manifest with an Ed25519 key (optional);
3. `append_ledger` adds one line to `reports/ledger.jsonl` that quotes the
   manifest digest and the hash of the previous line (a hash chain), so a run
   that is deleted or whose ledger line is edited is noticed too.

`seal_run` does all three in that order; `record_start` adds a "started" line
when the run directory is created, so a run that never finished still shows.
`verify` checks a run (files, signature, trusted keys, its ledger lines and the
whole chain); `verify_ledger` checks every run the ledger names.
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
from typing import Any, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .atomic import atomic_open, atomic_write_text, write_json_atomic
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
UNSIGNED = "unsigned"  # files match the manifest, but a signature by a trusted key is required and there is none
NOT_IN_LEDGER = "not-in-ledger"  # the ledger has no "sealed" line for the run (or there is no ledger)
LEDGER_BROKEN = "ledger-broken"  # the ledger's hash chain does not hold (a line was edited, inserted or removed)

# ledger line kinds ("event"); lines written before the field existed are seals
STARTED = "started"  # the run directory was created
SEALED = "sealed"  # the run was sealed: the line quotes its manifest digest

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
    atomic_write_text(path, text)
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
    except OSError as exc:
        raise UserError(f"public key {path} cannot be read ({exc.strerror or exc}). Fix its permissions or pass "
                        f"another file.") from None
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
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory. Pass a run directory, e.g. reports/20250101T000000Z-pod-kill.")
    manifest = run_dir / MANIFEST
    if not manifest.is_file():
        result = VerifyResult(run_dir, NO_MANIFEST, notes=[f"no {MANIFEST}: the run was never sealed, so its "
                                                           f"integrity cannot be shown"])
        if ledger is not None:
            _check_ledger(run_dir, Path(ledger), ledger_anchor, result)
        return result
    result = VerifyResult(run_dir, UNSIGNED_INTACT, manifest_digest=sha256_file(manifest))
    try:
        manifest_text_ = manifest.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{manifest} cannot be read ({exc}); it is damaged: the run's integrity cannot be "
                        f"shown.") from None
    listed = _parse_manifest(manifest_text_, manifest)
    present = set(_evidence_files(run_dir))
    for name, digest in listed.items():
        if name not in present:
            result.missing.append(name)
        elif sha256_file(run_dir / name) != digest:
            result.changed.append(name)
    result.extra = sorted(present - set(listed))
    if public_key is not None:
        keys, result.trusted_by = [load_public_key(public_key)], f"the supplied key {public_key}"
    else:
        keys = [load_public_key(path) for path in trusted_keys]
        result.trusted_by = "the keys in evidence.trusted_public_keys" if keys else None
    _check_signature(run_dir, keys, result)
    if result.changed or result.missing or result.extra:
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


def _check_signature(run_dir: Path, keys: Sequence[Ed25519PublicKey], result: VerifyResult) -> None:
    """Check MANIFEST.sig; with `keys`, only a signature by one of them counts."""
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
        key.verify(signature, (run_dir / MANIFEST).read_bytes())
    except InvalidSignature:
        result.notes.append(f"the signature does not match {MANIFEST}: the manifest was changed after signing")
        return
    result.signature_valid = True


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


def run_verdict(run_dir: Path) -> str | None:
    """The verdict a run (result.json) or a game-day (compliance.json) states now; None when unreadable."""
    for name, key in (("result.json", "verdict"), ("compliance.json", "overall_verdict")):
        try:
            data = json.loads((run_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get(key) is not None:
            return str(data[key])
    return None


# -- ledger ----------------------------------------------------------------------

def _line_hash(line: str) -> str:
    return hashlib.sha256(line.rstrip("\n").encode("utf-8")).hexdigest()


def ledger_entry(run_dir: Path, experiment: str, verdict: str | None, digest: str | None,
                 now: datetime | None = None, event: str = SEALED) -> dict[str, Any]:
    """The fields of one ledger line (append_ledger adds `prev`).

    `event` is "sealed" (the default: the line quotes the manifest digest) or
    "started"; older lines have no `event` and are read as seals.
    """
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    entry = {"run_dir": run_dir.name, "experiment": experiment, "verdict": verdict, "manifest_sha256": digest,
             "time": when.isoformat().replace("+00:00", "Z"), "event": event}
    if event == STARTED:
        del entry["verdict"], entry["manifest_sha256"]
    return entry


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


def record_start(run_dir: Path, experiment: str, now: datetime | None = None) -> str:
    """Add a "started" line for a new run directory, so a run that never finishes still shows in the ledger."""
    return append_ledger(run_dir.parent, ledger_entry(run_dir, experiment, None, None, now, event=STARTED))


@dataclass(frozen=True)
class LedgerLine:
    """One parsed ledger line: its number (1-based), its hash (what the next line's `prev` quotes) and fields."""

    number: int
    hash: str
    entry: dict[str, Any]

    @property
    def event(self) -> str:
        return str(self.entry.get("event") or SEALED)

    @property
    def run_dir(self) -> str | None:
        name = self.entry.get("run_dir")
        return None if name is None else str(name)


@dataclass
class LedgerChain:
    """The ledger's lines, where its chain breaks, and its head (the last line's hash)."""

    path: Path
    lines: list[LedgerLine]
    head: str
    problems: list[str]


def read_ledger(path: Path, anchor: str | None = None) -> LedgerChain:
    """Parse the ledger and check that every line's `prev` is the hash of the line before.

    An edited, inserted or removed line breaks the chain at the next line, which
    is named. The last line has no successor, so its edits show only against the
    run (manifest digest, verdict) or against a head recorded earlier (`anchor`):
    the ledger must still contain the line with that hash.
    """
    problems: list[str] = []
    lines: list[LedgerLine] = []
    prev = GENESIS
    try:
        ledger_text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not UTF-8 text; the ledger is damaged.") from None
    for number, text in enumerate(ledger_text.splitlines(), 1):
        if not text.strip():
            continue
        digest = _line_hash(text)
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            problems.append(f"{path}:{number}: not a JSON object (edited?)")
            prev = digest
            continue
        if entry.get("prev") != prev:
            problems.append(f"{path}:{number}: chain broken — 'prev' does not match the hash of the line before "
                            f"(a line was edited, inserted or removed above line {number})")
        prev = digest
        lines.append(LedgerLine(number, digest, entry))
    if anchor is not None and anchor.lower() not in {line.hash for line in lines}:
        problems.append(f"{path}: no line has the recorded head {anchor}: the ledger was rewritten up to or "
                        f"beyond the point where that head was recorded")
    return LedgerChain(path, lines, prev, problems)


@dataclass
class LedgerResult:
    """What verify_ledger found; `head` is the last line's hash (write it down somewhere else to anchor the chain)."""

    ok: bool
    entries: int
    head: str
    problems: list[str] = field(default_factory=list)
    never_sealed: list[str] = field(default_factory=list)  # runs that started but have no "sealed" line


def verify_ledger(reports_dir: Path, anchor: str | None = None) -> LedgerResult:
    """Check the hash chain, and that ledger and run directories agree.

    An edited or removed line breaks the chain at the next line. A removed last
    line, or a deleted run, shows as a run directory without a line or a line
    without its directory; a re-sealed run shows as a manifest digest mismatch.
    A run that started but never sealed is listed in `never_sealed`: a crash is a
    fact to report, not a break in the evidence.
    """
    path = reports_dir / LEDGER
    if not path.is_file():
        return LedgerResult(False, 0, GENESIS, [f"{path} does not exist"])
    chain = read_ledger(path, anchor)
    problems = list(chain.problems)
    sealed: dict[str, LedgerLine] = {}
    started: dict[str, LedgerLine] = {}
    for line in chain.lines:
        if line.run_dir is None:
            continue
        book = sealed if line.event == SEALED else started
        book.setdefault(line.run_dir, line)
    for name in sorted(set(sealed) | set(started)):
        if not (reports_dir / name).is_dir():
            problems.append(f"{name}: listed in the ledger but the run directory is gone")
    for name, line in sealed.items():
        run_dir = reports_dir / name
        if not run_dir.is_dir():
            continue
        digest, current = line.entry.get("manifest_sha256"), manifest_digest(run_dir)
        if digest is not None and current != digest:
            problems.append(f"{name}: manifest digest {current} differs from the ledger's {digest} "
                            f"(line {line.number})")
        verdict_now, verdict_then = run_verdict(run_dir), line.entry.get("verdict")
        if verdict_now is not None and verdict_then is not None and verdict_now != verdict_then:
            problems.append(f"{name}: verdict {verdict_now!r} differs from the ledger's {verdict_then!r} "
                            f"(line {line.number})")
    for child in sorted(reports_dir.iterdir()):
        if child.is_dir() and (child / MANIFEST).is_file() and child.name not in sealed:
            problems.append(f"{child.name}: sealed run directory with no ledger line (line removed?)")
    never = sorted(name for name in started if name not in sealed)
    return LedgerResult(not problems, len(chain.lines), chain.head, problems, never)


# -- all of it, in order ---------------------------------------------------------

def seal_run(run_dir: Path, experiment: str, verdict: str, signing_key: Path | None = None,
             reports_dir: Path | None = None) -> str:
    """Manifest, optional signature, ledger line — the last thing a run does. Returns the manifest digest."""
    digest = write_manifest(run_dir)
    if signing_key is not None:
        sign_manifest(run_dir, signing_key)
    append_ledger(reports_dir or run_dir.parent, ledger_entry(run_dir, experiment, verdict, digest))
    return digest
