"""RPO and lost writes: was every acknowledged order still there after recovery?

An acknowledged write is an ok `POST /orders` load request carrying
`detail.order_id`; it was acknowledged at `t + latency` (when the client got
the answer). After recovery the harness reads each one back (`check`/`readback`
records: ok = found, fail = missing, unknown = could not read), matched by
idempotency key (record.key), or by order_id when a record has no key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ..history import CHECK, FAIL, LOAD, OK, Record
from .measurement import Measurement, judge
from .windows import WRITE_OP, completion_time

READBACK_OP = "readback"
MAX_LISTED_KEYS = 20  # lost/unverified keys listed in the detail, so reports stay readable

DEFINITION_RPO = (
    "RPO = fault time - acknowledgement time (start + latency of the ok POST /orders) of the earliest "
    "acknowledged write that a read-back after recovery found missing; 0 when no acknowledged write was "
    "lost, and 0 when the only lost writes were acknowledged after the fault (they still count in "
    "lost_writes). Every acknowledged write must be read back: if some were not (or the read-back "
    "failed), RPO is inconclusive, unless the loss already found exceeds the target (then it is a lower "
    "bound and breached). No acknowledged writes, or no fault time: inconclusive. The fault time here is "
    "the last fault injection: the failure that loses data (an earlier step, such as holding replication "
    "back, only prepares it); with one fault it is the injection time."
)
DEFINITION_LOST = (
    "Lost writes = acknowledged orders (ok POST /orders with an order_id) that the read-back after "
    "recovery found missing. Target 0. Inconclusive when some acknowledged writes were not read back and "
    "none was found missing; when some were found missing the count is a lower bound and breached."
)


@dataclass(frozen=True)
class DurabilityResult:
    """What the read-back found, and the RPO. rpo_s is None when it could not be measured."""

    acknowledged: int
    found: int
    lost: int
    unverified: int  # acknowledged but not read back, or the read-back was "unknown"
    fault_t: float | None
    earliest_lost_ack_t: float | None = None
    lost_keys: list[str] = field(default_factory=list)
    unverified_keys: list[str] = field(default_factory=list)

    @property
    def rpo_lower_bound_s(self) -> float | None:
        """fault time - ack time of the earliest write known lost (0 when none), or None."""
        if self.fault_t is None:
            return None
        if self.earliest_lost_ack_t is None:
            return 0.0
        return max(0.0, self.fault_t - self.earliest_lost_ack_t)

    def detail(self) -> dict[str, Any]:
        return {
            "acknowledged": self.acknowledged,
            "found": self.found,
            "lost": self.lost,
            "unverified": self.unverified,
            "fault_t": self.fault_t,
            "earliest_lost_ack_t": self.earliest_lost_ack_t,
            "lost_keys": self.lost_keys[:MAX_LISTED_KEYS],
            "unverified_keys": self.unverified_keys[:MAX_LISTED_KEYS],
        }


@dataclass(frozen=True)
class AcknowledgedWrite:
    """One write the platform acknowledged: its idempotency key, order id and acknowledgement time."""

    key: str | None
    order_id: str | None
    ack_t: float

    @property
    def label(self) -> str:
        return self.key if self.key is not None else f"order_id={self.order_id}"


def acknowledged_writes(records: Iterable[Record]) -> list[AcknowledgedWrite]:
    """Every ok POST /orders that carried an order_id: the writes the platform promised to keep."""
    acks = []
    for record in records:
        if record.op != WRITE_OP or record.status != OK or record.source != LOAD:
            continue
        order_id = (record.detail or {}).get("order_id")
        if order_id is None:
            continue
        acks.append(AcknowledgedWrite(record.key, str(order_id), completion_time(record)))
    return acks


def data_loss(records: Iterable[Record], *, fault_t: float | None) -> DurabilityResult:
    """Match acknowledged writes with their read-backs. When a write was read back more than once, the last read-back counts."""
    records = list(records)
    readbacks = sorted((r for r in records if r.source == CHECK and r.op == READBACK_OP), key=lambda r: r.t)
    by_key: dict[str, str] = {}
    by_order: dict[str, str] = {}
    for record in readbacks:
        if record.key is not None:
            by_key[record.key] = record.status
        order_id = (record.detail or {}).get("order_id")
        if order_id is not None:
            by_order[str(order_id)] = record.status

    acks = acknowledged_writes(records)
    found = 0
    lost: list[AcknowledgedWrite] = []
    unverified: list[AcknowledgedWrite] = []
    for ack in acks:
        status = by_key.get(ack.key) if ack.key is not None else None
        if status is None and ack.order_id is not None:
            status = by_order.get(ack.order_id)
        if status == OK:
            found += 1
        elif status == FAIL:
            lost.append(ack)
        else:  # never read back, or the read-back could not tell
            unverified.append(ack)
    return DurabilityResult(
        acknowledged=len(acks), found=found, lost=len(lost), unverified=len(unverified), fault_t=fault_t,
        earliest_lost_ack_t=min((a.ack_t for a in lost), default=None),
        lost_keys=[a.label for a in sorted(lost, key=lambda a: a.ack_t)],
        unverified_keys=[a.label for a in sorted(unverified, key=lambda a: a.ack_t)],
    )


def measurements(result: DurabilityResult, *, rpo_target_s: float | None,
                 lost_writes_target: float = 0) -> list[Measurement]:
    """`rpo_s` and `lost_writes`, judged; a known loss is never hidden behind "inconclusive"."""
    detail = result.detail()
    lost_value: float | None = float(result.lost)
    lost_reason = None
    if result.acknowledged == 0:
        lost_value, lost_reason = None, "the load acknowledged no writes (no ok POST /orders with an order_id)"
    elif result.unverified and not result.lost:
        lost_value = None
        lost_reason = f"{result.unverified} of {result.acknowledged} acknowledged writes were not read back"
    elif result.unverified:
        lost_reason = (f"at least {result.lost} lost; {result.unverified} more acknowledged writes were not "
                       f"read back")
    lost_writes = judge("lost_writes", lost_value, "writes", lost_writes_target, "<=", definition=DEFINITION_LOST,
                        detail=detail, reason=lost_reason)

    rpo_value = result.rpo_lower_bound_s
    rpo_reason = None
    if result.acknowledged == 0:
        rpo_value, rpo_reason = None, lost_reason
    elif result.fault_t is None:
        rpo_reason = "the history has no fault injection, so there is no fault time to measure back from"
    elif result.unverified:
        exceeded = (rpo_value is not None and rpo_target_s is not None and result.lost > 0
                    and rpo_value > rpo_target_s)
        if exceeded:
            rpo_reason = (f"lower bound: {result.unverified} acknowledged writes were not read back and could "
                          f"have been lost earlier")
        else:
            rpo_value = None
            rpo_reason = f"{result.unverified} of {result.acknowledged} acknowledged writes were not read back"
    rpo = judge("rpo_s", rpo_value, "s", rpo_target_s, "<=", definition=DEFINITION_RPO, detail=detail,
                reason=rpo_reason)
    return [rpo, lost_writes]
