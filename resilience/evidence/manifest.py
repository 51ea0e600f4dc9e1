"""The files of a run directory and their SHA-256 manifest (`sha256sum` format).

`write_manifest` hashes every file except the manifest and its signature, so
`sha256sum -c MANIFEST.sha256` works without this tool; the manifest's own
digest stands for the whole run (the ledger and the compliance report quote it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UserError

MANIFEST = "MANIFEST.sha256"
SIGNATURE = "MANIFEST.sig"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def evidence_files(run_dir: Path) -> list[str]:
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
    return "".join(f"{sha256_file(run_dir / name)}  {name}\n" for name in evidence_files(run_dir))


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


def parse_manifest(text: str, where: Path) -> dict[str, str]:
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
