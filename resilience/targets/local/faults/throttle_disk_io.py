"""throttle_disk_io on the local stack: the PostgreSQL primary's processes (the postmaster and every backend, WAL
writer, checkpointer; backends forked later follow the postmaster) are moved into a blkio group whose rules cap their
writes to the disk holding the data directory at `write_kib_s` (and `write_iops`): a slow disk, as a saturated
volume or a throttled EBS gp2 burst bucket looks. Commits wait on their WAL fsync.

Why cgroup v1 blkio.throttle.write_bps_device / write_iops_device and not v2 io.max: see cgroup_limits.py (the same
rule). v1 throttles writes the throttled process submits itself (O_DIRECT, and the writeback an fsync starts: what a
commit waits for); buffered writes flushed later by the kernel's flusher are not charged to the group. Refused at plan
time where it cannot work here: no blkio throttling mounted, or a data directory on no block device (overlay, tmpfs).

Seen when a write probe started inside the group (fsync'd 64 KiB writes, about half a second's worth at the limit, in
the member's directory on the same disk) measures at most THROUGHPUT_SLACK times `write_kib_s`; the baseline is the
same probe outside the group just before. Undone by moving the processes back to the root group and removing it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ....errors import HarnessError, UserError
from ....fault_registry import FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, InjectContext
from ..cgroup_limits import LimitGroup, spawn_in, throttle_support
from ..processes import children
from . import FAULTS, LocalFault, Phase

if TYPE_CHECKING:
    from ..nemesis import LocalNemesis
    from ..stack_parts import StackParts

DISK_EFFECT_DEADLINE_S = 30.0
THROUGHPUT_SLACK = 1.5
CHUNK = 64 * 1024
MIN_PROBE, MAX_PROBE = 4 * CHUNK, 8 * 1024 * 1024
PROBE_TIMEOUT_S = 30.0
PROBE_FILE = "rsl-io-probe"
PROBE_CODE = ("import json, os, sys, time\npath, size = sys.argv[1], int(sys.argv[2])\n"
              "fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)\n"
              f"chunk = b'\\x01' * {CHUNK}\nt0 = time.perf_counter()\nfor _ in range(0, size, len(chunk)):\n"
              "    os.write(fd, chunk)\n    os.fdatasync(fd)\n"
              "spent = time.perf_counter() - t0\nos.close(fd)\nos.unlink(path)\n"
              "print(json.dumps({'bytes': size, 'seconds': round(spent, 4)}), flush=True)\n")


def probe_bytes(write_kib_s: float) -> int:
    """About half a second's worth of writes at the limit, whole chunks, within [256 KiB, 8 MiB]."""
    size = min(MAX_PROBE, max(MIN_PROBE, int(write_kib_s * 1024 * 0.5)))
    return size - size % CHUNK


def kib_s(result: dict[str, Any]) -> float | None:
    seconds = float(result.get("seconds") or 0)
    return round(int(result.get("bytes", 0)) / 1024 / seconds, 1) if seconds > 0 else None


def throttled(write_kib_s: float, measured: float | None) -> bool:
    """Whether the probe's measured write rate shows the limit (one not measured shows nothing)."""
    return measured is not None and measured <= THROUGHPUT_SLACK * write_kib_s


