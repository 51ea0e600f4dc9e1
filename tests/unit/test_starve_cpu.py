"""starve_cpu's supervisor side with fake CPU groups: every live replica's limit is cut to the share asked,
the kernel's throttling counters show the effect, and the undo gives every replica its limit back."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from resilience.config import StackSettings
from resilience.errors import HarnessError
from resilience.targets.local.faults.starve_cpu import StarveCpu
from resilience.targets.local.stack_parts import StackParts
from resilience.targets.local.topology import Topology

SETTINGS = StackSettings()


@dataclass
class FakeCpu:
    limit: float = SETTINGS.replica_cpu_limit
    throttled: int = 5
    limits: list[float] = field(default_factory=list)

    def create(self, cpu_limit: float) -> None:
        self.limit = cpu_limit
        self.limits.append(cpu_limit)

    def throttling(self) -> dict[str, int]:
        return {"nr_periods": 100, "nr_throttled": self.throttled, "throttled_time": self.throttled * 1000}

    def exists(self) -> bool:
        return True


@dataclass
class FakeReplica:
    slot: int
    zone: str
    cpu: FakeCpu | None
    lost: bool = False
    stopping: bool = False


class FakeReplicas:
    def __init__(self, replicas: list[FakeReplica]) -> None:
        self.replicas = {r.slot: r for r in replicas}

    def get(self, slot: int) -> FakeReplica | None:
        return self.replicas.get(slot)

    def name(self, r: FakeReplica) -> str:
        return f"api-{r.slot}"


def parts_with(replicas: list[FakeReplica]) -> tuple[StackParts, list[tuple[str, str, dict[str, Any]]]]:
    seen: list[tuple[str, str, dict[str, Any]]] = []
    untyped: Any = None
    parts = StackParts(SETTINGS, Topology(SETTINGS.zones), zones=untyped, zone_mode="netns", probes=untyped,
                       processes=untyped, replicas=untyped, monitor=untyped,
                       events=lambda source, op, **detail: seen.append((source, op, detail)), lock=threading.RLock())
    stub: Any = FakeReplicas(replicas)
    parts.replicas = stub
    return parts, seen


def test_every_live_replica_keeps_the_share_asked_and_gets_its_limit_back() -> None:
    live, lost = FakeReplica(1, "zone-a", FakeCpu()), FakeReplica(2, "zone-b", FakeCpu(), lost=True)
    parts, seen = parts_with([live, lost])
    fault = StarveCpu()
    result = fault.starve(parts, {"percent": 10})
    assert result["replicas"] == ["api-1"] and live.cpu is not None and lost.cpu is not None
    assert live.cpu.limit == pytest.approx(SETTINGS.replica_cpu_limit * 0.1) and lost.cpu.limits == []
    assert fault.measure(parts, {})["throttled"]["api-1"]["nr_throttled"] == 0  # nothing yet: not seen
    live.cpu.throttled += 40  # the kernel throttled it 40 periods
    assert fault.measure(parts, {})["throttled"]["api-1"]["nr_throttled"] == 40
    undone = fault.restore(parts, {})
    assert live.cpu.limit == SETTINGS.replica_cpu_limit and undone["throttled"]["api-1"]["nr_throttled"] == 40
    assert [(op, d["phase"]) for _, op, d in seen] == [("starve_cpu", "inject"), ("starve_cpu", "undo")]
    assert seen[0][2]["mechanism"] == "cgroup v1 cpu.cfs_quota_us"


def test_a_heal_restores_only_after_a_starvation_and_no_replica_is_an_error() -> None:
    replica = FakeReplica(1, "zone-a", FakeCpu())
    parts, seen = parts_with([replica])
    StarveCpu().heal_here(parts)
    assert seen == [] and replica.cpu is not None and replica.cpu.limits == []
    with pytest.raises(HarnessError, match="no live API replica"):
        StarveCpu().starve(parts_with([FakeReplica(1, "zone-a", None)])[0], {"percent": 10})
