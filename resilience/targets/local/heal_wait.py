"""Waiting for a heal: after a rollback, until every restored component has rejoined.

The checks themselves are pure (`healing.py`); this is the loop that looks (one
`HealthMonitor.refresh()` per turn), re-clones a PostgreSQL member still not
streaming `reinit_after_s` after its restart (Patroni's reinitialize), releases the
leader lock of a member that holds it but cannot lead (`leader_lock.py`), and records
the outcome: a `heal` event with each component's time and action (rejoin, rewind,
reinit), or a `heal_failed` event with each one's log excerpt and an error for the
rollback that asked: never a silently degraded stack.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ...config import StackSettings
from ...errors import HarnessError
from .events import EventLog
from . import leader_lock
from .healing import HealProgress, heal_action
from .monitor import HealthMonitor
from .processes import ProcessTable
from .replicas import ReplicaSet
from .probes import Probes
from .services import StackLayout
from .topology import ETCD, POSTGRES, ComponentId

API_REPLICAS = "api-replicas"  # the heal's name for "as many API replicas ready as desired"
RELEASE_AFTER_S = 5.0  # a member holding the lock that cannot lead gets this long to sort itself out


class HealWait:
    def __init__(self, settings: StackSettings, layout: StackLayout, probes: Probes, monitor: HealthMonitor,
                 processes: ProcessTable, replicas: ReplicaSet, desired: Callable[[], int], events: EventLog,
                 stop_event: threading.Event) -> None:
        self.s = settings
        self.layout = layout
        self.probes = probes
        self.monitor = monitor
        self.processes = processes
        self.replicas = replicas
        self.desired = desired
        self.events = events
        self.stop_event = stop_event

    def wait_healed(self, names: list[str], started: float) -> dict[str, Any]:
        """Wait until every restored component has rejoined (and the API replicas are back); record the heal."""
        progress = HealProgress(list(names) + [API_REPLICAS], started)
        deadline = started + self.s.heal_timeout_s
        refused_before = {n: leader_lock.cannot_lead(self.processes.log_since_restart(m))
                          for n in names if (m := self._postgres(n)) is not None}
        while True:
            health = self.monitor.refresh()
            ready, desired = self.replicas.count_ready(), self.desired()
            problems = {n: health.problems.get(n, "unhealthy") for n in names if not health.healthy.get(n)}
            if ready < desired:
                problems[API_REPLICAS] = f"{ready} of {desired} API replicas ready"
            now = time.monotonic()
            progress.observe(now, problems)
            if progress.done or now >= deadline:
                break
            for name in problems:
                member = self._postgres(name)
                if member is not None and name in refused_before and name not in progress.released and \
                        now - started >= RELEASE_AFTER_S and \
                        leader_lock.cannot_lead(self.processes.log_since_restart(member)) > refused_before[name] and \
                        leader_lock.holder(self._etcd()) == name:
                    self._release_lock(member, problems[name], progress)
                    continue
                if member is not None and name != self.monitor.pg_leader and \
                        progress.may_reinitialize(name, now, self.s.reinit_after_s):
                    self._reinitialize(member, problems[name], progress)
            self.stop_event.wait(0.25)
        actions = {n: heal_action(self.processes.log_since_restart(m), n in progress.reinitialized)
                   if (m := self._postgres(n)) is not None else "rejoin" for n in names}
        if not progress.done:
            self._failed(progress, started, actions)
        detail = {n: {"seconds": progress.seconds(n), "action": actions.get(n, "rejoin")} for n in progress.components}
        self.events("platform", "heal", components=detail, seconds=round(max(progress.healed_at.values()) - started, 3))
        return {"healed": detail}

    def _failed(self, progress: HealProgress, started: float, actions: dict[str, str]) -> None:
        pending = progress.pending()
        found = {n: c for n in pending if (c := self.layout.topology.find(n)) is not None and c in self.processes.services}
        excerpts = {n: self._log_excerpt(c) for n, c in found.items()}
        self.events("platform", "heal_failed", components=pending, seconds=round(time.monotonic() - started, 3),
                    actions=actions, logs=excerpts)
        lines = "; ".join(f"{n}: {why}" for n, why in pending.items())
        logs = "\n".join(f"--- {n} ({self.processes.executor(found[n]).spec.log_path}) ends with:\n{text}"
                         for n, text in excerpts.items())
        raise HarnessError(f"the stack did not heal within {self.s.heal_timeout_s:.0f} s ({lines}). "
                           f"Inspect it with `resilience status`; `resilience down` and `up` rebuild it.\n{logs}")

    def _postgres(self, name: str) -> ComponentId | None:
        found = self.layout.topology.find(name)
        return found if found is not None and found.kind == POSTGRES else None

    def _etcd(self) -> list[str]:
        return [self.layout.place(m).address for m in self.layout.topology.members(ETCD)]

    def _release_lock(self, member: ComponentId, problem: str, progress: HealProgress) -> None:
        """Stop the member, delete the key only while it names it, wait for another leader, start it again."""
        progress.released.add(member.name)
        self.processes.kill(member)
        self.processes.reap_killed(member)
        deleted = leader_lock.release(self._etcd(), member.name)
        wait_s = self.s.patroni_ttl_s + self.s.patroni_loop_wait_s + 5.0
        until = time.monotonic() + wait_s
        while time.monotonic() < until and leader_lock.holder(self._etcd()) in (None, member.name):
            if self.stop_event.wait(0.25):
                break
        new = leader_lock.holder(self._etcd())
        self.processes.restart(member)
        self.events("platform", "release_lock", component=member.name, reason=problem, key_deleted=deleted,
                    new_leader=new, why="it held Patroni's leader lock but its PostgreSQL kept failing to start "
                                        "(e.g. on a forked-off timeline: Patroni < 3.0.3 overwrites a newer "
                                        "leader's key, patroni/patroni#2689)")

    def _reinitialize(self, member: ComponentId, problem: str, progress: HealProgress) -> None:
        if self.probes.reinitialize(member):
            progress.reinitialized.add(member.name)
            self.events("platform", "reinitialize", component=member.name, reason=problem)

    def _log_excerpt(self, c: ComponentId, lines: int = 12) -> str:
        return "\n".join(line[:300] for line in self.processes.log_since_restart(c).splitlines()[-lines:])
