"""The health and failover monitor: one look at the whole stack, and what it means.

`observe()` asks every question once (each member's `/patroni`, one `/cluster`,
Redis `INFO`, each Sentinel's master, etcd `/health`, HAProxy's servers) and
returns an `Observation`. Everything that wants to know the state of the stack
reads one: the health shown by `status` (`assess`, pure, with `healing.py`'s
checks), failover detection, the heal wait, the primary's zone, the Redis master
a restarted server must follow. `refresh()` takes a new one and records it:
health, roles, problems, and a `failover` event when the PostgreSQL leader or the
Redis master changed since the last look.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ...config import StackSettings
from .events import EventLog
from .healing import agreed_master, postgres_problems, redis_problems
from .probes import Probes
from .processes import ProcessTable
from .replicas import ReplicaSet
from .services import StackLayout
from .topology import API, ETCD, HAPROXY, POSTGRES, REDIS, SENTINEL, ComponentId

LEADER_ROLES = ("leader", "master", "primary")


@dataclass(frozen=True)
class ReplicaHealth:
    name: str
    lost: bool
    up: bool  # UP in HAProxy, in the load balancer by us, and alive


@dataclass(frozen=True)
class Observation:
    """What every service said at one moment (`at`, CLOCK_MONOTONIC); None where it did not answer."""

    at: float
    running: Mapping[ComponentId, bool]  # per started service: alive and not frozen by a fault
    paused: frozenset[ComponentId] = frozenset()
    patroni: Mapping[ComponentId, dict[str, Any] | None] = field(default_factory=dict)
    cluster: dict[str, Any] | None = None  # Patroni's /cluster, from the primary if one says so
    cluster_from: ComponentId | None = None  # the member that answered it
    redis: Mapping[ComponentId, dict[str, Any] | None] = field(default_factory=dict)
    sentinels: Mapping[ComponentId, tuple[bool, str | None]] = field(default_factory=dict)  # (answered, master)
    etcd: Mapping[ComponentId, bool] = field(default_factory=dict)
    addresses: Mapping[ComponentId, str] = field(default_factory=dict)  # each Redis server's host:port
    replicas: tuple[ReplicaHealth, ...] = ()

    @property
    def pg_leader(self) -> str | None:
        """The running leader in Patroni's /cluster."""
        for m in (self.cluster or {}).get("members", []):
            if m.get("role") in LEADER_ROLES and m.get("state") == "running":
                return str(m.get("name"))
        return None

    @property
    def sync_standbys(self) -> set[str]:
        """The synchronous standbys as the primary itself reads them (none when it did not answer)."""
        leader = _reported_leader(self.patroni)
        return sync_standbys(self.cluster) if leader is not None and leader == self.cluster_from else set()

    @property
    def redis_master_address(self) -> str | None:
        """The master a majority of the Sentinels that answered name.

        Not the first answer: a Sentinel restarted with its zone still holds the master it
        knew before the outage for a moment, and trusting it recorded a failover and a
        failback that never happened.
        """
        return agreed_master({c.name: master for c, (answered, master) in self.sentinels.items() if answered})

    @property
    def redis_master_id(self) -> ComponentId | None:
        """Which of our Redis servers that master is."""
        address = self.redis_master_address
        return next((c for c, a in self.addresses.items() if address and a == address), None)

    @property
    def redis_master(self) -> str | None:
        found = self.redis_master_id
        return found.name if found else None


def sync_standbys(cluster: dict[str, Any] | None) -> set[str]:
    """Members Patroni's /sync key names as synchronous standby (from a `/cluster` answer)."""
    return {str(m.get("name")) for m in (cluster or {}).get("members", []) if m.get("role") == "sync_standby"}


@dataclass(frozen=True)
class Health:
    """An observation judged: per component healthy or not, its role, and why it is not whole."""

    observation: Observation
    healthy: Mapping[str, bool]
    roles: Mapping[str, str]
    problems: Mapping[str, str]


def assess(obs: Observation, synchronous: bool) -> Health:
    """Each component's health from what the services report: running is not enough, it must have rejoined."""
    healthy: dict[str, bool] = {}
    roles: dict[str, str] = {}
    for c, ok in obs.running.items():
        if c.kind == POSTGRES:
            data = obs.patroni.get(c) or {}
            ok = data.get("state") == "running"
            role = data.get("role", "unknown")
            roles[c.name] = "primary" if role == "master" else role
        elif c.kind == REDIS:
            info = obs.redis.get(c)
            ok = info is not None
            roles[c.name] = (info or {}).get("role", "unknown")
        elif c.kind == SENTINEL:
            ok = obs.sentinels.get(c, (False, None))[1] is not None
            roles[c.name] = "sentinel"
        elif c.kind == ETCD:
            ok = ok and obs.etcd.get(c, False)
            roles[c.name] = "member"
        elif c.kind == HAPROXY:
            roles[c.name] = "lb"
        healthy[c.name] = ok
    problems = {n: "not running or not answering" for n, ok in healthy.items() if not ok}
    problems.update(postgres_problems({c.name: d for c, d in obs.patroni.items()}, synchronous, obs.sync_standbys))
    problems.update(redis_problems({c.name: i for c, i in obs.redis.items()},
                                   {c.name: a for c, a in obs.addresses.items()},
                                   {c.name: master for c, (_, master) in obs.sentinels.items()}))
    problems.update({c.name: "frozen by a fault" for c in obs.paused if c in obs.running})
    for r in obs.replicas:
        healthy[r.name] = r.up
        if not r.up:
            problems[r.name] = "lost with its zone" if r.lost else "not ready in the load balancer"
    return Health(obs, {n: ok and n not in problems for n, ok in healthy.items()}, roles, problems)


