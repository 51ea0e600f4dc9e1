"""pressure_memory on the local stack: every live API replica is put in a memory group limited to `limit_mb` (the
Kubernetes manifests' 512Mi per replica), and a hog started inside that group fills it to `percent` of the limit.
The replica then works at its limit: page cache is reclaimed, charges fail (memory.failcnt), and what it allocates
beyond the headroom brings the OOM killer, as in a container at its memory limit next to a leak or a sidecar.

Why a hog and a limit, not a lower limit alone: a limit below the replica's own use only kills it (no swap here),
which kill_replicas already does; StressChaos memory and AWS FIS pod-memory-stress are also a hog in the container.
Why cgroup v1 memory.limit_in_bytes and not v2 memory.max: see cgroup_limits.py. The hog is our own small Python
process (`bytes` of its size, every page written), tracked by PID; stress-ng --vm would do the same.

Seen when every pressured replica's group uses at least `percent` - SEEN_MARGIN of its limit with its hog alive
(memory.usage_in_bytes; failcnt and the hog's RSS are in the evidence). Undone by stopping each hog (by PID) and
moving the replica back to the root memory group (no limit, as before). Replicas started during the fault have none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from ....errors import HarnessError, UserError
from ....fault_registry import FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, InjectContext
from ..cgroup_limits import LimitGroup, spawn_in
from ..cgroups import controller_root
from . import FAULTS, LocalFault, Phase

if TYPE_CHECKING:
    from ..nemesis import LocalNemesis
    from ..stack_parts import StackParts

MEMORY_EFFECT_DEADLINE_S = 30.0
SEEN_MARGIN = 5.0  # percentage points: usage this far below `percent` still shows the pressure
MIB = 1024 * 1024
HOG_MARK = "rsl-memhog"
HOG_CODE = ("import sys, time\nblock = b'\\x01' * int(sys.argv[1])  # every page written: resident, charged\n"
            "print('ready', flush=True)\nwhile True:\n    time.sleep(3600)\n")


def pressured(percent: float, groups: dict[str, dict[str, Any]]) -> bool:
    """Whether every pressured replica's group is at `percent` (less SEEN_MARGIN) of its limit with its hog alive."""
    return bool(groups) and all(
        g.get("hog_alive") and g.get("limit_bytes") and
        100.0 * g.get("usage_bytes", 0) / g["limit_bytes"] >= percent - SEEN_MARGIN for g in groups.values())


def hog_bytes(limit_bytes: int, percent: float, replica_bytes: int) -> int:
    """What the hog takes so the group uses `percent` of its limit, beside the replica's own use."""
    return max(0, int(limit_bytes * percent / 100.0) - replica_bytes)


