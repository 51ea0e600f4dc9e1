"""Recovery from backup: what a restore gave back, gave up and lost, and how long each step took.

A failover keeps the data; a restore brings back a copy as of a recovery target
(a time, or the latest archived WAL). This checker reads the `recovery` records
the restore runbook writes (docs/measurements.md: target, restore-start,
restore-done, replay-done, cluster-whole, serving, corrupted, detect, decide)
and the read-back after recovery (`check`/`readback` of every acknowledged
order, `check`/`readback-sent` of every order sent without an acknowledgement)
and sorts every acknowledged order into one of:

- kept: read back, and the same order (id, items, total) as acknowledged;
- lost: acknowledged before the recovery target (or after `serving`) and missing or different;
- given up: acknowledged after the target and before `serving`, and missing (by design of a
  point-in-time restore: counted and listed, never hidden, not a breach);
- unverified: not read back, or the read-back could not tell.

Pure functions of the history, like every checker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ..history import CHECK, FAIL, LOAD, OK, RECOVERY, UNKNOWN, Record
from .measurement import Measurement, judge
from .windows import WRITE_OP, completion_time, fault_time

ENDED_EARLY = "ended-early"  # replay outcome: the WAL archive ended before the target; what it held was restored
READBACK_OP = "readback"
READBACK_SENT_OP = "readback-sent"  # a sent but unacknowledged order, looked up after recovery
MAX_LISTED = 20  # keys listed in a measurement's detail, so reports stay readable
MAX_GIVEN_UP_LISTED = 1000  # given-up orders are listed (nearly) in full: never hidden
PHASES = (("detect", None, "detect"), ("decide", "detect", "decide"), ("restore", "restore-start", "restore-done"),
          ("replay", "restore-done", "replay-done"), ("re-form", "replay-done", "cluster-whole"),
          ("serving", "cluster-whole", "serving"))  # (phase, starts at op (None: the disaster), ends at op)

DEFINITION_RPO = (
    "RPO of a restore = disaster time (when the fault took effect) - the earliest of: the point recovered to "
    "(the recovery target time; for a restore to the latest point, the last commit the WAL replay applied: "
    "a restore gives up everything after it, so its RPO is at least disaster - that point) and the "
    "acknowledgement time (start + latency of the ok POST /orders) of the earliest acknowledged order the "
    "restore did not bring back (missing, or different in id, items or total). Inconclusive when no restore happened or it failed, when "
    "acknowledged orders were not read back (unless the loss already found breaches the target), or when "
    "the history has no disaster time. A WAL replay that ended before the target (the archive stopped "
    "early) is judged, not excused: what it did not bring back is lost.")
DEFINITION_LOST = (
    "Lost writes of a restore = acknowledged orders that had to come back and did not come back as "
    "acknowledged: acknowledged before the point recovered to (the target time; for a restore to the latest "
    "point, the last commit the WAL replay applied, or every order when the history does not say it) "
    "or after the API served again (`recovery`/`serving`), and missing after recovery or different in order "
    "id, items or total (when the load recorded them); an order read back different from its acknowledgement "
    "is lost whenever it was acknowledged. Orders a data corruption touched are among them and must come "
    "back as they were. Target 0.")
DEFINITION_GIVEN_UP = (
    "Given-up writes = orders acknowledged after the point recovered to (the target time, or the last commit "
    "a restore to the latest point replayed: WAL not yet archived at the disaster) and before the API served "
    "again, missing after the restore: what a restore from an asynchronous archive gives up by design. Counted and listed, "
    "not judged; they are inside the RPO window.")
DEFINITION_UNEXPECTED = (
    "Unexpected writes = orders present after recovery that the load never had acknowledged, outside those "
    "it sent that the platform may have committed without answering (a timeout or a 5xx: indeterminate, "
    "not unexpected). The read-back looks up every key the load sent, so an order present although its POST "
    "was refused (4xx, connection refused) is counted; an order the load never sent is not looked up. "
    "Target 0.")
DEFINITION_BACKUP_AGE = ("Backup age = disaster time - stop time of the backup set the restore used "
                         "(`recovery`/`restore-start`). Reported only.")
DEFINITION_THROUGHPUT = ("Restore throughput = database bytes restored / seconds the restore took, in MB/s "
                         "(10^6 bytes), as the runbook recorded it (`recovery`/`restore-done`). Reported only.")
DEFINITION_WAL = ("WAL replayed = bytes (and segments) of write-ahead log replayed after the backup was restored "
                  "(`recovery`/`replay-done`). Reported only.")
DEFINITION_RUNBOOK = (
    "Runbook time = from the disaster until the harness saw the API take a write after the restore "
    "(`recovery`/`serving`), split into phases: detect (disaster -> effect seen), decide (-> backup set "
    "chosen), restore (restore-start -> restore-done), replay (-> replay-done), re-form (-> cluster whole), "
    "serving (-> API serving). Harness-observed; rto_s is the client-observed figure. Reported only.")


@dataclass(frozen=True)
class Phase:
    """One step of the restore runbook, on the run clock."""

    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class RestoreRun:
    """What the `recovery` records say about the restore. `problem` is why it cannot be judged, if so."""

    disaster_t: float | None
    problem: str | None = None
    target_kind: str | None = None  # "time" | "latest"
    target_t: float | None = None
    repo: int | None = None
    backup_label: str | None = None
    backup_type: str | None = None
    backup_age_s: float | None = None
    restore_seconds: float | None = None
    restore_bytes: int | None = None
    throughput_mb_s: float | None = None
    wal_bytes: int | None = None
    wal_segments: int | None = None
    replay_outcome: str | None = None
    replayed_to_t: float | None = None  # the last commit the replay applied (run clock), when recorded
    serving_t: float | None = None
    corrupted: dict[str, Any] = field(default_factory=dict)
    phases: tuple[Phase, ...] = ()

    @property
    def recovered_to_t(self) -> float | None:
        """The point the restore recovered to: the target time, or for a restore to the latest point the last
        commit the replay applied (orders acknowledged after it were never archived: given up, as after a
        target time). None when the history does not place it."""
        return self.target_t if self.target_kind == "time" else self.replayed_to_t

    def detail(self) -> dict[str, Any]:
        return {"disaster_t": self.disaster_t, "target": {"kind": self.target_kind, "t": self.target_t,
                                                          "recovered_to_t": self.recovered_to_t},
                "repo": self.repo, "backup_label": self.backup_label, "backup_type": self.backup_type,
                "backup_age_s": self.backup_age_s, "serving_t": self.serving_t,
                "phases": [{"name": p.name, "start": p.start, "end": p.end, "seconds": round(p.seconds, 3)}
                           for p in self.phases]}


def recovery_records(records: Iterable[Record]) -> dict[str, Record]:
    """The first `recovery` record of each op (the runbook runs once per experiment)."""
    first: dict[str, Record] = {}
    for r in sorted((r for r in records if r.source == RECOVERY), key=lambda r: r.t):
        first.setdefault(r.op, r)
    return first


def restore_run(records: Iterable[Record], *, disaster_t: float | None = None) -> RestoreRun:
    """The restore as recorded; `disaster_t` defaults to when the fault took effect (windows.fault_time), else to
    the `disaster_t` the runbook's `detect` record gives."""
    records = list(records)
    disaster_t = fault_time(records) if disaster_t is None else disaster_t
    by_op = recovery_records(records)
    if disaster_t is None and "detect" in by_op:  # the runbook's own record of when the disaster began
        disaster_t = _num((by_op["detect"].detail or {}).get("disaster_t"))
    start, done, replay = by_op.get("restore-start"), by_op.get("restore-done"), by_op.get("replay-done")
    whole, target, serving = by_op.get("cluster-whole"), by_op.get("target"), by_op.get("serving")
    if start is None:
        return RestoreRun(disaster_t, problem="no restore happened (no recovery/restore-start record)")
    s, t = start.detail or {}, (target.detail or {}) if target else {}
    facts: dict[str, Any] = dict(
        target_kind=t.get("kind"), target_t=_num(t.get("target_t")), repo=s.get("repo", t.get("repo")),
        backup_label=s.get("backup_label"), backup_type=s.get("backup_type"), backup_age_s=_num(s.get("backup_age_s")),
        serving_t=serving.t if serving else None, corrupted=dict((by_op["corrupted"].detail or {}))
        if "corrupted" in by_op else {}, phases=tuple(_phases(by_op, disaster_t)))
    if done is not None:
        d = done.detail or {}
        facts.update(restore_seconds=_num(d.get("seconds")), restore_bytes=d.get("bytes"),
                     throughput_mb_s=_num(d.get("throughput_mb_s")))
    if replay is not None:
        r = replay.detail or {}
        facts.update(wal_bytes=r.get("wal_bytes"), wal_segments=r.get("wal_segments"),
                     replay_outcome=r.get("outcome"), replayed_to_t=_num(r.get("replayed_to_t")))
    problem = None
    if done is None:
        problem = "the restore never finished (no recovery/restore-done record)"
    elif done.status != OK:
        problem = f"the restore failed: {(done.detail or {}).get('error') or 'no error given'}"
    elif replay is not None and replay.status != OK and facts["replay_outcome"] != ENDED_EARLY:
        problem = f"the WAL replay failed (outcome {facts['replay_outcome']!r})"
    elif whole is not None and whole.status != OK:
        problem = "the cluster was not re-formed after the restore (recovery/cluster-whole failed)"
    elif target is None:
        problem = "the history does not say the recovery target (no recovery/target record)"
    elif t.get("kind") == "time" and facts["target_t"] is None:
        problem = "the recovery target is a time the history does not place on the run clock (target_t missing)"
    elif serving is None:
        problem = "the API was not seen serving after the restore (no recovery/serving record)"
    return RestoreRun(disaster_t, problem, **facts)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _phases(by_op: dict[str, Record], disaster_t: float | None) -> list[Phase]:
    """The runbook phases whose two ends are both recorded (detect starts at the disaster)."""
    phases = []
    for name, start_op, end_op in PHASES:
        start = disaster_t if start_op is None else (by_op[start_op].t if start_op in by_op else None)
        if start is not None and end_op in by_op:
            phases.append(Phase(name, start, max(start, by_op[end_op].t)))
    return phases