def _reported_leader(patroni: Mapping[ComponentId, dict[str, Any] | None]) -> ComponentId | None:
    """The member whose own /patroni says it is the primary."""
    return next((c for c, d in patroni.items() if d and d.get("role") in ("master", "primary")), None)


class HealthMonitor:
    def __init__(self, settings: StackSettings, layout: StackLayout, probes: Probes, processes: ProcessTable,
                 replicas: ReplicaSet, events: EventLog, lock: threading.RLock) -> None:
        self.s = settings
        self.layout = layout
        self.probes = probes
        self.processes = processes
        self.replicas = replicas
        self.events = events
        self.lock = lock
        self.current = Health(Observation(0.0, {}), {}, {}, {})
        self.pg_leader: str | None = None  # the last leader seen (kept while none is seen)
        self.redis_master: str | None = None
        self.extra_rows: Callable[[], list[dict[str, Any]]] = list  # status rows of parts it does not watch (monitoring)

    def observe(self) -> Observation:
        """Ask every service once; changes nothing."""
        at = time.monotonic()
        with self.lock:
            present = self.processes.present()
            paused = frozenset(self.processes.paused)
        running = {c: self.processes.running(c) for c in present}
        by_kind = {kind: [c for c in present if c.kind == kind] for kind in (POSTGRES, REDIS, SENTINEL, ETCD)}
        patroni = {c: self.probes.patroni(c) if running[c] else None for c in by_kind[POSTGRES]}
        leader = _reported_leader(patroni)
        candidates = sorted((c for c in self.layout.topology.members(POSTGRES) if c not in paused),
                            key=lambda c: (c != leader, c.index))
        cluster, cluster_from = next(((answer, c) for c in candidates if (answer := self.probes.cluster(c))),
                                     (None, None))
        states = self.replicas.server_states()
        replicas = tuple(ReplicaHealth(self.replicas.name(v), v.lost, bool((st := states.get(v.slot)) and st.up
                                                                           and v.serving))
                         for v in sorted(self.replicas.views(), key=lambda v: v.slot))
        return Observation(
            at, running, paused, patroni, cluster, cluster_from,
            redis={c: self.probes.redis_info(c) if running[c] else None for c in by_kind[REDIS]},
            sentinels={c: self.probes.sentinel_master(c) if running[c] else (False, None) for c in by_kind[SENTINEL]},
            etcd={c: running[c] and self.probes.etcd_healthy(c) for c in by_kind[ETCD]},
            addresses={c: self.layout.place(c).address for c in by_kind[REDIS]},
            replicas=replicas)

    def refresh(self) -> Health:
        """A new look, judged and recorded (with failover events); an older look finishing late is not recorded."""
        health = assess(self.observe(), self.s.synchronous_replication)
        obs = health.observation
        with self.lock:
            if obs.at < self.current.observation.at:
                return health
            self.current = health
            leader, master = obs.pg_leader, obs.redis_master
            if leader and leader != self.pg_leader:
                if self.pg_leader is not None:
                    self.events("platform", "failover", component="postgres", old=self.pg_leader, new=leader)
                self.pg_leader = leader
            if master and master != self.redis_master:
                if self.redis_master is not None:
                    self.events("platform", "failover", component="redis", old=self.redis_master, new=master)
                self.redis_master = master
        return health

    def whole(self) -> bool:
        return not self.refresh().problems

    def primary_zone(self, obs: Observation) -> str:
        """The zone of the PostgreSQL primary (as seen in `obs`, else the last one seen, else member 1's)."""
        leader = obs.pg_leader or self.pg_leader or self.layout.topology.members(POSTGRES)[0].name
        found = self.layout.topology.find(leader)
        return found.zone if found and found.zone else self.s.zones[0]

    def rows(self) -> list[dict[str, Any]]:
        """The status rows: every service, then every API replica (by slot)."""
        health = self.current
        out = []
        for c in self.processes.present():
            place = self.layout.place(c)
            out.append({"name": c.name, "kind": c.kind, "role": health.roles.get(c.name, "member"),
                        "zone": c.zone, "pid": self.processes.pid(c), "address": place.address,
                        "healthy": health.healthy.get(c.name, False)})
        with self.lock:
            replicas = sorted(self.replicas.replicas.values(), key=lambda r: r.slot)
        for r in replicas:
            place = self.layout.api(r.slot, r.zone)
            out.append({"name": place.name, "kind": API, "role": "lost" if r.lost else "replica",
                        "zone": r.zone, "pid": r.executor.pid if r.executor.alive() else None,
                        "address": place.address, "healthy": health.healthy.get(place.name, False)})
        return out + self.extra_rows()
