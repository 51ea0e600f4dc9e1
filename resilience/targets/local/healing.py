"""Is the stack whole again? Pure checks of what each component reports, and the record of a heal.

A process that runs is not a component that has rejoined: a former PostgreSQL
primary can run and "wait for WAL" forever on a timeline that forked off; a
restarted Redis can run with its replication link down. These functions read
what the services themselves report (Patroni's REST API, Redis INFO, Sentinel)
and name every problem, so `status` is healthy only when a game-day's next
experiment would meet a whole platform. They take plain dicts so they can be
tested on hand-built answers, without processes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

# Patroni log lines (INFO) that say what a rejoining member had to do
_REWIND_MARKS = ("running pg_rewind from",)
_REINIT_MARKS = ("reinitializing due to diverged timelines", "removing data directory")


def postgres_problems(statuses: Mapping[str, Mapping[str, Any] | None], synchronous: bool,
                      sync_standbys: set[str]) -> dict[str, str]:
    """Problems per member, from each member's Patroni `/patroni` answer (None: no answer).

    Whole means: one running primary; every other member a running replica on the
    primary's timeline, streaming from it; and, with synchronous replication, one of
    them the synchronous standby in Patroni's /sync key (`sync_standbys`, the members
    `/cluster` calls sync_standby). PostgreSQL may already stream synchronously
    before Patroni records it there; until then Patroni will not promote that member
    if the primary dies, so a heal is complete only once the key names it.
    """
    problems: dict[str, str] = {}
    leaders = [n for n, s in statuses.items() if s and s.get("role") in ("master", "primary")
               and s.get("state") == "running"]
    if len(leaders) != 1:
        what = "no running primary" if not leaders else f"{len(leaders)} primaries: {', '.join(sorted(leaders))}"
        return {n: what for n in statuses}
    leader = leaders[0]
    primary = statuses[leader] or {}
    streams = {r.get("application_name"): r for r in primary.get("replication") or []}
    for name, s in statuses.items():
        if name == leader:
            continue
        if not s:
            problems[name] = "Patroni does not answer"
        elif s.get("state") != "running":
            problems[name] = f"PostgreSQL is {s.get('state', 'in an unknown state')}"
        elif s.get("role") != "replica":
            problems[name] = f"role {s.get('role')!r}, expected replica"
        elif s.get("timeline") != primary.get("timeline"):
            problems[name] = f"on timeline {s.get('timeline')}, the primary {leader} on {primary.get('timeline')}"
        elif (streams.get(name) or {}).get("state") != "streaming":
            problems[name] = f"not streaming from the primary {leader}"
    if synchronous and not problems and len(statuses) > 1 and not sync_standbys - {leader}:
        for name in statuses:
            if name != leader:
                problems[name] = "streaming, but not yet the synchronous standby in Patroni's /sync key"
    return problems


def agreed_master(answers: Mapping[str, str | None]) -> str | None:
    """The master address a majority of the Sentinels name (None: no majority)."""
    votes = Counter(a for a in answers.values() if a)
    if not votes:
        return None
    address, count = votes.most_common(1)[0]
    return address if count * 2 > len(answers) else None


def redis_problems(infos: Mapping[str, Mapping[str, Any] | None], addresses: Mapping[str, str],
                   sentinel_answers: Mapping[str, str | None]) -> dict[str, str]:
    """Problems per Redis server and Sentinel.

    `infos`: each server's INFO replication (None: no answer); `addresses`: server
    name → host:port; `sentinel_answers`: Sentinel name → the master address it names.
    """
    problems: dict[str, str] = {}
    master = agreed_master(sentinel_answers)
    for name, answer in sentinel_answers.items():
        if answer is None:
            problems[name] = "does not name a master"
        elif master is not None and answer != master:
            problems[name] = f"names {answer} as master, the majority {master}"
    for name, info in infos.items():
        if info is None:
            problems[name] = "does not answer"
        elif master is None:
            problems[name] = "the Sentinels do not agree on a master"
        elif addresses[name] == master:
            if info.get("role") != "master":
                problems[name] = f"the Sentinels name it master, but its role is {info.get('role')}"
        elif info.get("role") != "slave":
            problems[name] = f"role {info.get('role')}, expected a replica of {master}"
        elif f"{info.get('master_host')}:{info.get('master_port')}" != master:
            problems[name] = f"replicates {info.get('master_host')}:{info.get('master_port')}, not the master {master}"
        elif info.get("master_link_status") != "up":
            problems[name] = f"replication link to {master} is {info.get('master_link_status')}"
    return problems


def heal_action(log_since_restart: str, reinitialized: bool) -> str:
    """What a rejoining PostgreSQL member had to do: reinit, rewind or plain rejoin."""
    text = log_since_restart.lower()
    if reinitialized or any(mark in text for mark in _REINIT_MARKS):
        return "reinit"
    if any(mark in text for mark in _REWIND_MARKS):
        return "rewind"
    return "rejoin"


@dataclass
class HealProgress:
    """One heal: which components must rejoin, when each was last seen whole, what it took."""

    components: list[str]
    started: float
    healed_at: dict[str, float] = field(default_factory=dict)
    last_problem: dict[str, str] = field(default_factory=dict)
    reinitialized: set[str] = field(default_factory=set)
    reinit_asked: dict[str, float] = field(default_factory=dict)  # component → when a re-clone was last asked for
    released: set[str] = field(default_factory=set)  # members whose leader lock the heal released (leader_lock.py)

    def observe(self, now: float, problems: Mapping[str, str]) -> None:
        """Record one look: a component is healed from the first look after which it stayed whole."""
        for name in self.components:
            if name in problems:
                self.last_problem[name] = problems[name]
                self.healed_at.pop(name, None)
            else:
                self.healed_at.setdefault(name, now)

    def may_reinitialize(self, name: str, now: float, after_s: float) -> bool:
        """Ask for a re-clone once a member has had `after_s` to rejoin on its own; again every `after_s` if refused."""
        if name in self.reinitialized or now - self.started < after_s:
            return False
        if now - self.reinit_asked.get(name, -1e9) < after_s:
            return False
        self.reinit_asked[name] = now
        return True

    @property
    def done(self) -> bool:
        return all(name in self.healed_at for name in self.components)

    def pending(self) -> dict[str, str]:
        return {n: self.last_problem.get(n, "not checked yet") for n in self.components if n not in self.healed_at}

    def seconds(self, name: str) -> float | None:
        at = self.healed_at.get(name)
        return None if at is None else round(at - self.started, 3)