def _rss_bytes(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _is_hog(pid: int) -> bool:
    try:
        return HOG_MARK.encode() in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False


@FAULTS.register
class PressureMemory(LocalFault):
    fault = "pressure_memory"
    steps = ("release_memory",)

    def __init__(self) -> None:
        self.hogs: dict[int, subprocess.Popen[bytes]] = {}  # in the supervisor: to stop and reap them

    def refusal(self, nemesis: LocalNemesis, call: FaultCall) -> str | None:
        root = controller_root("memory")
        if root is None or not (root / "memory.limit_in_bytes").exists():
            return "pressure_memory needs a cgroup v1 memory hierarchy (none is mounted here)"
        return None

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        return [f"pressure_memory: put every live API replica in a memory group limited to {call.get('limit_mb')} MiB "
                f"(cgroup v1 memory.limit_in_bytes) and fill it to {call.get('percent'):g}% with a hog in the group; "
                f"watch memory.usage_in_bytes reach it",
                "rollback release_memory: stop each hog (by PID), move the replicas back out of their memory groups"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        context.record(RollbackStep("release_memory", {}, "stop the memory hogs, lift the replicas' memory limits"))
        result = nemesis.ask(self.fault, "inject", percent=call.get("percent"), limit_mb=call.get("limit_mb"))
        return RollbackStep("release_memory", {"replicas": result.get("replicas", []), "hogs": result.get("hogs", [])},
                            f"stop the memory hogs of {', '.join(result.get('replicas', [])) or 'the API replicas'}")

    def undo(self, nemesis: LocalNemesis, step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo")

    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        percent = float(call.get("percent"))

        def look() -> dict[str, Any] | None:
            groups = nemesis.ask(self.fault, "measure").get("groups", {})
            return {"groups": groups, "mechanism": "cgroup v1 memory + hog"} if pressured(percent, groups) else None
        return Effect(f"every API replica's memory group at {percent:g}% of its limit (memory.usage_in_bytes), "
                      f"its hog alive", MEMORY_EFFECT_DEADLINE_S, look)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.fill, "measure": self.measure, "undo": self.release}

    def fill(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        if os.geteuid() != 0:
            raise UserError("pressure_memory needs root (cgroup v1 memory groups)")
        limit = int(request["limit_mb"]) * MIB
        percent = float(request["percent"])
        pressed: dict[str, dict[str, Any]] = {}
        with parts.lock:
            targets = [(parts.replicas.name(r), r.cpu, r.cpu.pids() if r.cpu is not None else [r.executor.pid])
                       for r in parts.replicas.replicas.values() if not (r.lost or r.stopping) and r.executor.alive()]
            parts.state[self.fault] = pressed  # filled as we go: a failure half-way is still undone
        for name, cpu, pids in targets:
            group = LimitGroup("memory", name)
            group.create()
            try:
                group.set("memory.move_charge_at_immigrate", "1")  # the replica's pages come with it
            except HarnessError:
                pass  # kernels since 6.x refuse it: only what the replica allocates from now on is charged here
            group.set("memory.limit_in_bytes", str(limit))
            for pid in pids:
                if pid:
                    group.add(pid)
            own = group.read_int("memory.usage_in_bytes")
            size = hog_bytes(limit, percent, own)
            hog = spawn_in([group], [sys.executable, "-c", HOG_CODE, str(size), HOG_MARK])
            self.hogs[hog.pid] = hog
            pressed[name] = {"hog": hog.pid, "hog_bytes": size, "replica_bytes": own,
                             "failcnt": group.read_int("memory.failcnt")}
            if hog.stdout is None or hog.stdout.readline().strip() != b"ready":
                raise HarnessError(f"pressure_memory: the hog in {group.path} did not start "
                                   f"({hog.stderr.read().decode(errors='replace')[-300:] if hog.stderr else ''})")
            if cpu is not None:  # the replica's CPU group too: it shares the replica's CPU limit (as in a
                cpu.add(hog.pid)  # container), and `down` after a crashed supervisor stops it with the replicas
        if not pressed:
            raise HarnessError("pressure_memory: no live API replica to put under memory pressure")
        parts.event(self.fault, "inject", replicas=sorted(pressed), limit_bytes=limit, percent=percent,
                    hogs={n: p["hog"] for n, p in pressed.items()}, mechanism="cgroup v1 memory.limit_in_bytes + hog")
        return {"replicas": sorted(pressed), "hogs": [p["hog"] for p in pressed.values()]}

    def groups(self, parts: StackParts) -> dict[str, dict[str, Any]]:
        """Per pressured replica: its group's usage, limit, failed charges since the injection, its hog's RSS."""
        with parts.lock:
            pressed = dict(parts.state.get(self.fault) or {})
        out: dict[str, dict[str, Any]] = {}
        for name, info in pressed.items():
            group = LimitGroup("memory", name)
            if not group.exists():
                continue
            out[name] = {"usage_bytes": group.read_int("memory.usage_in_bytes"),
                         "limit_bytes": group.read_int("memory.limit_in_bytes"),
                         "failcnt": group.read_int("memory.failcnt") - int(info.get("failcnt", 0)),
                         "hog_alive": info["hog"] in group.pids(), "hog_rss_bytes": _rss_bytes(info["hog"])}
        return out

    def measure(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        return {"groups": self.groups(parts)}

    def release(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        seen = self.groups(parts)
        with parts.lock:
            pressed = dict(parts.state.pop(self.fault, None) or {})
        stopped = []
        for name, info in pressed.items():
            pid = int(info["hog"])
            if _is_hog(pid):
                os.kill(pid, signal.SIGKILL)
                stopped.append(pid)
            if (hog := self.hogs.pop(pid, None)) is not None:
                hog.wait(timeout=10)
            LimitGroup("memory", name).release()
        parts.event(self.fault, "undo", replicas=sorted(pressed), hogs_stopped=stopped, groups=seen)
        return {"replicas": sorted(pressed), "hogs_stopped": stopped, "groups": seen}

    def heal_here(self, parts: StackParts) -> None:
        with parts.lock:
            pressed = self.fault in parts.state  # the supervisor keeps it across a crashed harness
        if pressed:
            self.release(parts, {})
