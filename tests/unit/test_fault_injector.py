"""The local faults' supervisor side (targets/local/faults/), with the process table and the monitor replaced by fakes."""

from __future__ import annotations

import threading
from typing import Any

from resilience.config import load_settings
from resilience.targets.local.faults.stop_cache import StopCache
from resilience.targets.local.stack_parts import StackParts
from resilience.targets.local.monitor import Health, Observation
from resilience.targets.local.topology import REDIS, SENTINEL, ComponentId, Topology

SETTINGS = load_settings(None).stack
TOPOLOGY = Topology(SETTINGS.zones)
REDIS_1, REDIS_2 = TOPOLOGY.members(REDIS)


class FakeMonitor:
    def __init__(self, obs: Observation) -> None:
        self.current = Health(obs, {}, {}, {})
        self.looks = 0

    def refresh(self) -> Health:
        self.looks += 1
        return self.current


class FakeProcesses:
    def __init__(self, stopped: set[ComponentId]) -> None:
        self.stopped = stopped
        self.restarted: list[tuple[str, str | None]] = []

    def alive(self, c: ComponentId) -> bool:
        return c not in self.stopped

    def restart(self, c: ComponentId, redis_master: str | None = None) -> None:
        self.restarted.append((c.name, redis_master))
        self.stopped.discard(c)


def injector(obs: Observation, stopped: set[ComponentId]) -> tuple[StackParts, FakeMonitor, FakeProcesses]:
    monitor, processes = FakeMonitor(obs), FakeProcesses(stopped)
    untyped: Any = None  # the fakes stand in for the real parts
    parts = StackParts(SETTINGS, TOPOLOGY, zones=None, zone_mode="process", probes=untyped, processes=untyped,
                       replicas=untyped, monitor=untyped, events=lambda *a, **k: None, lock=threading.RLock())
    parts.processes, parts.monitor = processes, monitor  # type: ignore[assignment]
    return parts, monitor, processes


def test_a_restarted_redis_follows_the_master_of_the_last_look_without_a_new_one() -> None:
    """A new look while a zone comes back takes seconds (slow answers) and would delay every restart after it."""
    addresses = {REDIS_1: "10.0.0.1:6391", REDIS_2: "10.0.0.2:6392"}
    sentinels = {c: (True, "10.0.0.2:6392") for c in TOPOLOGY.members(SENTINEL)}
    obs = Observation(1.0, {}, addresses=addresses, sentinels=sentinels)
    parts, monitor, processes = injector(obs, {REDIS_1})
    assert StopCache().restore(parts, {"members": ["redis-1", "redis-2"]}) == {"members": ["redis-1", "redis-2"]}
    assert processes.restarted == [("redis-1", "10.0.0.2:6392")]  # redis-2 was not stopped: left alone
    assert monitor.looks == 0


def test_without_an_agreed_master_a_restarted_redis_starts_on_its_own() -> None:
    sentinels = {c: (True, None) for c in TOPOLOGY.members(SENTINEL)}
    obs = Observation(1.0, {}, addresses={REDIS_1: "10.0.0.1:6391"}, sentinels=sentinels)
    parts, _, processes = injector(obs, {REDIS_1})
    StopCache().restore(parts, {"members": ["redis-1"]})
    assert processes.restarted == [("redis-1", None)]
