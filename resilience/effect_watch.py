"""Watching for each fault's effect: a fault counts from when it took effect, not from when it was asked for.

An RDS or ElastiCache failover call returns at once and the outage comes later;
a Patroni failover follows a kill by seconds. After every injection the run
starts one watch per signal the fault's modules declare (`Effect`): it looks
every `poll_s` until the signal shows or its deadline passes, on a thread of its
own, so the fault's hold and the recovery window go on meanwhile.

What each watch leaves in the history is one `fault`/`effect` record:
- ok, at the moment the fault took effect: when the platform says the outage
  began (e.g. RDS-EVENT-0073), else the call's start (a fault that acts within
  its call, where the signal only confirms it); `detail.seen_t` is when the
  signal was seen;
- fail, with the reason, when the signal was not seen by the deadline or
  before the run ended. The checkers then make the run inconclusive.
An injection whose modules declare no signal gets an ok record at its call's
start, so a history with `effect` records has one for every injection
(checkers.windows.fault_time).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .history import FAIL, FAULT, OK, History
from .targets.fault_module import Effect

EFFECT = "effect"  # fault op: the fault took effect (ok) or was not seen to (fail)


class EffectWatch:
    """The run's watches for the effects of its injections."""

    def __init__(self, history: History, say: Callable[[str], None], poll_s: float = 0.5) -> None:
        self.history = history
        self.say = say
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, capability: str, requested_t: float, effects: list[Effect] | Callable[[], list[Effect]]) -> None:
        """Watch for `effects` of the injection of `capability` whose call started at `requested_t` (given, or
        made by a callable: one that fails leaves a failed effect, since nothing would confirm the fault)."""
        if callable(effects):
            try:
                effects = effects()
            except Exception as exc:  # noqa: BLE001 - the fault is injected; only its confirmation is lost
                reason = f"{capability} was requested at t={requested_t:.1f} s but its effect could not be watched: " \
                         f"{type(exc).__name__}: {exc}"
                self.history.add(FAULT, EFFECT, FAIL, t=self.history.now(), detail={
                    "capability": capability, "signal": None, "requested_t": requested_t, "reason": reason})
                self.say(f"FAULT NOT SEEN: {reason}")
                return
        if not effects:
            self.history.add(FAULT, EFFECT, OK, t=requested_t,
                             detail={"capability": capability, "signal": None, "requested_t": requested_t})
            return
        for effect in effects:
            thread = threading.Thread(target=self._watch, args=(capability, requested_t, effect),
                                      name=f"effect-{capability}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """The run ends: one last look for every watch still waiting; what is still not seen is recorded as such."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)

    def _watch(self, capability: str, requested_t: float, effect: Effect) -> None:
        deadline = self.history.origin_monotonic + requested_t + effect.deadline_s
        error: str | None = None
        while True:
            stopping = self._stop.is_set()
            try:
                facts = effect.look()
            except Exception as exc:  # noqa: BLE001 - a look that fails is "not seen yet"; kept for the reason
                facts, error = None, f"{type(exc).__name__}: {exc}"
            if facts is not None:
                self._seen(capability, requested_t, effect, facts)
                return
            if time.monotonic() >= deadline or stopping:
                self._missed(capability, requested_t, effect, error, ended=stopping and time.monotonic() < deadline)
                return
            self._stop.wait(min(self.poll_s, max(0.0, deadline - time.monotonic())))

    def _seen(self, capability: str, requested_t: float, effect: Effect, facts: dict[str, Any]) -> None:
        seen_t = self.history.now()
        observed = dict(facts)
        began = observed.pop("began_monotonic", None)
        if effect.in_call or began is None:  # without the platform's word on when it began: from the request
            t = requested_t
        else:
            t = min(seen_t, max(requested_t, self.history.at(float(began))))
        recovers_after = not effect.in_call and began is None  # timed from the request: no recovery before the signal
        self.history.add(FAULT, EFFECT, OK, t=t, detail={
            "capability": capability, "signal": effect.signal, "requested_t": requested_t, "seen_t": seen_t,
            "deadline_s": effect.deadline_s, "in_call": effect.in_call, "recovers_after": recovers_after,
            "observed": observed})
        self.say(f"fault took effect: {effect.signal} (seen {seen_t - requested_t:.1f} s after the request"
                 + ("" if effect.in_call else f"; effective from t={t:.1f} s") + ")")

    def _missed(self, capability: str, requested_t: float, effect: Effect, error: str | None, *, ended: bool) -> None:
        now = self.history.now()
        if ended:
            reason = (f"{capability} was requested at t={requested_t:.1f} s but {effect.signal} was not observed in "
                      f"the {now - requested_t:.0f} s the run lasted after it (deadline {effect.deadline_s:g} s): the run "
                      f"ended first (it was aborted, or the profile is too short for this target: see --dry-run)")
        else:
            reason = (f"{capability} was requested at t={requested_t:.1f} s but {effect.signal} was not observed "
                      f"within {effect.deadline_s:g} s")
        if error:
            reason += f" (last look failed: {error})"
        self.history.add(FAULT, EFFECT, FAIL, t=now, detail={
            "capability": capability, "signal": effect.signal, "requested_t": requested_t,
            "deadline_s": effect.deadline_s, "reason": reason})
        self.say(f"FAULT NOT SEEN: {reason}")


def too_short(spec: Any, hold_s: float, documented: dict[str, list[Any]]) -> list[str]:
    """Why this profile cannot contain what the platform's documentation says each fault takes (`--dry-run` and
    the run say so before anything runs): after its request a fault is watched for fault_s + recovery_s, which
    must hold the documented time to take effect and then an RTO hold window."""
    d = spec.durations
    watched = d.fault_s + d.recovery_s
    lines = []
    for fault, docs in documented.items():
        for doc in docs:
            needed = doc.seconds + hold_s
            if watched < needed:
                lines.append(f"warning: profile {spec.profile} is too short for {fault} on this target: it watches "
                             f"{watched:g} s after the request (fault {d.fault_s:g} s + recovery {d.recovery_s:g} s), "
                             f"but {doc.source}, and recovery needs a {hold_s:g} s hold window after it: at least "
                             f"{needed:g} s. The run would end inconclusive; use a longer profile (--profile full).")
    return lines
