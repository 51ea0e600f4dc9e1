"""One writable primary at every moment: the split-brain half of the Jepsen partition test.

During a partition fault the target polls every PostgreSQL member's `pg_is_in_recovery()`
directly (not through the proxy) in rounds and records each round as a `platform`/`pg_writable`
record: {"members": {name: "writable" | "replica" | "unreachable"}, "writable": [...]}. A round is
one moment (its members are asked concurrently, each within a second). Two writable members in
one round is a split brain: writes could be accepted on both sides. The figure is judged against 0.

Also reported, from the same rounds: how long after the fault took effect the primary of the last
round before it (else of the first round) stopped answering "writable" (`primary_demoted_s`: Patroni demotes a primary that
cannot renew its leader lock), and when another member first answered "writable"
(`new_primary_s`). Unreachable answers are counted, not guessed: a member that did not answer
might have been writable, and the detail says how many rounds had one.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..history import PLATFORM, Record
from .measurement import Measurement, judge

WRITABLE_OP = "pg_writable"

DEFINITION = (
    "Two writable primaries = the number of polling rounds in which two or more PostgreSQL members answered "
    "pg_is_in_recovery() = false (each round asks every member directly, concurrently, within 1 s; the "
    "target writes one platform/pg_writable record per round). Must be 0. A run without rounds is "
    "inconclusive. Rounds where a member did not answer are counted in the detail (that member's state is "
    "unknown for that moment)."
)
DEMOTED_DEFINITION = (
    "Primary demoted = time from the fault taking effect until the member that was writable in the last round "
    "before it first answered anything but 'writable' (a replica, or no answer while Patroni restarts it); "
    "new primary = until another member first answered 'writable'. From the platform/pg_writable rounds."
)


def rounds(records: Sequence[Record]) -> list[Record]:
    return sorted((r for r in records if r.source == PLATFORM and r.op == WRITABLE_OP), key=lambda r: r.t)


def _answers(record: Record) -> dict[str, str]:
    return dict((record.detail or {}).get("members") or {})


def measurements(records: Sequence[Record], *, fault_t: float | None) -> list[Measurement]:
    """`two_writable_primaries` (judged: 0) and `primary_demoted_s`, `new_primary_s` (reported)."""
    polled = rounds(records)
    if not polled:
        reason = "no platform/pg_writable rounds in the history: the target did not watch the primaries"
        return [judge("two_writable_primaries", None, "rounds", 0, "<=", definition=DEFINITION, reason=reason)]
    split = [r for r in polled if sum(a == "writable" for a in _answers(r).values()) >= 2]
    blind = [r for r in polled if "unreachable" in _answers(r).values()]
    gaps = [b.t - a.t for a, b in zip(polled, polled[1:])]
    detail: dict[str, Any] = {
        "rounds": len(polled), "rounds_with_an_unreachable_member": len(blind),
        "first_round_t": polled[0].t, "last_round_t": polled[-1].t,
        "longest_gap_between_rounds_s": round(max(gaps), 3) if gaps else None,
        "split_brain_rounds_t": [r.t for r in split[:20]],
    }
    result = [judge("two_writable_primaries", float(len(split)), "rounds", 0, "<=", definition=DEFINITION,
                    detail=detail)]
    return result + handover(polled, fault_t)


def handover(polled: list[Record], fault_t: float | None) -> list[Measurement]:
    """When the old primary stopped being writable and a new one started, after the fault took effect."""
    if fault_t is None:
        return []
    before = [r for r in polled if r.t < fault_t]
    reference = before[-1] if before else polled[0]  # the watch starts just before the cut, the effect's time
    old = [n for n, a in _answers(reference).items() if a == "writable"]  # is the call's start: often no round before
    if len(old) != 1:
        reason = "the first round (or the last before the fault) did not show exactly one writable primary"
        return [judge("primary_demoted_s", None, "s", None, definition=DEMOTED_DEFINITION, reason=reason)]
    after = [r for r in polled if r.t >= fault_t]
    demoted = next((r for r in after if _answers(r).get(old[0]) != "writable"), None)
    promoted = next((r for r in after if any(a == "writable" for n, a in _answers(r).items() if n != old[0])), None)
    out = []
    for name, found, what in (("primary_demoted_s", demoted, f"{old[0]} answered 'writable' in every round after "
                                                              f"the fault"),
                              ("new_primary_s", promoted, "no other member answered 'writable' after the fault")):
        detail = {"old_primary": old[0], "round_t": None if found is None else found.t,
                  "answers": None if found is None else _answers(found)}
        out.append(judge(name, None if found is None else round(found.t - fault_t, 3), "s", None,
                         definition=DEMOTED_DEFINITION, detail=detail, reason=None if found else what))
    return out