@dataclass(frozen=True)
class Order:
    """An order as acknowledged by the platform, or as read back: id, items and total (None: not recorded)."""

    key: str
    order_id: str | None
    items: tuple[tuple[int, int], ...] | None = None
    total_paise: int | None = None
    ack_t: float = 0.0

    def differs_from(self, read: "Order") -> str | None:
        """What differs between this acknowledged order and the one read back (fields both recorded), or None."""
        for name in ("order_id", "items", "total_paise"):
            mine, theirs = getattr(self, name), getattr(read, name)
            if mine is not None and theirs is not None and mine != theirs:
                return name
        return None


def order_from(key: str, detail: dict[str, Any] | None, ack_t: float = 0.0) -> Order:
    """An Order from a load or read-back detail ({order_id, items: [{item_id, qty}], total_paise})."""
    detail = detail or {}
    items = detail.get("items")
    parsed = None
    if isinstance(items, list):
        try:
            parsed = tuple((int(i["item_id"]), int(i["qty"])) for i in items)
        except (LookupError, TypeError, ValueError):
            parsed = None
    total = detail.get("total_paise")
    order_id = detail.get("order_id")
    return Order(key, None if order_id is None else str(order_id), parsed,
                 int(total) if isinstance(total, (int, float)) else None, ack_t)


