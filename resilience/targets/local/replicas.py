"""The replica set: the API replicas that run, each in one HAProxy slot, and the load balancer's view of them.

It carries out what the replica controller decides (start a replica in a zone,
stop one, put a ready one into HAProxy) and what faults do to replicas (lost with
a zone). Every change happens under the stack lock; reads (`views`,
`count_ready`) change nothing.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from ...config import StackSettings
from ...errors import HarnessError
from . import cgroups, haproxy
from .events import EventLog
from .executor import Executor
from .probes import http_get
from .services import StackLayout

CGROUP_PARENT = "rsl-api"  # PREFIX + "api": LocalTarget cleans the same parent after a crash
# What HAProxy's runtime API raises: its socket unreachable or timing out, a refused command, an answer
# that does not parse. Taking a replica out of HAProxy is then best effort: the process is stopped anyway,
# and a dead server fails its health checks.
ADMIN_ERRORS = (OSError, HarnessError, ValueError, LookupError)


@dataclass
class Replica:
    """One API replica in one HAProxy slot."""

    slot: int
    zone: str
    executor: Executor
    cpu: Any | None  # cgroups.CpuGroup
    enabled: bool = False  # in HAProxy
    lost: bool = False  # its zone was lost: frozen, not counted
    stopping: bool = False
    last_usage: float | None = None

    def view(self) -> ReplicaView:
        return ReplicaView(self.slot, self.zone, self.enabled, self.lost, self.stopping, self.executor.alive())


@dataclass(frozen=True)
class ReplicaView:
    """What the controller's decisions need to know about a replica (a snapshot, no process)."""

    slot: int
    zone: str
    enabled: bool = True
    lost: bool = False
    stopping: bool = False
    alive: bool = True

    @property
    def live(self) -> bool:
        """Counts towards the desired replicas: not lost with a zone, not being stopped."""
        return not self.lost and not self.stopping

    @property
    def serving(self) -> bool:
        """A replica counts as ready only while its process lives and we put it in the load balancer.

        HAProxy keeps a killed server UP until its health checks fail (about a second),
        and a replacement reuses the slot: its state alone would count a dead replica.
        """
        return self.enabled and not self.lost and self.alive


