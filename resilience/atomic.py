"""Writing files atomically without trusting the directory: never follow a planted link.

A fixed temporary name (`.report.html.tmp`) lets anyone who can write in a
run directory plant a symlink there and have the harness (often root) write
through it, anywhere. So temporary files are created here with
`tempfile.mkstemp` (O_CREAT|O_EXCL, a random name, mode 0600) in the target's
own directory, then renamed over the target with `os.replace` (which replaces
a link at the target name instead of following it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", *, fsync: bool = False, perms: int = 0o644) -> Iterator[IO[Any]]:
    """Open a fresh temporary file beside `path` for writing; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, perms)
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str, *, fsync: bool = False, perms: int = 0o644) -> None:
    """Write `text` to `path` atomically (see atomic_open); with `fsync`, the rename survives a power cut too."""
    with atomic_open(path, "w", fsync=fsync, perms=perms) as f:
        f.write(text)
    if fsync:
        _fsync_dir(Path(path).parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON (indented, non-JSON values as strings), fsync'ed: a kill at any instant leaves the old file or the new."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n", fsync=True)


def is_leftover_temp(path: Path) -> bool:
    """A temporary file of an atomic write that a kill interrupted (ours, or History.dump's)."""
    name = path.name
    return (name.startswith(".") and name.endswith(".tmp")) or name == "history.jsonl.tmp"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def private_temp_path(path: Path) -> Iterator[Path]:
    """A path to write `path`'s new content to, for writers that take a path (matplotlib, PDF libraries).

    The path lies in a fresh private directory (mkdtemp: random name, mode 0700)
    beside `path`, where nobody else can plant anything; on success the file
    replaces `path`; the directory is always removed.
    """
    path = Path(path)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tmp = tmp_dir / path.name
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
