"""CPU limits, CPU accounting and freezing of local services with cgroup v1.

Why v1: on this machine kind the cgroup v2 mount has no cpu controller, while
the v1 `cpu` controller enforces `cfs_quota_us` exactly and the v1 freezer
works (FIELD-NOTES.md). Each API replica gets a `CpuGroup` (its CPU limit, like
a Kubernetes CPU limit, and the usage the autoscaler reads); a zone in process
mode gets a `Freezer` (losing a zone = freezing every process in it).

Groups live under `<hierarchy>/<parent>/<name>`, e.g.
/sys/fs/cgroup/cpu/rsl/api-3. `cpu` and `cpuacct` may be one co-mounted
hierarchy (cpu,cpuacct) or two; both layouts are handled.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from resilience.errors import HarnessError

CFS_PERIOD_US = 100_000
MOUNTS_FILE = "/proc/self/mounts"


def controller_root(controller: str, mounts_file: str = MOUNTS_FILE) -> Path | None:
    """Where the cgroup v1 hierarchy holding `controller` is mounted, or None."""
    try:
        lines = Path(mounts_file).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "cgroup" and controller in fields[3].split(","):
            return Path(fields[1])
    return None


def _require_root(controller: str) -> Path:
    root = controller_root(controller)
    if root is None:
        raise HarnessError(f"no cgroup v1 '{controller}' hierarchy is mounted (see /proc/self/mounts). "
                           f"Use zone_mode 'process' without CPU limits, or run on a machine with cgroup v1 "
                           f"controllers mounted under /sys/fs/cgroup.")
    return root


def cgroups_available() -> tuple[bool, str]:
    """Whether CPU limits, CPU accounting and the freezer can be used here, and why not."""
    if os.geteuid() != 0:
        return False, "cgroups need root (run the harness as root)"
    for controller in ("cpu", "cpuacct", "freezer"):
        root = controller_root(controller)
        if root is None:
            return False, f"no cgroup v1 '{controller}' hierarchy is mounted"
        probe = root / f"rslprobe{os.getpid()}"
        try:
            probe.mkdir(exist_ok=True)
            probe.rmdir()
        except OSError as exc:
            return False, f"cannot create a group in {root} ({exc.strerror})"
    return True, "cgroup v1 cpu, cpuacct and freezer are writable"


def utilization(usage_delta_s: float, wall_delta_s: float, cpu_limit: float) -> float:
    """CPU used as a fraction of the limit: 0.7 = 70% of the replica's CPU limit."""
    if cpu_limit <= 0:
        raise ValueError(f"cpu_limit must be positive, got {cpu_limit}")
    if wall_delta_s <= 0:
        return 0.0
    return max(0.0, usage_delta_s) / (wall_delta_s * cpu_limit)


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise HarnessError(f"could not write {value!r} to {path} ({exc.strerror}).") from None


