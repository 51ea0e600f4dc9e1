"""The fault injector: every fault the local stack takes, and its undoing.

Kill or freeze API replicas, lose a zone (power loss: its processes frozen and, in
netns mode, its network cut at once) and bring it back, kill or freeze the
PostgreSQL primary and restart it, stop the cache and restart it, hold replication
back, and `heal` (undo everything this supervisor knows of). The injector owns
what only faults change (the lost zones, the held WAL senders); processes and
replicas change through their owners, all under the stack lock. A fault on the whole
stack (which member is the primary, which Redis server the master) takes a fresh
`Observation`; a restart reads the last one.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from typing import Any, Sequence, TypeVar

from ...config import StackSettings
from ...errors import HarnessError, UserError
from .events import EventLog
from .monitor import HealthMonitor
from .probes import Probes
from .processes import ProcessTable, children, cmdline
from .replicas import ReplicaSet
from .topology import ETCD, POSTGRES, REDIS, ComponentId, Topology

T = TypeVar("T")
ETCD_REJOIN_WAIT_S = 10.0


def choose_victims(live: Sequence[T], count: int | None, percent: float | None, seed: int | None) -> list[T]:
    """Which replicas a kill takes: `count`, else `percent` of the live ones (at least one), at random (`seed`)."""
    n = count if count is not None else max(1, round(len(live) * (percent or 0) / 100.0))
    n = max(0, min(n, len(live)))
    return random.Random(seed).sample(list(live), n)


class FaultInjector:
    def __init__(self, settings: StackSettings, topology: Topology, zones: Any, zone_mode: str, probes: Probes,
                 processes: ProcessTable, replicas: ReplicaSet, monitor: HealthMonitor, events: EventLog,
                 lock: threading.RLock) -> None:
        self.s = settings
        self.topology = topology
        self.probes = probes
        self.zones = zones  # ZoneNetwork (netns) or ProcessZones
        self.zone_mode = zone_mode
        self.processes = processes
        self.replicas = replicas
        self.monitor = monitor
        self.events = events
        self.lock = lock
        self.lost_zones: set[str] = set()
        self.held_walsenders: list[int] = []

    def lost(self) -> frozenset[str]:
        with self.lock:
            return frozenset(self.lost_zones)

    # -- API replicas ----------------------------------------------------------------------
    def kill_replicas(self, count: int | None, percent: float | None, seed: int | None) -> dict[str, Any]:
        with self.lock:
            live = [r for r in self.replicas.replicas.values() if not r.lost and not r.stopping and r.executor.alive()]
            chosen = choose_victims(live, count, percent, seed)
            names = [self.replicas.name(r) for r in chosen]
            for r in chosen:
                r.executor.signal(signal.SIGKILL)
            self.events("fault", "kill_replicas", replicas=names)
        return {"killed": names}

    def pause_replicas(self, pause: bool) -> dict[str, Any]:
        """SIGSTOP / SIGCONT every API replica (an outage of exactly known length)."""
        names = self.replicas.signal_all(signal.SIGSTOP if pause else signal.SIGCONT)
        self.events("fault", "pause_replicas" if pause else "resume_replicas", replicas=names)
        return {"replicas": names}

    # -- zones ---------------------------------------------------------------------------------
    def _zone_services(self, zone: str) -> list[ComponentId]:
        return [c for c in self.topology.in_zone(zone) if c in self.processes.services]

    def lose_zone(self, zone: str | None) -> dict[str, Any]:
        zone = zone or self.monitor.primary_zone(self.monitor.refresh().observation)
        if zone not in self.s.zones:
            raise UserError(f"unknown zone {zone!r}; zones are {list(self.s.zones)}")
        with self.lock:
            services = self._zone_services(zone)
            for c in services:
                self.processes.freeze(c)
            replicas = self.replicas.lose_zone(zone)
            if self.zone_mode == "netns":
                self.zones.cut(zone)
            self.lost_zones.add(zone)
        names = [c.name for c in services]
        self.events("fault", "lose_zone", zone=zone, services=names, replicas=replicas,
                    network_cut=self.zone_mode == "netns")
        return {"zone": zone, "services": names}

    def restore_zone(self, zone: str) -> dict[str, Any]:
        """The zone comes back: its old processes are gone (like a power loss); its services restart and rejoin."""
        with self.lock:
            if zone not in self.lost_zones:
                return {"zone": zone, "restored": False}
            services = self._zone_services(zone)
            for c in services:
                self.processes.kill_frozen(c)
            self.replicas.drop_lost(zone)
            for c in services:
                self.processes.executor(c).kill()
            if self.zone_mode == "netns":
                self.zones.restore(zone)
            self.lost_zones.discard(zone)
        for c in sorted(services, key=Topology.restart_order):
            if c.kind == POSTGRES:
                self._await_etcd(zone)
            self._restart(c)
        names = [c.name for c in services]
        self.events("fault", "restore_zone", zone=zone, services=names)
        return {"zone": zone, "restored": True, "services": names}

    def _await_etcd(self, zone: str) -> None:
        """Before Patroni starts in a returning zone: until the zone's etcd member answers healthy (bounded).

        Patroni exits at start-up when it cannot reach etcd, and a returning etcd member can
        hold the cluster in an election for a moment (seen: a Patroni started then exited,
        and the heal failed). Healthy means it has rejoined a cluster with a leader.
        """
        members = [c for c in self.topology.in_zone(zone) if c.kind == ETCD]
        deadline = time.monotonic() + ETCD_REJOIN_WAIT_S
        while members and not all(self.probes.etcd_healthy(m) for m in members) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _restart(self, c: ComponentId) -> None:
        """Restart a service; a Redis server as a replica of the master the Sentinels named at the last look.

        The last look, not a new one: a zone that just returned has services starting and
        answering slowly, and a look then takes seconds that would delay the restarts after it.
        """
        master = None
        if c.kind == REDIS:
            obs = self.monitor.current.observation
            master = obs.addresses[obs.redis_master_id] if obs.redis_master_id else None
        self.processes.restart(c, master)

    # -- the database ------------------------------------------------------------------------
    def _leader(self) -> ComponentId | None:
        leader = self.monitor.refresh().observation.pg_leader
        return self.topology.find(leader) if leader else None

    def kill_db_primary(self, mode: str) -> dict[str, Any]:
        leader = self._leader()
        if not leader:
            raise HarnessError("no PostgreSQL primary found (Patroni /cluster shows no running leader)")
        if mode == "kill":
            self.processes.kill(leader, reap=False)
        elif mode == "freeze":
            self.processes.freeze(leader)
        else:
            raise UserError(f"unknown database fault mode {mode!r}: use kill or freeze")
        self.events("fault", "fail_over_database", member=leader.name, mode=mode)
        return {"member": leader.name, "mode": mode}

    def restore_db(self, member: str) -> dict[str, Any]:
        c = self.topology.named(member)
        if c in self.processes.paused:
            # a frozen (partitioned) primary: it lost its leader lock; kill it and let it rejoin
            self.processes.kill_frozen(c)
        self.processes.reap_killed(c)
        self.processes.restart(c)
        self.events("fault", "restore_db", member=member)
        return {"member": member}

    def pause_replication(self, pause: bool) -> dict[str, Any]:
        """Hold the primary's WAL senders (SIGSTOP): WAL committed meanwhile stays on the primary alone.

        Stopping the sender, not the replica's receiver: a stopped receiver still gets
        the WAL into its socket buffer, and would apply it after resuming.
        """
        if not pause:
            with self.lock:
                for pid in self.held_walsenders:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
                released, self.held_walsenders = self.held_walsenders, []
            self.events("fault", "resume_replication", pids=released)
            return {"pids": released}
        leader = self._leader()
        postmaster = self.processes.postmaster_pid(leader) if leader else None
        senders = [c for c in children(postmaster) if "walsender" in cmdline(c)] if postmaster else []
        if not senders:
            raise HarnessError(f"no WAL sender under the primary {leader}'s postmaster: is the replica streaming?")
        with self.lock:
            for pid in senders:
                os.kill(pid, signal.SIGSTOP)
            self.held_walsenders += senders
        self.events("fault", "pause_replication", member=str(leader), pids=senders)
        return {"member": str(leader), "pids": senders}

    # -- the cache ---------------------------------------------------------------------------
    def stop_cache(self, mode: str) -> dict[str, Any]:
        if mode == "failover":
            master = self.monitor.refresh().observation.redis_master
            if not master:
                raise HarnessError("no Redis master known to Sentinel")
            targets = [self.topology.named(master)]
        elif mode == "outage":
            targets = list(self.topology.members(REDIS))
        else:
            raise UserError(f"unknown cache fault mode {mode!r}: use failover or outage")
        for c in targets:
            self.processes.kill(c)
        names = [c.name for c in targets]
        self.events("fault", "stop_cache", mode=mode, members=names)
        return {"members": names, "mode": mode}

    def restore_cache(self, members: list[str]) -> dict[str, Any]:
        for name in members:
            c = self.topology.named(name)
            if c in self.processes.stopped or not self.processes.alive(c):
                self._restart(c)
        self.events("fault", "restore_cache", members=members)
        return {"members": members}

    # -- everything ----------------------------------------------------------------------------
    def heal(self) -> dict[str, Any]:
        """Undo every fault this supervisor knows of (a crashed run's rollback of last resort)."""
        restored = []
        for zone in sorted(self.lost()):
            self.restore_zone(zone)
            restored.append(zone)
        self.pause_replicas(False)
        with self.lock:
            paused = sorted(self.processes.paused, key=lambda c: c.name)
        for c in paused:
            if c.kind == POSTGRES:
                self.restore_db(c.name)
            else:
                self.processes.thaw(c)
        with self.lock:
            stopped = sorted(self.processes.stopped, key=Topology.restart_order)
        for c in stopped:
            if c.kind == POSTGRES:
                self.restore_db(c.name)
            elif not self.processes.alive(c):
                self._restart(c)
        with self.lock:
            self.processes.stopped.clear()
        try:
            self.pause_replication(False)
        except HarnessError:
            pass
        self.events("fault", "heal", zones=restored)
        return {"zones": restored}
