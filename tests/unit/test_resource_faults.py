"""limit_bandwidth, pressure_memory and throttle_disk_io without a stack: what each module asks the supervisor,
what its measurement must show to count as in effect (judged on hand-built observations), the plan-time refusal
of a disk that cannot be throttled; and, as root with cgroup v1 memory, the memory hog's group for real."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from resilience.config import Settings, StackSettings
from resilience.fault_registry import fault_call
from resilience.targets.fault_module import InjectContext
from resilience.targets.local import LocalPlatform
from resilience.targets.local.cgroup_limits import block_device
from resilience.targets.local.cgroups import controller_root
from resilience.targets.local.faults import FAULTS
from resilience.targets.local.faults.limit_bandwidth import limited, throughput_kbit_s, transfer_bytes
from resilience.targets.local.faults.pressure_memory import PressureMemory, hog_bytes, pressured
from resilience.targets.local.faults.throttle_disk_io import kib_s, probe_bytes, throttled
from resilience.targets.local.nemesis import LocalNemesis
from resilience.targets.local.stack_parts import StackParts
from resilience.targets.local.topology import Topology


class ScriptedSupervisor(LocalPlatform):
    """Answers the fault requests from a script: `inject` and `measure` replies given."""

    def __init__(self, injected: dict[str, Any], during: dict[str, Any], settings: Settings | None = None) -> None:
        super().__init__(settings or Settings())
        self.injected, self.during = injected, during
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def request(self, op: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
        phase = f"{args.pop('fault')}/{args.pop('phase')}" if op == "fault" else op
        self.requests.append((phase, args))
        if phase.endswith("/inject"):
            return {"ok": True, **self.injected}
        return {"ok": True, **(self.during if phase.endswith("/measure") else {})}


def _look(fault: str, arguments: dict[str, Any], injected: dict[str, Any],
          during: dict[str, Any]) -> tuple[dict[str, Any] | None, ScriptedSupervisor]:
    platform = ScriptedSupervisor(injected, during)
    nemesis = LocalNemesis(platform)
    call = fault_call(fault, arguments)
    module = FAULTS.load().modules[fault]
    step = module.inject(nemesis, call, InjectContext())
    effect = module.effect(nemesis, call, step)
    assert effect is not None
    return effect.look(), platform


# -- limit_bandwidth ---------------------------------------------------------------------------------
def test_the_transfer_is_a_second_at_the_limit_within_bounds() -> None:
    assert transfer_bytes(1000) == 125_000 and transfer_bytes(10) == 16 * 1024
    assert transfer_bytes(10_000_000) == 4 * 1024 * 1024
    assert throughput_kbit_s(125_000, 1.05, 0.05) == 1000.0 and throughput_kbit_s(125_000, 0.01, 0.02) is None
    assert limited(1000, 1400) and not limited(1000, 40_000) and not limited(1000, None)


def test_bandwidth_is_in_effect_only_when_the_transfer_is_limited() -> None:
    baseline = {"samples": 4, "answered": 4, "transfer": {"bytes": 62_500, "kbit_s": 90_000.0}}
    slow = {"samples": 4, "answered": 4, "transfer": {"bytes": 62_500, "big_s": 1.1, "small_s": 0.1, "kbit_s": 500.0}}
    facts, platform = _look("limit_bandwidth", {"kbit_s": 500}, {"baseline": baseline, "mechanism": "proxy"}, slow)
    assert facts is not None and facts["throughput_kbit_s"] == 500.0 and facts["mechanism"] == "proxy"
    assert platform.requests[0] == ("limit_bandwidth/inject", {"path": "api-database", "kbit_s": 500.0})
    fast = {**slow, "transfer": {"bytes": 62_500, "kbit_s": 90_000.0}}  # the limit did not apply
    assert _look("limit_bandwidth", {"kbit_s": 500}, {"baseline": baseline}, fast)[0] is None
    assert _look("limit_bandwidth", {"kbit_s": 500}, {"baseline": baseline}, {"samples": 4})[0] is None


def test_the_proxy_is_asked_for_the_rate() -> None:
    module: Any = FAULTS.load().modules["limit_bandwidth"]
    assert module.toxics({"kbit_s": 250.0}) == {"rate_kbps": 250.0}
    assert any("proxy" in line for line in module.plan(None, fault_call("limit_bandwidth", {"kbit_s": 250})))


# -- pressure_memory ----------------------------------------------------------------------------------
MIB = 1024 * 1024


def test_the_hog_fills_the_rest_of_the_share() -> None:
    assert hog_bytes(512 * MIB, 90, 60 * MIB) == int(512 * MIB * 0.9) - 60 * MIB
    assert hog_bytes(128 * MIB, 50, 100 * MIB) == 0  # the replica alone is over the share: no hog


@pytest.mark.parametrize("groups,seen", [
    ({"api-1": {"usage_bytes": 460 * MIB, "limit_bytes": 512 * MIB, "hog_alive": True}}, True),
    ({"api-1": {"usage_bytes": 460 * MIB, "limit_bytes": 512 * MIB, "hog_alive": True},
      "api-2": {"usage_bytes": 100 * MIB, "limit_bytes": 512 * MIB, "hog_alive": True}}, False),  # one not filled
    ({"api-1": {"usage_bytes": 460 * MIB, "limit_bytes": 512 * MIB, "hog_alive": False}}, False),  # OOM-killed hog
    ({}, False),  # no replica under pressure
])
def test_memory_pressure_is_seen_only_at_the_share_with_the_hog_alive(groups: dict[str, Any], seen: bool) -> None:
    assert pressured(90, groups) is seen
    facts, platform = _look("pressure_memory", {"percent": 90}, {"replicas": sorted(groups), "hogs": [7]},
                            {"groups": groups})
    assert (facts is not None) is seen
    assert platform.requests[0] == ("pressure_memory/inject", {"percent": 90.0, "limit_mb": 512})


def test_no_memory_hierarchy_is_refused_at_plan_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import resilience.targets.local.faults.pressure_memory as module
    monkeypatch.setattr(module, "controller_root", lambda controller: None)
    why = PressureMemory().refusal(LocalNemesis(ScriptedSupervisor({}, {})), fault_call("pressure_memory", {}))
    assert why is not None and "memory" in why


@dataclass
class FakeExecutor:
    pid: int

    def alive(self) -> bool:
        return True


@dataclass
class FakeReplica:
    slot: int
    executor: FakeExecutor
    cpu: None = None
    lost: bool = False
    stopping: bool = False


class FakeReplicas:
    def __init__(self, replicas: list[FakeReplica]) -> None:
        self.replicas = {r.slot: r for r in replicas}

    def name(self, r: FakeReplica) -> str:
        return f"gray3test-api-{r.slot}"


@pytest.mark.skipif(os.geteuid() != 0 or controller_root("memory") is None, reason="needs root and cgroup v1 memory")
def test_the_hog_fills_a_real_memory_group_and_the_undo_stops_it() -> None:
    replica = subprocess.Popen(["sleep", "60"])
    try:
        untyped: Any = None
        settings = StackSettings()
        parts = StackParts(settings, Topology(settings.zones), zones=untyped, zone_mode="netns", probes=untyped,
                           processes=untyped, replicas=untyped, monitor=untyped,
                           events=lambda source, op, **detail: None, lock=threading.RLock())
        stub: Any = FakeReplicas([FakeReplica(1, FakeExecutor(replica.pid))])
        parts.replicas = stub
        fault = PressureMemory()
        result = fault.fill(parts, {"percent": 80, "limit_mb": 64})
        groups = fault.measure(parts, {})["groups"]
        assert pressured(80, groups), groups
        assert groups["gray3test-api-1"]["hog_rss_bytes"] > 40 * MIB
        undone = fault.release(parts, {})
        assert undone["hogs_stopped"] == result["hogs"] and not (controller_root("memory") / "rsl" / "gray3test-api-1").exists()  # type: ignore[operator]
        assert replica.poll() is None  # the replica itself is untouched
    finally:
        replica.kill()
        replica.wait()


# -- throttle_disk_io --------------------------------------------------------------------------------
def test_the_probe_is_half_a_second_at_the_limit_in_whole_chunks() -> None:
    assert probe_bytes(1024) == 512 * 1024 and probe_bytes(1) == 256 * 1024 and probe_bytes(1e7) == 8 * 1024 * 1024
    assert kib_s({"bytes": 512 * 1024, "seconds": 0.5}) == 1024.0 and kib_s({"bytes": 10, "seconds": 0}) is None
    assert throttled(1024, 1067.3) and not throttled(1024, 165_161.3) and not throttled(1024, None)


def test_disk_throttle_is_in_effect_only_when_the_probe_in_the_group_is_slow() -> None:
    injected = {"member": "postgres-1", "device": "254:0", "baseline": {"bytes": 524288, "seconds": 0.0031}}
    slow = {"probe": {"bytes": 524288, "seconds": 0.4797}, "processes": 9}
    facts, platform = _look("throttle_disk_io", {"write_kib_s": 1024}, injected, slow)
    assert facts is not None and facts["during_kib_s"] == 1067.3 and facts["baseline_kib_s"] == 165161.3
    assert platform.requests[0] == ("throttle_disk_io/inject", {"write_kib_s": 1024.0, "write_iops": 100})
    fast = {"probe": {"bytes": 524288, "seconds": 0.0031}}  # the rule did not apply
    assert _look("throttle_disk_io", {"write_kib_s": 1024}, injected, fast)[0] is None


def test_a_data_directory_on_no_block_device_is_refused_at_plan_time() -> None:
    assert block_device(Path("/proc"))[0] is None and "not a block device" in block_device(Path("/proc"))[1]
    settings = dataclasses.replace(Settings(), stack=dataclasses.replace(StackSettings(), state_dir="/proc/rsl-state"))
    module = FAULTS.load().modules["throttle_disk_io"]
    why = module.refusal(LocalNemesis(ScriptedSupervisor({}, {}, settings)), fault_call("throttle_disk_io", {}))
    assert why is not None and "throttle_disk_io cannot work here" in why
