"""RTO: how long after the fault the service became healthy and stayed healthy.

The rule, step by step (the report prints DEFINITION):

1. Every load request is an observation of the service at the moment its
   outcome was known, its completion `t + latency`. (A request that hangs in a
   frozen service and then times out tells us the service was down until the
   timeout; its start time would date the outage too early.)
2. Completions from the fault time F on go into 1-second buckets aligned on
   F: bucket k is [F + k, F + k + 1). Only whole buckets before the last
   completion of the load are judged.
3. A bucket is healthy when it holds at least one request, its success ratio
   ok / (ok + fail + unknown) is >= the target ratio (default 99%), and, when the
   load places orders at all, at least one ok `POST /orders` (the write path).
   If the load placed no orders anywhere in the history the write-path rule is
   dropped and the result says so.
4. The hold window is the first run of ceil(hold_s) consecutive healthy
   buckets. If it starts at bucket 0 the service never looked unhealthy: RTO = 0.
5. Otherwise the bucket just before the hold window is unhealthy, and the
   recovery moment is pinned down inside it: take the last failed/unknown
   completion in that bucket (or the bucket's start when the bucket was
   unhealthy only for silence or for a missing write), then the first ok
   completion of any request after it — or of an ok `POST /orders` if that
   bucket had no ok order at all, since the write path was not yet shown to
   work. RTO = that moment − F. It lies within one second either side of the
   hold window's start, and its precision is about the interval between
   requests. (A broken write path shows as failed writes: they are bad
   completions that push the moment later.)
6. No hold window before the load ends: RTO is unbounded (inf) if at least
   one hold window's worth of load followed the fault, else inconclusive (too
   little data to say). No fault time, or no load after it: inconclusive.
7. F is when the fault took effect (resilience.effect_watch). A fault that acts
   after its call and is timed from its request (the platform gave no start
   time) is not over before its signal was seen: with `not_before` (that
   moment) no hold window may start before it.
8. Cut short: when the run was aborted (`cut_short`: the history has a
   `phase`/`abort` record) and it ended less than a hold window after the last
   failed/unknown completion without recovering, the observation stopped before
   recovery could have been seen: RTO is inconclusive, not unbounded. (A complete
   run, or an aborted one that still showed a whole hold window after its last
   failure without being healthy, keeps rule 6.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..history import OK, Record
from .measurement import Measurement, judge
from .windows import WRITE_OP, is_load_request

DEFINITION = (
    "RTO = time from fault injection (first fault/inject record, else the fault phase start) until the "
    "service becomes healthy and stays healthy for the hold window. Each load request is observed at its "
    "completion (start + latency; a timeout's latency is the timeout). Completions go into 1-second "
    "buckets aligned on the fault time; a bucket is healthy when it has >= 1 request, a success ratio "
    "ok/(ok+fail+unknown) >= the target ratio, and >= 1 ok POST /orders (write path; dropped only when "
    "the load placed no orders at all). The hold window is the first run of consecutive healthy buckets "
    "covering the hold time; no unhealthy bucket before it means RTO = 0. Otherwise the recovery moment "
    "is the first ok completion after the last failed/unknown completion of the unhealthy bucket just "
    "before the hold window (after that bucket's start if it had none); the first ok POST /orders "
    "instead if that bucket had no ok order. No hold window before the load ends: unbounded (inf) if "
    "the load ran at least a hold window past the fault, else inconclusive."
)


@dataclass(frozen=True)
class RecoveryResult:
    """The RTO and how it was found. rto_s: None = could not be measured, inf = never recovered."""

    rto_s: float | None
    fault_t: float | None
    recovered_t: float | None = None
    reason: str | None = None
    hold_s: float = 10.0
    success_ratio: float = 0.99
    write_path_checked: bool = True
    unhealthy_seconds: int = 0  # unhealthy buckets between the fault and the hold window (or the end)
    observed_until: float | None = None  # last load completion judged
    extra: dict[str, Any] = field(default_factory=dict)

    def detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "fault_t": self.fault_t,
            "recovered_t": self.recovered_t,
            "hold_s": self.hold_s,
            "success_ratio": self.success_ratio,
            "write_path_checked": self.write_path_checked,
            "unhealthy_seconds": self.unhealthy_seconds,
            "observed_until": self.observed_until,
        }
        if not self.write_path_checked:
            detail["write_path"] = "not checked: the load placed no POST /orders in this run"
        detail.update(self.extra)
        return detail


@dataclass
class _Bucket:
    """What the load saw during one second after the fault."""

    requests: int = 0
    ok: int = 0
    ok_writes: int = 0
    last_bad: float | None = None  # completion time of the last failed/unknown request

    def healthy(self, success_ratio: float, check_writes: bool) -> bool:
        return (self.requests > 0 and self.ok / self.requests >= success_ratio
                and (self.ok_writes > 0 or not check_writes))


def recovery_time(records: Iterable[Record], *, fault_t: float | None, hold_s: float = 10.0,
                  success_ratio: float = 0.99, cut_short: bool = False,
                  not_before: float | None = None) -> RecoveryResult:
    """The RTO of a history (see the module docstring for the rule; `not_before` is rule 7, `cut_short` 8)."""
    requests = [r for r in records if is_load_request(r)]
    check_writes = any(r.op == WRITE_OP for r in requests)
    completions = ((r.t + (r.latency or 0.0), r) for r in requests)  # see completion_time()
    after = [] if fault_t is None else [(moment, r) for moment, r in completions if moment >= fault_t]
    observed_until = max((moment for moment, _ in after), default=None)

    def result(rto_s: float | None, **facts: Any) -> RecoveryResult:
        return RecoveryResult(rto_s, fault_t, hold_s=hold_s, success_ratio=success_ratio,
                              write_path_checked=check_writes, observed_until=observed_until, **facts)

    if fault_t is None:
        return result(None, reason="the history has no fault injection (no fault/inject record and no fault phase)")
    if observed_until is None:
        return result(None, reason="no load request completed after the fault")
    judged_seconds = math.floor(observed_until - fault_t)  # whole buckets only
    hold_buckets = max(1, math.ceil(hold_s - 1e-9))

    buckets = [_Bucket() for _ in range(judged_seconds)]
    for moment, record in after:
        index = int(moment - fault_t)
        if index >= judged_seconds:
            continue
        bucket = buckets[index]
        bucket.requests += 1
        if record.status == OK:
            bucket.ok += 1
            if record.op == WRITE_OP:
                bucket.ok_writes += 1
        elif bucket.last_bad is None or moment > bucket.last_bad:
            bucket.last_bad = moment

    earliest = 0 if not_before is None else max(0, math.ceil(not_before - fault_t - 1e-9))
    hold_start = _first_healthy_run(buckets, hold_buckets, success_ratio, check_writes, earliest)
    if hold_start is None:
        unhealthy = sum(1 for b in buckets if not b.healthy(success_ratio, check_writes))
        last_bad = max((moment for moment, r in after if r.status != OK), default=fault_t)
        if cut_short and observed_until - last_bad < hold_s:
            return result(None, unhealthy_seconds=unhealthy, extra={"cut_short": True, "last_bad_t": last_bad},
                          reason=f"the run was cut short (aborted) {observed_until - last_bad:.1f} s after the last "
                                 f"failed request, before a {hold_s:g} s hold window could show recovery: whether "
                                 f"and when the service recovered was not observed")
        if judged_seconds >= hold_buckets:
            return result(math.inf, unhealthy_seconds=unhealthy,
                          reason=f"the service never stayed healthy for {hold_s:g} s before the load ended "
                                 f"{observed_until - fault_t:.1f} s after the fault")
        return result(None, unhealthy_seconds=unhealthy,
                      reason=f"only {judged_seconds} whole second(s) of load after the fault; the hold window "
                             f"needs {hold_buckets}")
    if hold_start == 0:
        return result(0.0, recovered_t=fault_t)
    facts_extra = {} if not_before is None else {"not_before_t": not_before}

    before = buckets[hold_start - 1]
    last_bad = before.last_bad if before.last_bad is not None else fault_t + hold_start - 1
    if not_before is not None:  # rule 7: not before the new leader was seen
        last_bad = max(last_bad, not_before)
    writes_only = check_writes and before.ok_writes == 0  # the write path was not yet shown to work
    recovered_t = min((moment for moment, r in after
                       if moment > last_bad and r.status == OK and (r.op == WRITE_OP or not writes_only)),
                      default=fault_t + hold_start)  # only reachable with success_ratio == 0
    unhealthy = sum(1 for b in buckets[:hold_start] if not b.healthy(success_ratio, check_writes))
    return result(recovered_t - fault_t, recovered_t=recovered_t, unhealthy_seconds=unhealthy,
                  extra={"hold_window_start": fault_t + hold_start, "last_bad_t": before.last_bad, **facts_extra})


def _first_healthy_run(buckets: list[_Bucket], length: int, success_ratio: float, check_writes: bool,
                       earliest: int = 0) -> int | None:
    """Index of the first bucket, from `earliest` on, that starts `length` consecutive healthy buckets."""
    run = 0
    for index, bucket in enumerate(buckets):
        run = run + 1 if index >= earliest and bucket.healthy(success_ratio, check_writes) else 0
        if run == length:
            return index - length + 1
    return None


# runs that record when each fault took effect (fault/effect records) are timed from it; older runs keep DEFINITION
EFFECT_DEFINITION = DEFINITION.replace(
    "from fault injection (first fault/inject record, else the fault phase start)",
    "from the fault taking effect (the first ok fault/effect record: the call's start for a fault that acts "
    "within its call, else when the platform says the outage began or its signal was seen; a fault whose "
    "effect was not seen by its deadline is inconclusive, and one timed from its request for want of a start "
    "time cannot recover before its signal was seen)")


def measurement(result: RecoveryResult, *, target_s: float | None, from_effect: bool = False) -> Measurement:
    """`rto_s`, judged against the RTO target (inf, never recovered, is a breach)."""
    return judge("rto_s", result.rto_s, "s", target_s, "<=", definition=EFFECT_DEFINITION if from_effect else
                 DEFINITION, detail=result.detail(), reason=result.reason)