def acknowledged_orders(records: Iterable[Record]) -> list[Order]:
    """Every ok POST /orders with an idempotency key and an order_id, as the platform acknowledged it."""
    return [order_from(r.key, r.detail, completion_time(r)) for r in records
            if r.source == LOAD and r.op == WRITE_OP and r.status == OK and r.key and (r.detail or {}).get("order_id")]


@dataclass(frozen=True)
class RestoreResult:
    """Every acknowledged order sorted by what the restore did to it, plus what appeared unasked."""

    acknowledged: int
    kept: int
    lost: list[tuple[Order, str]]  # (order, "missing" | the field that differs)
    given_up: list[Order]
    unverified: list[Order]
    unexpected: list[str]  # keys present after recovery, never acknowledged
    indeterminate: int  # sent, no answer (timeout), present after recovery
    compared_content: int  # kept or lost orders whose items and total were compared

    @property
    def earliest_lost_ack_t(self) -> float | None:
        return min((o.ack_t for o, _ in self.lost), default=None)

    def detail(self) -> dict[str, Any]:
        return {"acknowledged": self.acknowledged, "kept": self.kept, "lost": len(self.lost),
                "given_up": len(self.given_up), "unverified": len(self.unverified),
                "unexpected": len(self.unexpected), "indeterminate": self.indeterminate,
                "compared_content": self.compared_content, "earliest_lost_ack_t": self.earliest_lost_ack_t,
                "lost_keys": [f"{o.key} ({why})" for o, why in sorted(self.lost, key=lambda x: x[0].ack_t)][:MAX_LISTED],
                "given_up_keys": [o.key for o in self.given_up][:MAX_LISTED],
                "unverified_keys": [o.key for o in self.unverified][:MAX_LISTED],
                "unexpected_keys": self.unexpected[:MAX_LISTED]}