class ReplicaSet:
    def __init__(self, settings: StackSettings, layout: StackLayout, events: EventLog, lock: threading.RLock,
                 cgroups_ok: bool) -> None:
        self.s = settings
        self.layout = layout
        self.events = events
        self.lock = lock
        self.cgroups_ok = cgroups_ok
        self.replicas: dict[int, Replica] = {}  # by slot, in the order they were started
        self.admin: haproxy.HAProxyAdmin | None = None

    # -- reads -----------------------------------------------------------------------------
    def views(self) -> list[ReplicaView]:
        with self.lock:
            return [r.view() for r in self.replicas.values()]

    def get(self, slot: int) -> Replica | None:
        return self.replicas.get(slot)

    def name(self, r: Replica | ReplicaView) -> str:
        return self.layout.topology.api(r.slot, r.zone).name

    def count_ready(self) -> int:
        """Replicas in the load balancer, UP there, and alive."""
        if not self.admin:
            return 0
        up = set(self.admin.up_slots())
        return sum(1 for v in self.views() if v.slot in up and v.serving)

    def server_states(self) -> dict[int, haproxy.ServerState]:
        if not self.admin:
            return {}
        try:
            return self.admin.server_states()
        except ADMIN_ERRORS:
            return {}

    # -- changes ------------------------------------------------------------------------------
    def start(self, slot: int, zone: str) -> Replica:
        place = self.layout.api(slot, zone)
        ex = Executor(self.layout.api_spec(slot, zone),
                      lambda: http_get(f"http://{place.address}/health/ready", 0.5)[0] == 200)
        with self.lock:
            ex.start()
            cpu = None
            if self.cgroups_ok and ex.pid:
                cpu = cgroups.CpuGroup(place.name, parent=CGROUP_PARENT)
                cpu.create(self.s.replica_cpu_limit)
                cpu.add(ex.pid)
            replica = Replica(slot, zone, ex, cpu)
            self.replicas[slot] = replica
            return replica

    def remove_dead(self, r: Replica) -> None:
        """Forget a replica whose process exited: out of HAProxy, its cgroup gone, its slot free."""
        with self.lock:
            if self.admin and r.enabled:
                try:
                    self.admin.disable_server(r.slot)
                except ADMIN_ERRORS:
                    pass
            if r.cpu is not None:
                r.cpu.destroy()
            self.replicas.pop(r.slot, None)

    def stop(self, replica: Replica, graceful: bool = True) -> None:
        """Out of the load balancer (draining its sessions for up to 3 s when graceful), then stop it."""
        with self.lock:
            replica.stopping = True
            if self.admin and replica.enabled:
                try:
                    self.admin.drain_server(replica.slot) if graceful else self.admin.disable_server(replica.slot)
                except ADMIN_ERRORS:
                    pass
        if graceful:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and self.admin:
                try:
                    state = self.admin.server_states().get(replica.slot)
                    if state is None or state.current_sessions == 0:
                        break
                except ADMIN_ERRORS:
                    break
                time.sleep(0.05)
        if self.admin:
            try:
                self.admin.disable_server(replica.slot)
            except ADMIN_ERRORS:
                pass
        replica.executor.signal(signal.SIGCONT)
        replica.executor.stop(timeout=3)
        with self.lock:
            if replica.cpu is not None:
                replica.cpu.destroy()
            self.replicas.pop(replica.slot, None)

    def enable_ready(self) -> None:
        """Put every replica that answers ready into HAProxy (once): the readiness check runs outside the lock."""
        with self.lock:
            waiting = [r for r in self.replicas.values() if not r.enabled and not r.lost and not r.stopping]
        for r in waiting:
            if not self.admin or not r.executor.ready():
                continue
            with self.lock:
                if r.enabled or r.lost or r.stopping or self.replicas.get(r.slot) is not r:
                    continue
                place = self.layout.api(r.slot, r.zone)
                self.admin.enable_server(r.slot, place.host, place.port)
                r.enabled = True
            self.events("controller", "ready", replica=place.name, zone=r.zone,
                        startup_s=round(time.monotonic() - (r.executor.started_at or 0), 3))

    def sample_cpu(self, r: Replica) -> float | None:
        """CPU seconds used since the last sample (None: no cgroup, or no earlier sample)."""
        if r.cpu is None:
            return None
        try:
            usage = r.cpu.usage_seconds()
        except OSError:
            return None
        with self.lock:
            last, r.last_usage = r.last_usage, usage
        return None if last is None else usage - last

    def signal_all(self, sig: int) -> list[str]:
        with self.lock:
            for r in self.replicas.values():
                r.executor.signal(sig)
            return [self.name(r) for r in self.replicas.values()]

    def lose_zone(self, zone: str) -> list[str]:
        """Freeze the zone's replicas and stop counting them (as a cluster loses a zone's pods)."""
        with self.lock:
            lost = [r for r in self.replicas.values() if r.zone == zone and not r.lost]
            for r in lost:
                r.executor.signal(signal.SIGSTOP)
                r.lost = True
            return [self.name(r) for r in lost]

    def drop_lost(self, zone: str) -> None:
        """The zone returns: its frozen replicas are gone (power loss); the controller has replaced them."""
        with self.lock:
            for r in [r for r in self.replicas.values() if r.zone == zone and r.lost]:
                r.executor.signal(signal.SIGKILL)
                r.executor.signal(signal.SIGCONT)
                self.stop(r, graceful=False)

    def executors(self) -> list[Executor]:
        with self.lock:
            return [r.executor for r in self.replicas.values()]

    def forget_all(self) -> None:
        """After everything was stopped: remove every replica's cgroup."""
        with self.lock:
            for r in self.replicas.values():
                if r.cpu is not None:
                    r.cpu.destroy()
            self.replicas.clear()
