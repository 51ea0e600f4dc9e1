"""The replica controller: keeps the desired number of API replicas running, spread over the zones.

Like a ReplicaSet with a topology spread constraint (maxSkew 1) and an HPA: a dead
replica is replaced, a shortfall is filled, replicas move back into a zone that
returned, and the desired count follows CPU use (`autoscaler.py`, the Kubernetes
algorithm). What to do is decided by the pure functions below, on `ReplicaView`
snapshots (unit-tested without processes); `ReplicaController.tick()` applies
the decisions through the replica set, once per loop turn.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Collection, Sequence

from ...config import StackSettings
from ...errors import HarnessError
from . import cgroups
from .autoscaler import Autoscaler, HpaSpec
from .events import EventLog
from .replicas import Replica, ReplicaSet, ReplicaView


# -- decisions (pure) ---------------------------------------------------------------------------
def free_slot(used: Collection[int], max_replicas: int) -> int:
    """The lowest HAProxy slot no replica holds."""
    for slot in range(1, max_replicas + 1):
        if slot not in used:
            return slot
    raise HarnessError("no free HAProxy slot: max_replicas reached")


def zone_counts(zones: Sequence[str], replicas: Sequence[ReplicaView]) -> dict[str, int]:
    """Live replicas per zone."""
    return {z: sum(1 for r in replicas if r.zone == z and r.live) for z in zones}


def pick_zone(zones: Sequence[str], lost_zones: Collection[str], replicas: Sequence[ReplicaView]) -> str:
    """Where a new replica goes: the live zone with the fewest replicas (the first such in zone order).

    With every zone lost, any zone (the replica waits there until its zone returns).
    """
    live = [z for z in zones if z not in lost_zones] or list(zones)
    counts = {z: sum(1 for r in replicas if r.zone == z and not r.lost) for z in live}
    return min(live, key=lambda z: (counts[z], live.index(z)))


def to_replace(replicas: Sequence[ReplicaView]) -> list[ReplicaView]:
    """Replicas whose process exited on its own (not lost with a zone, not being stopped)."""
    return [r for r in replicas if r.live and not r.alive]


def shortfall(desired: int, replicas: Sequence[ReplicaView]) -> int:
    """How many replicas to create so that the live ones reach the desired count."""
    return max(0, desired - sum(1 for r in replicas if r.live))


def scale_in(desired: int, replicas: Sequence[ReplicaView]) -> list[int]:
    """Slots to stop when scaling in, in stop order: the newest slots (highest) first."""
    live = sorted((r for r in replicas if r.live), key=lambda r: r.slot)
    excess = len(live) - desired
    return [r.slot for r in reversed(live[len(live) - excess:])] if excess > 0 else []


@dataclass(frozen=True)
class Rebalance:
    """One step of moving replicas back after a zone returned: start one in `start_in`, or stop slot `stop`."""

    counts: dict[str, int]  # live replicas per zone when it was decided
    start_in: str | None = None
    stop: int | None = None


def rebalance(zones: Sequence[str], lost_zones: Collection[str], replicas: Sequence[ReplicaView],
              desired: int) -> Rebalance | None:
    """Topology spread (maxSkew 1) over the zones, surge first like a rolling update.

    Start one in the emptiest zone; once every live replica is in the load balancer
    and there is one too many, stop the newest in the fullest zone. Nothing while a
    zone is lost (there is nowhere to spread to) or a replica is not yet in HAProxy.
    """
    if lost_zones:
        return None
    live = [r for r in replicas if r.live]
    if any(not r.enabled for r in live):
        return None
    counts = zone_counts(zones, live)
    fullest = max(zones, key=lambda z: counts[z])
    emptiest = min(zones, key=lambda z: counts[z])
    if len(live) > desired:
        return Rebalance(counts, stop=max((r for r in live if r.zone == fullest), key=lambda r: r.slot).slot)
    if counts[fullest] - counts[emptiest] > 1:
        return Rebalance(counts, start_in=emptiest)
    return None


def mean_utilization(samples: Sequence[tuple[float, float]], cpu_limit: float) -> float | None:
    """Mean CPU use, in percent of the limit, over (CPU seconds used, wall seconds) samples (None: none)."""
    values = [100.0 * cgroups.utilization(used, wall, cpu_limit) for used, wall in samples]
    return sum(values) / len(values) if values else None


# -- the loop's step ------------------------------------------------------------------------------
class ReplicaController:
    def __init__(self, settings: StackSettings, replicas: ReplicaSet, events: EventLog, lock: threading.RLock,
                 lost_zones: Callable[[], Collection[str]]) -> None:
        self.s = settings
        self.replicas = replicas
        self.events = events
        self.lock = lock
        self.lost_zones = lost_zones
        self.autoscaler = Autoscaler(HpaSpec.from_settings(settings.autoscaling))
        self.desired = settings.replicas
        self.last_ready: tuple[int, int] | None = None
        self._last_cpu_t: float | None = None
        self._next_scale = 0.0

    def tick(self) -> None:
        """One turn: replace, scale, rebalance, put ready replicas into HAProxy, record the ready count."""
        self.replace_dead()
        self.autoscale()
        self.rebalance()
        self.replicas.enable_ready()
        ready = self.replicas.count_ready()
        if (ready, self.desired) != self.last_ready:
            self.last_ready = (ready, self.desired)
            self.events("controller", "replicas", ready=ready, desired=self.desired)

    def start_replica(self, zone: str | None = None, slot: int | None = None) -> Replica:
        with self.lock:
            views = self.replicas.views()
            slot = slot or free_slot([v.slot for v in views], self.s.autoscaling.max_replicas)
            zone = zone or pick_zone(self.s.zones, self.lost_zones(), views)
            return self.replicas.start(slot, zone)

    def replace_dead(self) -> None:
        with self.lock:
            for dead in to_replace(self.replicas.views()):
                old = self.replicas.get(dead.slot)
                if old is None:
                    continue
                self.replicas.remove_dead(old)
                new = self.start_replica(slot=old.slot)
                self.events("controller", "replace", replica=self.replicas.name(old), zone=old.zone,
                            new_zone=new.zone,
                            exit_code=old.executor.proc.returncode if old.executor.proc else None)
            for _ in range(shortfall(self.desired, self.replicas.views())):
                new = self.start_replica()
                self.events("controller", "create", replica=self.replicas.name(new), zone=new.zone)

    def rebalance(self) -> None:
        with self.lock:
            step = rebalance(self.s.zones, self.lost_zones(), self.replicas.views(), self.desired)
            if step is None:
                return
            if step.start_in is not None:
                new = self.start_replica(zone=step.start_in)
                self.events("controller", "rebalance", replica=self.replicas.name(new), zone=step.start_in,
                            counts=step.counts)
                return
            victim = self.replicas.get(step.stop or 0)
        if victim is not None:
            self.events("controller", "rebalance", stop=self.replicas.name(victim), zone=victim.zone)
            self.replicas.stop(victim, graceful=True)

    def utilization(self) -> float | None:
        """Mean CPU use of ready replicas as a percentage of their limit (None: no metrics)."""
        if not self.replicas.cgroups_ok:
            return None
        now = time.monotonic()
        samples = []
        with self.lock:
            measured = [r for r in self.replicas.replicas.values() if r.cpu is not None and not r.lost and r.enabled]
        for r in measured:
            used = self.replicas.sample_cpu(r)
            if used is not None and self._last_cpu_t is not None and now > self._last_cpu_t:
                samples.append((used, now - self._last_cpu_t))
        self._last_cpu_t = now
        return mean_utilization(samples, self.s.replica_cpu_limit)

    def autoscale(self) -> None:
        now = time.monotonic()
        if self._next_scale > now:
            return
        self._next_scale = now + self.s.autoscaling.sync_period_s
        util = self.utilization()
        with self.lock:
            current = self.desired
            decision = self.autoscaler.decide(now, current, util)
            if decision.desired == current:
                return
            self.events("controller", "scale", **{"from": current, "to": decision.desired,
                                                  "utilization": None if util is None else round(util, 1),
                                                  "reason": decision.reason})
            self.desired = decision.desired
            victims = [r for slot in scale_in(self.desired, self.replicas.views())
                       if (r := self.replicas.get(slot)) is not None]
        for r in victims:
            self.replicas.stop(r, graceful=True)
        # scale-up replicas are created by replace_dead's desired-count rule
