"""Memory limits and disk write throttling of local services with cgroup v1 (the resource faults of issue 21).

Why v1: on this machine the v2 mount (/sys/fs/cgroup/unified) has no controllers enabled, while
the v1 `memory` and `blkio` hierarchies are mounted and writable (FIELD-NOTES.md, measured:
a 1 MiB/s `blkio.throttle.write_bps_device` rule made 2 MiB of fsync'd writes take 2.0 s).
The v1 files are the v2 ones under other names: `memory.limit_in_bytes` = `memory.max`,
`blkio.throttle.write_bps_device` = `io.max wbps`.

A `LimitGroup` is one group in one controller, `<root>/rsl/<name>`; processes are moved in and,
by `release`, back to the controller's root group before the group is removed. A process
started *inside* a group (`spawn_in`) writes its own PID into the group before it execs, so
even its first allocation is charged there (the hog, the disk probe).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ...errors import HarnessError
from .cgroups import _pids, _remove, _write, controller_root

PARENT = "rsl"


class LimitGroup:
    """A cgroup v1 group in `controller` (memory, blkio), under rsl/."""

    def __init__(self, controller: str, name: str) -> None:
        root = controller_root(controller)
        if root is None:
            raise HarnessError(f"no cgroup v1 '{controller}' hierarchy is mounted (see /proc/self/mounts); "
                               f"the {controller} faults need it (as root)")
        self.controller, self.root, self.path = controller, root, root / PARENT / name

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def exists(self) -> bool:
        return self.path.is_dir()

    def set(self, file: str, value: str) -> None:
        _write(self.path / file, value)

    def read(self, file: str) -> str:
        try:
            return (self.path / file).read_text().strip()
        except OSError as exc:
            raise HarnessError(f"could not read {self.path / file} ({exc.strerror})") from None

    def read_int(self, file: str) -> int:
        return int(self.read(file).split()[0])

    def add(self, pid: int) -> None:
        _write(self.path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return _pids(self.path)

    def release(self, timeout_s: float = 2.0) -> list[int]:
        """Move every process still here back to the root group, then remove the group; the PIDs moved."""
        if not self.path.is_dir():
            return []
        moved = self.pids()
        for pid in moved:
            try:
                _write(self.root / "cgroup.procs", str(pid))
            except HarnessError:
                pass  # it exited meanwhile
        _remove(self.path, timeout_s)
        return moved


def spawn_in(groups: list[LimitGroup], argv: list[str]) -> subprocess.Popen[bytes]:
    """Start `argv` already inside `groups`: a shell writes its own PID into each group, then execs it."""
    joins = "".join(f"echo $$ > '{g.path / 'cgroup.procs'}' && " for g in groups)
    return subprocess.Popen(["/bin/sh", "-c", f"{joins}exec \"$@\"", "rsl-limited", *argv],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


# -- disk devices ---------------------------------------------------------------------------------
def block_device(path: Path) -> tuple[str | None, str]:
    """("MAJ:MIN" of the whole disk holding `path`, what was seen), or (None, why it cannot be throttled)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return None, f"cannot stat {path} ({exc.strerror})"
    major, minor = os.major(st.st_dev), os.minor(st.st_dev)
    sysfs = Path(f"/sys/dev/block/{major}:{minor}")
    if major == 0 or not sysfs.exists():
        return None, (f"{path} is on device {major}:{minor}, not a block device (an overlay, tmpfs or other "
                      f"virtual filesystem): blkio/io.max cannot throttle it")
    if (sysfs / "partition").exists():  # throttle rules apply to the whole disk's queue
        disk = (sysfs.resolve().parent / "dev").read_text().strip()
        return disk, f"{path} is on partition {major}:{minor} of disk {disk}"
    return f"{major}:{minor}", f"{path} is on block device {major}:{minor} ({sysfs.resolve().name})"


def throttle_support(path: Path) -> tuple[str | None, str]:
    """The device to throttle for writes under `path`, or (None, why not here)."""
    if os.geteuid() != 0:
        return None, "disk throttling needs root (cgroup v1 blkio)"
    root = controller_root("blkio")
    if root is None or not (root / "blkio.throttle.write_bps_device").exists():
        return None, "no cgroup v1 blkio hierarchy with throttling (blkio.throttle.*) is mounted"
    return block_device(path)