def restore_outcome(records: Iterable[Record], run: RestoreRun) -> RestoreResult:
    """Sort the acknowledged orders against the recovery target and `serving`; the last read-back of a key counts."""
    records = sorted(records, key=lambda r: r.t)
    reads: dict[str, Record] = {}
    for r in records:
        if r.source == CHECK and r.op in (READBACK_OP, READBACK_SENT_OP) and r.key:
            reads[r.key] = r
    acks = sorted(acknowledged_orders(records), key=lambda o: o.ack_t)
    target_t = run.recovered_to_t
    kept, compared = 0, 0
    lost: list[tuple[Order, str]] = []
    given_up: list[Order] = []
    unverified: list[Order] = []
    for ack in acks:
        read = reads.get(ack.key)
        after_target = target_t is not None and ack.ack_t >= target_t
        before_serving = run.serving_t is None or ack.ack_t < run.serving_t
        if read is None or read.status not in (OK, FAIL):
            unverified.append(ack)
            continue
        if read.status == FAIL:
            if after_target and before_serving:
                given_up.append(ack)
            else:
                lost.append((ack, "missing"))
            continue
        found = order_from(ack.key, (read.detail or {}).get("read"))
        if found.items is not None and ack.items is not None:
            compared += 1
        why = ack.differs_from(found)
        if why is not None:  # present but not as acknowledged: worse than missing, whenever it was acknowledged
            lost.append((ack, f"{why} differs"))
        else:
            kept += 1
    acked_keys = {o.key for o in acks}
    sent = {r.key: r for r in records if r.source == LOAD and r.op == WRITE_OP and r.key}
    unexpected, indeterminate = [], 0
    for key, read in reads.items():
        if key in acked_keys or read.status != OK:
            continue
        if key in sent and may_have_committed(sent[key]):
            indeterminate += 1
        else:
            unexpected.append(key)
    return RestoreResult(len(acks), kept, lost, given_up, unverified, sorted(unexpected), indeterminate, compared)


def may_have_committed(request: Record) -> bool:
    """A POST /orders without an acknowledgement that the platform may still have committed: a timeout, or a
    5xx (a gateway that lost the backend, or the API losing its database mid-commit). A 4xx or a refused
    connection is a definite no."""
    code = (request.detail or {}).get("code")
    return request.status == UNKNOWN or (isinstance(code, int) and code >= 500)


def corruption_repaired(result: RestoreResult, run: RestoreRun) -> dict[str, Any]:
    """Of the orders the corruption touched (recovery/corrupted order_ids), how many are still missing or wrong."""
    touched = {str(i) for i in run.corrupted.get("order_ids") or []}
    if not touched:
        return {}
    still = sorted(o.order_id or o.key for o, _ in result.lost if o.order_id in touched)
    unverified = sum(1 for o in result.unverified if o.order_id in touched)
    return {"mode": run.corrupted.get("mode"), "touched": len(touched), "still_wrong": len(still),
            "still_wrong_ids": still[:MAX_LISTED], "unverified": unverified}


def restore_rpo_s(result: RestoreResult, run: RestoreRun) -> float | None:
    """disaster - min(recovery target, earliest lost ack), at least 0; None without a disaster time."""
    if run.disaster_t is None:
        return None
    earliest = [t for t in (run.recovered_to_t, result.earliest_lost_ack_t)
                if t is not None]
    return max(0.0, run.disaster_t - min(earliest)) if earliest else 0.0


