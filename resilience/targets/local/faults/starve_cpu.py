"""starve_cpu on the local stack: every live API replica's CPU limit cut to `percent` of what it was (the CFS
quota of its cgroup, cgroups.py), like a noisy neighbour or a too-low Kubernetes limit. Undone by giving each
starved replica its limit back.

Why cgroup v1 `cpu.cfs_quota_us` and not v2 `cpu.max`: on this machine the v2 mount has no cpu
controller and the replicas' CPU groups are v1 (FIELD-NOTES.md); the two are the same CFS bandwidth
control (quota per period). Seen when the kernel throttled a starved replica (cpu.stat nr_throttled grew
since the injection). Replicas started during the fault (the autoscaler, a restart) get the normal
limit; the autoscaler still divides usage by the normal limit, so a starved replica reads as idle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ....errors import HarnessError, UserError
from ....fault_registry import FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, InjectContext
from . import FAULTS, LocalFault, Phase

if TYPE_CHECKING:
    from ..nemesis import LocalNemesis
    from ..stack_parts import StackParts

CPU_EFFECT_DEADLINE_S = 30.0


@FAULTS.register
class StarveCpu(LocalFault):
    fault = "starve_cpu"
    steps = ("restore_cpu",)

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        return [f"starve_cpu: cut every live API replica's CPU limit to {call.get('percent'):g}% of it (cgroup v1 "
                f"cpu.cfs_quota_us); watch the kernel throttle them (cpu.stat nr_throttled)",
                "rollback restore_cpu: give each starved replica its CPU limit back"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        context.record(RollbackStep("restore_cpu", {}, "give every API replica its CPU limit back"))
        result = nemesis.ask(self.fault, "inject", percent=call.get("percent"))
        return RollbackStep("restore_cpu", {"replicas": result.get("replicas", [])},
                            f"give {', '.join(result.get('replicas', [])) or 'every API replica'} its CPU limit back")

    def undo(self, nemesis: LocalNemesis, step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo")

    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        def look() -> dict[str, Any] | None:
            throttled = nemesis.ask(self.fault, "measure").get("throttled", {})
            return {"throttled": throttled} if any(t.get("nr_throttled", 0) > 0 for t in throttled.values()) else None
        return Effect("the starved API replicas throttled by the kernel (cpu.stat nr_throttled grew)",
                      CPU_EFFECT_DEADLINE_S, look)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.starve, "measure": self.measure, "undo": self.restore}

    def starve(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        if parts.zone_mode == "process" and not any(r.cpu for r in parts.replicas.replicas.values()):
            raise UserError("starve_cpu needs the replicas' CPU groups (cgroup v1 cpu, as root)")
        normal = parts.settings.replica_cpu_limit
        limit = normal * float(request["percent"]) / 100.0
        starved: dict[str, dict[str, Any]] = {}
        with parts.lock:
            for r in parts.replicas.replicas.values():
                if r.cpu is None or r.lost or r.stopping:
                    continue
                name = parts.replicas.name(r)
                starved[name] = {"slot": r.slot, "before": r.cpu.throttling()}
                r.cpu.create(limit)
            parts.state[self.fault] = starved
        if not starved:
            raise HarnessError("no live API replica with a CPU group to starve")
        parts.event(self.fault, "inject", replicas=sorted(starved), cpu_limit=round(limit, 4), normal_cpu_limit=normal,
                    mechanism="cgroup v1 cpu.cfs_quota_us")
        return {"replicas": sorted(starved), "cpu_limit": limit}

    def throttled(self, parts: StackParts) -> dict[str, dict[str, int]]:
        """Per starved replica still there: the cpu.stat counters' growth since the injection."""
        out: dict[str, dict[str, int]] = {}
        with parts.lock:
            starved = dict(parts.state.get(self.fault) or {})
            for name, info in starved.items():
                r = parts.replicas.get(info["slot"])
                if r is None or r.cpu is None or parts.replicas.name(r) != name:
                    continue
                now = r.cpu.throttling()
                out[name] = {k: now.get(k, 0) - info["before"].get(k, 0)
                             for k in ("nr_periods", "nr_throttled", "throttled_time")}
        return out

    def measure(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        return {"throttled": self.throttled(parts)}

    def restore(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        throttled = self.throttled(parts)
        with parts.lock:
            parts.state.pop(self.fault, None)
            restored = []
            for r in parts.replicas.replicas.values():  # every replica: a crashed run's starved ones too
                if r.cpu is not None and r.cpu.exists():
                    r.cpu.create(parts.settings.replica_cpu_limit)
                    restored.append(parts.replicas.name(r))
        parts.event(self.fault, "undo", replicas=restored, throttled=throttled)
        return {"replicas": restored, "throttled": throttled}

    def heal_here(self, parts: StackParts) -> None:
        with parts.lock:
            starved = self.fault in parts.state  # the supervisor keeps it across a crashed harness
        if starved:
            self.restore(parts, {})
