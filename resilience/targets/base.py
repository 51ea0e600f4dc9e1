"""The interface every target implements: deploy, observe, and the fault capabilities.

Experiments name capabilities (kill replicas, lose a zone, fail over the
database, stop the cache, read the replica count), never a target's internals.
Every fault returns the `RollbackStep` that undoes it; the harness writes it to
the run directory *before* calling the fault, so a crash can still be undone.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Component:
    """One running part of the stack, as `resilience status` shows it."""

    name: str  # e.g. "api-3", "postgres-1", "redis-1", "sentinel-2", "etcd-1", "haproxy"
    kind: str  # api | postgres | redis | sentinel | etcd | haproxy | controller
    role: str  # primary | replica | master | member | leader | lb | ...
    zone: str | None
    pid: int | None
    address: str  # host:port
    healthy: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StackStatus:
    """What `resilience status --json` prints (schema documented in the README)."""

    target: str
    running: bool
    url: str | None
    zone_mode: str | None  # "netns" | "process" (local); None elsewhere
    components: list[Component] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.running and bool(self.components) and all(c.healthy for c in self.components)

    def zones(self) -> set[str]:
        return {c.zone for c in self.components if c.zone}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "target": self.target,
            "running": self.running,
            "healthy": self.healthy,
            "url": self.url,
            "zone_mode": self.zone_mode,
            "components": [c.to_json() for c in self.components],
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RollbackStep:
    """How to undo one fault: a capability name and its arguments (JSON-able)."""

    capability: str  # e.g. "restore_zone"
    arguments: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PlatformEvent:
    """Something the platform did on its own: a failover, a scale decision, a replica ready."""

    monotonic: float  # absolute CLOCK_MONOTONIC seconds
    source: str  # "controller" | "platform"
    op: str  # "scale", "replace", "ready", "failover", ...
    detail: dict[str, Any] = field(default_factory=dict)


class Target(abc.ABC):
    """A place where the platform runs. Subclasses: local, kubernetes, aws."""

    name: str = "abstract"

    # -- lifecycle ---------------------------------------------------------
    @abc.abstractmethod
    def up(self) -> StackStatus:
        """Deploy the platform and wait until it is ready; report an existing stack instead of a second one."""

    @abc.abstractmethod
    def down(self) -> None:
        """Remove everything this target created."""

    @abc.abstractmethod
    def status(self) -> StackStatus:
        """Every component, its role, zone and health."""

    @abc.abstractmethod
    def url(self) -> str:
        """The platform's base URL (the load balancer)."""

    # -- observation -------------------------------------------------------
    @abc.abstractmethod
    def ready_replicas(self) -> int:
        """API replicas currently ready to serve (in the load balancer)."""

    @abc.abstractmethod
    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        """Platform events at or after an absolute monotonic time."""

    # -- faults (each returns how to undo it) -------------------------------
    @abc.abstractmethod
    def kill_replicas(self, count: int | None = None, percent: float | None = None,
                      seed: int | None = None) -> RollbackStep:
        """SIGKILL API replicas chosen at random; the platform must replace them."""

    @abc.abstractmethod
    def lose_zone(self, zone: str | None = None) -> RollbackStep:
        """Lose every component of one zone at once (default: the zone holding the primaries)."""

    @abc.abstractmethod
    def fail_over_database(self, mode: str = "kill") -> RollbackStep:
        """Kill ("kill") or cut off ("partition") the PostgreSQL primary."""

    @abc.abstractmethod
    def stop_cache(self, mode: str = "failover") -> RollbackStep:
        """Kill the Redis master ("failover") or stop all of Redis ("outage")."""

    @abc.abstractmethod
    def rollback(self, step: RollbackStep) -> None:
        """Undo a fault; must be safe to call twice."""

    def primary_zone(self) -> str | None:
        """The zone that holds the database primary, if the target knows."""
        return None