def measurements(records: Iterable[Record], *, rpo_target_s: float | None, lost_writes_target: float = 0,
                 disaster_t: float | None = None) -> list[Measurement]:
    """rpo_s, lost_writes, given_up_writes, unexpected_writes, backup_age_s, restore_throughput_mb_s,
    wal_replayed_bytes and runbook_s of a restore; all inconclusive, with the reason, when it cannot be judged."""
    records = list(records)
    run = restore_run(records, disaster_t=disaster_t)
    facts = run.detail()
    if run.problem is not None:
        known = {"backup_age_s": run.backup_age_s, "restore_throughput_mb_s": run.throughput_mb_s,
                 "wal_replayed_bytes": run.wal_bytes}
        return [judge(name, None, unit, target, definition=text, reason=run.problem,
                      detail={**facts, "recorded": known.get(name)})
                for name, unit, target, text in _figures(rpo_target_s, lost_writes_target)]
    result = restore_outcome(records, run)
    detail = {**facts, **result.detail()}
    repaired = corruption_repaired(result, run)
    if repaired:
        detail["corrupted"] = repaired
    checked = result.acknowledged - len(result.unverified)
    lost_value: float | None = float(len(result.lost))
    data_reason = None
    if result.acknowledged == 0:
        lost_value, data_reason = None, "the load acknowledged no orders"
    elif checked == 0:
        lost_value, data_reason = None, "the read-back after recovery could not run: no acknowledged order was read back"
    elif result.unverified and not result.lost:
        lost_value = None
        data_reason = f"{len(result.unverified)} of {result.acknowledged} acknowledged orders were not read back"
    elif result.unverified:
        data_reason = f"at least {len(result.lost)} lost; {len(result.unverified)} more were not read back"
    rpo_value = restore_rpo_s(result, run)
    rpo_reason = data_reason
    if run.disaster_t is None:
        rpo_reason = "the history has no disaster time (no fault effect or injection)"
    elif lost_value is None or result.unverified:
        breach = rpo_value is not None and rpo_target_s is not None and rpo_value > rpo_target_s
        if not breach:
            rpo_value = None
        else:
            rpo_reason = f"lower bound ({data_reason})"
    unexpected_value = None if checked == 0 else float(len(result.unexpected))
    wal = {"wal_segments": run.wal_segments, "replay_outcome": run.replay_outcome}
    serving_s = (run.serving_t - run.disaster_t) if run.serving_t is not None and run.disaster_t is not None else None
    return [
        judge("rpo_s", rpo_value, "s", rpo_target_s, definition=DEFINITION_RPO, detail=detail, reason=rpo_reason),
        judge("lost_writes", lost_value, "writes", lost_writes_target, definition=DEFINITION_LOST, detail=detail,
              reason=data_reason),
        judge("given_up_writes", None if checked == 0 else float(len(result.given_up)), "writes", None,
              definition=DEFINITION_GIVEN_UP, reason=data_reason,
              detail={**detail, "given_up_keys": [o.key for o in result.given_up][:MAX_GIVEN_UP_LISTED]}),
        judge("unexpected_writes", unexpected_value, "writes", 0, definition=DEFINITION_UNEXPECTED, detail=detail,
              reason=None if unexpected_value is not None else data_reason),
        judge("backup_age_s", run.backup_age_s, "s", None, definition=DEFINITION_BACKUP_AGE, detail=facts,
              reason=None if run.backup_age_s is not None else "restore-start recorded no backup_age_s"),
        judge("restore_throughput_mb_s", run.throughput_mb_s, "MB/s", None, ">=", definition=DEFINITION_THROUGHPUT,
              detail={**facts, "bytes": run.restore_bytes, "seconds": run.restore_seconds},
              reason=None if run.throughput_mb_s is not None else "restore-done recorded no throughput_mb_s"),
        judge("wal_replayed_bytes", None if run.wal_bytes is None else float(run.wal_bytes), "bytes", None,
              definition=DEFINITION_WAL, detail={**facts, **wal},
              reason=None if run.wal_bytes is not None else "no recovery/replay-done record with wal_bytes"),
        judge("runbook_s", None if serving_s is None else round(serving_s, 3), "s", None,
              definition=DEFINITION_RUNBOOK, detail=facts,
              reason=None if serving_s is not None else "no disaster time to measure the runbook from"),
    ]


def _figures(rpo_target_s: float | None, lost_target: float) -> list[tuple[str, str, float | None, str]]:
    """(name, unit, target, definition) of every figure, in the order measurements() returns them."""
    return [("rpo_s", "s", rpo_target_s, DEFINITION_RPO), ("lost_writes", "writes", lost_target, DEFINITION_LOST),
            ("given_up_writes", "writes", None, DEFINITION_GIVEN_UP),
            ("unexpected_writes", "writes", 0, DEFINITION_UNEXPECTED),
            ("backup_age_s", "s", None, DEFINITION_BACKUP_AGE),
            ("restore_throughput_mb_s", "MB/s", None, DEFINITION_THROUGHPUT),
            ("wal_replayed_bytes", "bytes", None, DEFINITION_WAL), ("runbook_s", "s", None, DEFINITION_RUNBOOK)]
