"""The supervisor's parts a local fault module works with: its supervisor-side phases get a `StackParts`.

Its own module (not the injector's) so the fault modules can name it without importing
the injector that imports them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ...config import StackSettings
from .topology import REDIS, ComponentId, Topology

if TYPE_CHECKING:
    from .monitor import HealthMonitor
    from .probes import Probes
    from .processes import ProcessTable
    from .replicas import ReplicaSet


@dataclass
class StackParts:
    """The supervisor's parts a fault module works with (its supervisor-side phases get this)."""

    settings: StackSettings
    topology: Topology
    zones: Any  # ZoneNetwork (netns) or ProcessZones
    zone_mode: str  # netns | process
    probes: "Probes"
    processes: "ProcessTable"
    replicas: "ReplicaSet"
    monitor: "HealthMonitor"
    events: Callable[..., None]  # EventLog
    lock: threading.RLock
    lost_zones: set[str] = field(default_factory=set)  # zones lost now (the replica controller avoids them)
    state: dict[str, Any] = field(default_factory=dict)  # what a fault module keeps between its phases, by fault

    def lost(self) -> frozenset[str]:
        with self.lock:
            return frozenset(self.lost_zones)

    def event(self, fault: str, phase: str, **detail: Any) -> None:
        """A `fault` event in events.jsonl: the registry's name as op, the phase in the detail."""
        self.events("fault", fault, phase=phase, **detail)

    def leader(self) -> ComponentId | None:
        """The PostgreSQL primary now (a fresh look)."""
        leader = self.monitor.refresh().observation.pg_leader
        return self.topology.find(leader) if leader else None

    def restart(self, c: ComponentId) -> None:
        """Restart a service; a Redis server as a replica of the master the Sentinels named at the last look.

        The last look, not a new one: a zone that just returned has services starting and
        answering slowly, and a look then takes seconds that would delay the restarts after it.
        """
        master = None
        if c.kind == REDIS:
            obs = self.monitor.current.observation
            master = obs.addresses[obs.redis_master_id] if obs.redis_master_id else None
        self.processes.restart(c, master)
