"""The stack's components, typed, from one description of what runs where.

`MEMBERS` is the only place that says how many of each service the local stack
runs; member i of a kind lives in zone i (zones in settings order, exactly three).
Everything else asks a `Topology` for its members instead of spelling names out,
and a name that comes from outside (a control request, Patroni's `/cluster`) is
looked up, never parsed. API replicas come and go: each is named by its HAProxy
slot and placed in a zone by the replica controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ...errors import HarnessError

ETCD = "etcd"
POSTGRES = "postgres"
REDIS = "redis"
SENTINEL = "sentinel"
HAPROXY = "haproxy"
API = "api"
NETPROXY = "netproxy"  # the TCP proxy in the API <-> database path (netproxy.py): one, in no zone

# kind -> members, in the order the services (re)start: coordination first (etcd, one per zone:
# quorum 2 of 3), then the cache and its Sentinels (one per zone), then the database
# (Patroni: member 1 bootstraps and leads, member 2 clones from it). HAProxy is one, in no zone.
MEMBERS: dict[str, int] = {ETCD: 3, REDIS: 2, SENTINEL: 3, POSTGRES: 2}

# `down` stops in waves: traffic first (each with its grace in seconds: the API drains), then the
# data services, then coordination (a short grace only: their data is deleted anyway)
STOP_WAVES: tuple[tuple[tuple[str, ...], float], ...] = (
    ((API, HAPROXY), 3.0), ((POSTGRES, REDIS, NETPROXY), 0.5), ((SENTINEL, ETCD), 0.5))


@dataclass(frozen=True)
class ComponentId:
    """One component: its kind, its member number (an API replica's HAProxy slot; 0 for HAProxy) and zone."""

    kind: str
    index: int
    zone: str | None  # None: the root namespace (HAProxy)

    @property
    def name(self) -> str:
        """What the status, the events and the control requests call it: "postgres-1", "api-4", "haproxy"."""
        return self.kind if self.index == 0 else f"{self.kind}-{self.index}"

    def __str__(self) -> str:
        return self.name


class Topology:
    """The fixed members of one stack (every service but the API replicas), built from `MEMBERS` and the zones."""

    def __init__(self, zones: Sequence[str]) -> None:
        self.zones = tuple(zones)
        if len(self.zones) < max(MEMBERS.values()):
            raise HarnessError(f"the local stack needs {max(MEMBERS.values())} zones, got {list(self.zones)}")
        self.services: tuple[ComponentId, ...] = tuple(
            ComponentId(kind, i, self.zones[i - 1]) for kind, count in MEMBERS.items() for i in range(1, count + 1)
        ) + (ComponentId(HAPROXY, 0, None), ComponentId(NETPROXY, 0, None))
        self._by_name = {c.name: c for c in self.services}

    def members(self, kind: str) -> tuple[ComponentId, ...]:
        return tuple(c for c in self.services if c.kind == kind)

    def find(self, name: str) -> ComponentId | None:
        return self._by_name.get(name)

    def named(self, name: str) -> ComponentId:
        found = self._by_name.get(name)
        if found is None:
            raise HarnessError(f"no component named {name!r}; the stack has {', '.join(self._by_name)}")
        return found

    def in_zone(self, zone: str) -> tuple[ComponentId, ...]:
        return tuple(c for c in self.services if c.zone == zone)

    @staticmethod
    def api(slot: int, zone: str) -> ComponentId:
        return ComponentId(API, slot, zone)

    @staticmethod
    def restart_order(c: ComponentId) -> tuple[int, int]:
        """Sort key: the order of `MEMBERS` (etcd, Redis, Sentinel, PostgreSQL), then member number."""
        kinds = list(MEMBERS)
        return (kinds.index(c.kind) if c.kind in kinds else len(kinds), c.index)