def _pids(group: Path) -> list[int]:
    try:
        return [int(line) for line in (group / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def member_pids(parent: str = "rsl") -> list[int]:
    """Every process in our CPU groups under `parent`: processes we placed there, so we may stop them."""
    root = controller_root("cpu")
    if root is None or not (root / parent).is_dir():
        return []
    return sorted({pid for group in (root / parent).rglob("*") if group.is_dir() for pid in _pids(group)})


def _remove(group: Path, timeout_s: float) -> bool:
    """rmdir a group once it is empty (waiting up to `timeout_s` for exits); True when gone."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                return False
        time.sleep(0.05)


class CpuGroup:
    """A CPU limit (cfs quota) plus CPU accounting for the processes in it."""

    def __init__(self, name: str, parent: str = "rsl") -> None:
        self.name = name
        self.parent = parent
        self.cpu_path = _require_root("cpu") / parent / name
        self.cpuacct_path = _require_root("cpuacct") / parent / name

    def _paths(self) -> list[Path]:
        """The distinct directories of this group (one when cpu and cpuacct are co-mounted)."""
        return [self.cpu_path] if self.cpu_path == self.cpuacct_path else [self.cpu_path, self.cpuacct_path]

    def create(self, cpu_limit: float) -> None:
        """Create (or update) the group with a limit of `cpu_limit` CPUs."""
        if cpu_limit <= 0:
            raise ValueError(f"cpu_limit must be positive, got {cpu_limit}")
        for path in self._paths():
            path.mkdir(parents=True, exist_ok=True)
        _write(self.cpu_path / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        _write(self.cpu_path / "cpu.cfs_quota_us", str(max(1000, round(cpu_limit * CFS_PERIOD_US))))

    def add(self, pid: int) -> None:
        """Move a process (all its threads; later children follow) into the group."""
        for path in self._paths():
            _write(path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return _pids(self.cpu_path)

    def usage_seconds(self) -> float:
        """CPU seconds used by the group's processes since it was created."""
        try:
            return int((self.cpuacct_path / "cpuacct.usage").read_text()) / 1e9
        except FileNotFoundError:
            raise HarnessError(f"cgroup {self.cpuacct_path} does not exist; call create() first.") from None

    def exists(self) -> bool:
        return self.cpu_path.is_dir()

    def throttling(self) -> dict[str, int]:
        """The kernel's CFS counters (cpu.stat): periods run, periods throttled, time throttled (ns)."""
        try:
            lines = (self.cpu_path / "cpu.stat").read_text().splitlines()
        except FileNotFoundError:
            raise HarnessError(f"cgroup {self.cpu_path} does not exist; call create() first.") from None
        return {key: int(value) for key, value in (line.split() for line in lines if len(line.split()) == 2)}

    def destroy(self, timeout_s: float = 2.0) -> bool:
        """Remove the group once its processes have exited; True when gone (also if missing)."""
        return all([_remove(path, timeout_s) for path in self._paths()])


class Freezer:
    """A v1 freezer group: stop every process in it at once (and resume them)."""

    def __init__(self, name: str, parent: str = "rsl") -> None:
        self.name = name
        self.parent = parent
        self.path = _require_root("freezer") / parent / name

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def add(self, pid: int) -> None:
        _write(self.path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return _pids(self.path)

    def state(self) -> str:
        """THAWED, FREEZING or FROZEN."""
        return (self.path / "freezer.state").read_text().strip()

    def freeze(self, timeout_s: float = 5.0) -> None:
        """Freeze every process in the group; wait until the kernel reports FROZEN."""
        self._set("FROZEN", timeout_s)

    def thaw(self, timeout_s: float = 5.0) -> None:
        self._set("THAWED", timeout_s)

    def _set(self, wanted: str, timeout_s: float) -> None:
        _write(self.path / "freezer.state", wanted)
        deadline = time.monotonic() + timeout_s
        while (state := self.state()) != wanted:
            if time.monotonic() >= deadline:
                raise HarnessError(f"cgroup {self.path} stayed {state} instead of {wanted} for {timeout_s} s "
                                   f"(a process in uninterruptible sleep can delay freezing).")
            time.sleep(0.02)

    def exists(self) -> bool:
        return self.path.is_dir()

    def destroy(self, timeout_s: float = 2.0) -> bool:
        """Thaw (never leave processes frozen), then remove once empty; True when gone."""
        if not self.path.is_dir():
            return True
        if self.state() != "THAWED":
            self.thaw()
        return _remove(self.path, timeout_s)


def cleanup(parent: str = "rsl", timeout_s: float = 1.0) -> list[Path]:
    """Remove every group under `parent` (leftovers of a crash); return those still busy.

    Frozen groups are thawed first. Processes are never moved or killed: a group
    that still holds a live process stays, and is returned so the caller can say so.
    """
    left: list[Path] = []
    seen: set[Path] = set()
    for controller in ("cpu", "cpuacct", "freezer"):
        root = controller_root(controller)
        if root is None or (root / parent) in seen or not (root / parent).is_dir():
            continue
        top = root / parent
        seen.add(top)
        # deepest first, so children go before their parents
        groups = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for group in groups + [top]:
            state_file = group / "freezer.state"
            if state_file.is_file() and state_file.read_text().strip() != "THAWED":
                _write(state_file, "THAWED")
            if not _remove(group, timeout_s if _pids(group) else 0.0):
                left.append(group)
    return left
