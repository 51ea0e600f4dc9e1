"""The files of a run directory and their SHA-256 manifest (`sha256sum` format).

`write_manifest` hashes every file except the manifest and its signature, so
`sha256sum -c MANIFEST.sha256` works without this tool; the manifest's own
digest stands for the whole run (the ledger and the compliance report quote it).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UserError

MANIFEST = "MANIFEST.sha256"
SIGNATURE = "MANIFEST.sig"


def sha256_file(path: Path) -> str:
    """SHA-256 of a regular file, opened without following a link or blocking (a FIFO or device is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({exc.strerror or exc}); a run's files are regular files.") from None
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"{path} is not a regular file; a run's files are regular files.")
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def walk(run_dir: Path) -> tuple[list[str], list[str]]:
    """(regular files, every other entry) under run_dir as sorted POSIX paths, never following a link.

    The other entries are links (to files or directories), FIFOs, sockets and
    devices, named with what they are: `verify` counts each as an extra file,
    since the harness writes none and a link can point at anything.
    """
    regular: list[str] = []
    other: list[str] = []
    stack = [run_dir]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = Path(entry.path).relative_to(run_dir).as_posix()
                if entry.is_symlink():
                    other.append(f"{rel} (a symbolic link)")
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    regular.append(rel)
                else:
                    other.append(f"{rel} (not a regular file)")
    return sorted(regular), sorted(other)


def evidence_files(run_dir: Path) -> list[str]:
    """Every regular file under run_dir except the manifest and its signature, as sorted POSIX paths."""
    names = []
    for rel in walk(run_dir)[0]:
        if rel in (MANIFEST, SIGNATURE):
            continue
        if "\n" in rel or "\\" in rel:
            raise UserError(f"{run_dir}: file name {rel!r} contains a newline or backslash and cannot be listed in "
                            f"{MANIFEST}; rename it.")
        names.append(rel)
    return names


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
    """SHA-256 of the run's manifest file, or None when the run was never sealed (or it is not a regular file)."""
    path = run_dir / MANIFEST
    try:
        return sha256_file(path) if path.is_file() else None
    except UserError:
        return None


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
