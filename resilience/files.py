"""Writing a run directory's files so that a kill at any instant leaves the old file or the new one, never half.

A temporary file is created next to the target with `tempfile.mkstemp` (a fresh,
unguessable name opened O_EXCL, so two writers or a planted symlink cannot
collide with it), written, fsync'ed, then renamed over the target with
`os.replace`; the directory is fsync'ed too, so the rename survives a power cut.
Temporary names start with `.<name>.` and end with `.tmp`: `is_leftover_temp`
recognises one a kill left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FILE_MODE = 0o644  # evidence is meant to be read by others (auditors, CI); mkstemp would make it 0600


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (see the module docstring)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON (indented, non-JSON values as strings) through `write_text_atomic`."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


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