@FAULTS.register
class ThrottleDiskIo(LocalFault):
    fault = "throttle_disk_io"
    steps = ("unthrottle_disk_io",)

    def refusal(self, nemesis: LocalNemesis, call: FaultCall) -> str | None:
        stack = getattr(getattr(nemesis.platform, "settings", None), "stack", None)  # the local platform's settings
        path = Path(stack.state_path) if stack is not None else Path("/")  # where the data directories live
        while not path.exists() and path != path.parent:
            path = path.parent  # before `up`: the nearest existing directory is on the same filesystem
        device, seen = throttle_support(path)
        return None if device is not None else f"throttle_disk_io cannot work here: {seen}"

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        iops = f" and {call.get('write_iops')} write IOPS" if call.get("write_iops") else ""
        return [f"throttle_disk_io: move the PostgreSQL primary's processes into a blkio group capping their writes "
                f"to the data directory's disk at {call.get('write_kib_s'):g} KiB/s{iops} (cgroup v1 "
                f"blkio.throttle.*); measure fsync'd writes in the group before and during",
                "rollback unthrottle_disk_io: move them back out, remove the group"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        context.record(RollbackStep("unthrottle_disk_io", {}, "lift the disk throttle of the PostgreSQL primary"))
        result = nemesis.ask(self.fault, "inject", write_kib_s=call.get("write_kib_s"),
                             write_iops=call.get("write_iops"))
        return RollbackStep("unthrottle_disk_io", {"member": result.get("member"), "device": result.get("device"),
                                                   "baseline": result.get("baseline", {})},
                            f"lift the disk throttle of {result.get('member')}")

    def undo(self, nemesis: LocalNemesis, step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo")

    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        limit = float(call.get("write_kib_s"))
        baseline = dict(step.arguments.get("baseline") or {})

        def look() -> dict[str, Any] | None:
            during = nemesis.ask(self.fault, "measure", timeout=60)
            measured = kib_s(during.get("probe") or {})
            facts = {"member": step.arguments.get("member"), "device": step.arguments.get("device"),
                     "mechanism": "cgroup v1 blkio.throttle", "baseline_kib_s": kib_s(baseline),
                     "during_kib_s": measured, "during": during}
            return facts if throttled(limit, measured) else None
        return Effect(f"fsync'd writes of the primary's group at most {THROUGHPUT_SLACK:g}x {limit:g} KiB/s "
                      f"(a write probe in the group, measured)", DISK_EFFECT_DEADLINE_S, look)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.throttle, "measure": self.measure, "undo": self.unthrottle}

    def throttle(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        leader = parts.leader()
        if leader is None:
            raise HarnessError("throttle_disk_io: no PostgreSQL primary to throttle (none is elected now)")
        home = parts.settings.state_path / leader.name
        device, seen = throttle_support(home / "data")
        if device is None:
            raise UserError(f"throttle_disk_io cannot work here: {seen}")
        postmaster = parts.processes.postmaster_pid(leader)
        if postmaster is None:
            raise HarnessError(f"throttle_disk_io: {leader.name} has no running postmaster")
        size = probe_bytes(float(request["write_kib_s"]))
        baseline = self.probe(parts, home, size, None)
        group = LimitGroup("blkio", leader.name)
        group.create()
        with parts.lock:
            parts.state[self.fault] = {"member": leader.name, "device": device, "size": size}
        group.set("blkio.throttle.write_bps_device", f"{device} {int(float(request['write_kib_s']) * 1024)}")
        if int(request.get("write_iops") or 0) > 0:
            group.set("blkio.throttle.write_iops_device", f"{device} {int(request['write_iops'])}")
        for pid in [postmaster, *children(postmaster)]:
            try:
                group.add(pid)
            except HarnessError:
                pass  # a backend that exited meanwhile
        parts.event(self.fault, "inject", member=leader.name, device=device, device_seen=seen, baseline=baseline,
                    write_kib_s=request["write_kib_s"], write_iops=request.get("write_iops"),
                    processes=len(group.pids()), mechanism="cgroup v1 blkio.throttle")
        return {"member": leader.name, "device": device, "baseline": baseline}

    def probe(self, parts: StackParts, home: Path, size: int, group: LimitGroup | None) -> dict[str, Any]:
        """fsync'd writes of `size` bytes in `home`, from a process inside `group` (None: outside any)."""
        proc = spawn_in([group] if group is not None else [],
                        [sys.executable, "-c", PROBE_CODE, str(home / PROBE_FILE), str(size)])
        try:
            out, err = proc.communicate(timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise HarnessError(f"throttle_disk_io: the write probe in {home} took over {PROBE_TIMEOUT_S:g} s") from None
        if proc.returncode != 0:
            raise HarnessError(f"throttle_disk_io: the write probe failed: {err.decode(errors='replace')[-300:]}")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return result

    def measure(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        with parts.lock:
            info = dict(parts.state.get(self.fault) or {})
        if not info:
            return {}
        group = LimitGroup("blkio", info["member"])
        return {"probe": self.probe(parts, parts.settings.state_path / info["member"], int(info["size"]), group),
                "processes": len(group.pids())}

    def unthrottle(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        with parts.lock:
            info = dict(parts.state.pop(self.fault, None) or {})
        moved: list[int] = []
        if info:
            moved = LimitGroup("blkio", info["member"]).release()
            (parts.settings.state_path / info["member"] / PROBE_FILE).unlink(missing_ok=True)
        parts.event(self.fault, "undo", member=info.get("member"), processes_moved=len(moved))
        return {"member": info.get("member"), "processes_moved": len(moved)}

    def heal_here(self, parts: StackParts) -> None:
        with parts.lock:
            throttling = self.fault in parts.state
        if throttling:
            self.unthrottle(parts, {})

