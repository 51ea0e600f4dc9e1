"""Recovery from backup: every acknowledged order sorted into kept, lost, given up or unverified (hand-built histories)."""

from __future__ import annotations

import pytest

from resilience.checkers import compute
from resilience.checkers.restore import (Order, acknowledged_orders, corruption_repaired, measurements, order_from,
                                         restore_outcome, restore_rpo_s, restore_run)
from resilience.config import Targets
from resilience.history import Record

DISASTER = 100.0
ITEMS = [{"item_id": 1, "qty": 2}]


def ack(t: float, key: str, total: int = 5000, items: list | None = None, latency: float = 0.05) -> Record:
    return Record(t, "load", "POST /orders", "ok", latency, key,
                  {"order_id": f"id-{key}", "seq": 1, "items": ITEMS if items is None else items, "total_paise": total})


def read(key: str, found: bool | None = True, total: int = 5000, order_id: str | None = None) -> Record:
    status = "unknown" if found is None else ("ok" if found else "fail")
    detail: dict = {"order_id": f"id-{key}", "ack_t": None}
    if found:
        detail["read"] = {"order_id": order_id or f"id-{key}", "items": ITEMS, "total_paise": total}
    return Record(400.0, "check", "readback", status, None, key, detail)


def rec(t: float, op: str, status: str = "info", **detail) -> Record:
    return Record(t, "recovery", op, status, None, None, detail)


def restore(kind: str = "time", target_t: float | None = 99.0, ok: bool = True, serving_t: float = 300.0,
            backup_age_s: float = 600.0) -> list[Record]:
    """A whole runbook: disaster at 100, detect 105, decide 110, restore 112-200, replay -230, whole 240, serving."""
    return [
        Record(DISASTER, "fault", "effect", "ok", None, None, {"signal": "rows gone"}),
        rec(105.0, "detect"), rec(110.0, "decide"),
        rec(111.0, "target", kind=kind, target_t=target_t if kind == "time" else None, target_utc=None, repo=1),
        rec(112.0, "restore-start", repo=1, backup_label="20261206-170000F", backup_type="full",
            backup_stop_t=DISASTER - backup_age_s, backup_age_s=backup_age_s),
        rec(200.0, "restore-done", "ok" if ok else "fail", seconds=88.0, bytes=880_000_000, throughput_mb_s=10.0,
            **({} if ok else {"error": "repo1: backup set unreadable"})),
        rec(230.0, "replay-done", "ok", outcome="reached" if kind == "time" else "latest", wal_bytes=64 * 2**20,
            wal_segments=4, replayed_to_utc=None),
        rec(240.0, "cluster-whole", "ok", members=3, leader="pg-1"),
        rec(serving_t, "serving"),
    ]


def by_name(records: list[Record], target: float = 300.0) -> dict:
    return {m.name: m for m in measurements(records, rpo_target_s=target)}


def test_a_clean_point_in_time_restore_keeps_everything_before_the_target_and_lists_what_it_gave_up():
    acks = [ack(float(t), f"k{t}") for t in range(10, 99, 10)] + [ack(150.0, "late1"), ack(160.0, "late2")]
    reads = [read(f"k{t}") for t in range(10, 99, 10)] + [read("late1", False), read("late2", False)]
    result = by_name(restore() + acks + reads)
    assert result["lost_writes"].value == 0 and result["lost_writes"].status == "met"
    assert result["given_up_writes"].value == 2 and result["given_up_writes"].detail["given_up_keys"] == ["late1", "late2"]
    assert result["given_up_writes"].target is None  # listed, never judged: not a breach
    assert result["rpo_s"].value == pytest.approx(1.0) and result["rpo_s"].status == "met"  # disaster - target
    assert result["unexpected_writes"].value == 0
    assert result["lost_writes"].detail["compared_content"] == 9


def test_archiving_stopped_before_the_disaster_loses_acknowledged_orders_and_breaches_the_rpo():
    # restore to the latest point, but WAL archiving stopped at t=50: everything acknowledged after it is gone
    acks = [ack(float(t), f"k{t}") for t in range(0, 100, 5)]
    reads = [read(f"k{t}", found=t + 0.05 < 50) for t in range(0, 100, 5)]
    result = by_name(restore(kind="latest") + acks + reads, target=30.0)
    assert result["lost_writes"].value == 10 and result["lost_writes"].status == "breached"
    assert result["given_up_writes"].value == 0
    assert result["rpo_s"].value == pytest.approx(DISASTER - 50.05) and result["rpo_s"].status == "breached"
    assert result["lost_writes"].detail["lost_keys"][0] == "k50 (missing)"


def test_an_order_read_back_different_is_lost_even_though_present():
    records = restore() + [ack(10.0, "a", total=5000), ack(20.0, "b"), read("a", total=4000), read("b")]
    result = by_name(records)
    assert result["lost_writes"].value == 1 and result["lost_writes"].detail["lost_keys"] == ["a (total_paise differs)"]
    assert result["rpo_s"].value == pytest.approx(DISASTER - 10.05)


def test_orders_acknowledged_after_serving_must_be_there():
    records = restore(serving_t=300.0) + [ack(320.0, "after"), read("after", False)]
    result = by_name(records)
    assert result["lost_writes"].value == 1 and result["given_up_writes"].value == 0


def test_a_failed_restore_is_inconclusive_never_a_pass():
    records = restore(ok=False) + [ack(10.0, "a"), read("a")]
    result = by_name(records)
    assert all(m.status == "inconclusive" for m in result.values())
    assert "the restore failed: repo1: backup set unreadable" in result["rpo_s"].detail["reason"]
    assert result["backup_age_s"].detail["recorded"] == 600.0


def test_no_restore_is_inconclusive():
    records = [Record(DISASTER, "fault", "effect", "ok", None, None, {}), ack(10.0, "a"), read("a")]
    result = by_name(records)
    assert all(m.status == "inconclusive" for m in result.values())
    assert "no restore happened" in result["lost_writes"].detail["reason"]


def test_no_readback_is_inconclusive():
    records = restore() + [ack(10.0, "a"), ack(20.0, "b"), read("a", None), read("b", None)]
    result = by_name(records)
    assert result["lost_writes"].status == "inconclusive" and result["rpo_s"].status == "inconclusive"
    assert "could not run" in result["lost_writes"].detail["reason"]
    assert result["unexpected_writes"].status == "inconclusive"


def test_a_known_loss_breaching_the_target_is_not_hidden_by_unverified_orders():
    records = restore(kind="latest") + [ack(1.0, "a"), ack(2.0, "b"), read("a", False), read("b", None)]
    result = by_name(records, target=60.0)
    assert result["rpo_s"].status == "breached" and "lower bound" in result["rpo_s"].detail["reason"]
    assert result["lost_writes"].value == 1 and result["lost_writes"].status == "breached"


def test_unexpected_and_indeterminate_orders():
    records = restore() + [ack(10.0, "a"), read("a"),
                           Record(50.0, "load", "POST /orders", "fail", 0.1, "refused", {"code": 503}),
                           Record(55.0, "load", "POST /orders", "fail", 0.1, "rejected", {"code": 422}),
                           Record(60.0, "load", "POST /orders", "unknown", 10.0, "timedout", {"error": "timeout"})]
    records += [Record(400.0, "check", "readback-sent", "ok", None, key, {"read": {"order_id": "x"}})
                for key in ("refused", "rejected", "timedout", "never-sent")]
    outcome = restore_outcome(records, restore_run(records))
    # a 503 or a timeout may have been committed without an answer: indeterminate; a 422 was a definite no
    assert outcome.unexpected == ["never-sent", "rejected"] and outcome.indeterminate == 2
    assert by_name(records)["unexpected_writes"].status == "breached"


def test_restore_figures_come_from_the_recovery_records():
    result = by_name(restore() + [ack(10.0, "a"), read("a")])
    assert result["backup_age_s"].value == 600.0
    assert result["restore_throughput_mb_s"].value == 10.0
    assert result["wal_replayed_bytes"].value == 64 * 2**20
    assert result["wal_replayed_bytes"].detail["wal_segments"] == 4
    assert result["runbook_s"].value == 200.0  # serving 300 - disaster 100
    phases = {p["name"]: p["seconds"] for p in result["runbook_s"].detail["phases"]}
    assert phases == {"detect": 5.0, "decide": 5.0, "restore": 88.0, "replay": 30.0, "re-form": 10.0,
                      "serving": 60.0}


def test_restore_run_reads_the_target_and_backup_set():
    run = restore_run(restore())
    assert run.problem is None and run.target_kind == "time" and run.target_t == 99.0
    assert run.backup_label == "20261206-170000F" and run.repo == 1 and run.serving_t == 300.0
    assert restore_run(restore()[:-1]).problem.startswith("the API was not seen serving")


def test_rpo_of_a_point_in_time_restore_is_at_least_disaster_minus_target():
    run = restore_run(restore(target_t=40.0))
    outcome = restore_outcome(restore(target_t=40.0), run)
    assert restore_rpo_s(outcome, run) == pytest.approx(60.0)
    latest = restore_run(restore(kind="latest"))
    assert restore_rpo_s(restore_outcome([], latest), latest) == 0.0


def test_rewritten_orders_must_come_back_as_they_were():
    corrupted = rec(100.0, "corrupted", mode="rewrite", count=2, order_ids=["id-a", "id-b"],
                    rewritten={"id-a": {"items": ITEMS, "total_paise": 1}, "id-b": {"items": ITEMS, "total_paise": 1}})
    records = restore() + [corrupted, ack(10.0, "a"), ack(20.0, "b"), read("a"), read("b", total=1)]
    result = by_name(records)
    assert result["lost_writes"].value == 1
    assert result["lost_writes"].detail["corrupted"] == {"mode": "rewrite", "touched": 2, "still_wrong": 1,
                                                         "still_wrong_ids": ["id-b"], "unverified": 0}
    run = restore_run(records)
    assert corruption_repaired(restore_outcome(records, run), run)["still_wrong"] == 1


def test_order_content_comparison_ignores_what_either_side_did_not_record():
    acked = order_from("k", {"order_id": "o", "items": ITEMS, "total_paise": 5000})
    assert acked.differs_from(order_from("k", {"order_id": "o"})) is None  # an older platform: presence only
    assert acked.differs_from(order_from("k", {"order_id": "p", "items": ITEMS, "total_paise": 5000})) == "order_id"
    assert acked.differs_from(order_from("k", {"order_id": "o", "items": [{"item_id": 1, "qty": 3}],
                                               "total_paise": 5000})) == "items"
    assert order_from("k", {"order_id": 7, "items": "junk"}) == Order("k", "7", None, None)


def test_acknowledged_orders_are_ok_posts_with_an_order_id_and_a_key():
    records = [ack(1.0, "a", latency=0.5), Record(2.0, "load", "POST /orders", "ok", 0.1, "b", {"seq": 1}),
               Record(3.0, "load", "POST /orders", "fail", 0.1, "c", {"code": 500})]
    assert [(o.key, o.ack_t, o.total_paise) for o in acknowledged_orders(records)] == [("a", 1.5, 5000)]


def test_compute_lists_restore_and_it_replaces_the_failover_rpo():
    records = restore() + [ack(10.0, "a"), read("a")]
    names = [m.name for m in compute(records, targets=Targets(), measures=["rpo", "restore"])]
    assert names.count("rpo_s") == 1 and names.count("lost_writes") == 1 and "given_up_writes" in names


def test_without_a_fault_effect_the_disaster_time_comes_from_the_runbook():
    records = [r for r in restore() if r.source != "fault"]
    records = [Record(r.t, r.source, r.op, r.status, None, None, {**(r.detail or {}), "disaster_t": 98.0})
               if r.op == "detect" else r for r in records]
    assert restore_run(records).disaster_t == 98.0


def test_a_replay_that_ended_before_the_target_is_measured_not_excused():
    # archiving stopped at t=50: the point-in-time restore to 99 replays only to 50, and says so (replay-done fail)
    records = [Record(r.t, r.source, r.op, "fail", None, None, {**(r.detail or {}), "outcome": "ended-early"})
               if r.op == "replay-done" else r for r in restore(target_t=99.0)]
    records += [ack(float(t), f"k{t}") for t in range(0, 100, 10)]
    records += [read(f"k{t}", found=t < 50) for t in range(0, 100, 10)]
    result = by_name(records, target=30.0)
    assert result["lost_writes"].value == 5 and result["lost_writes"].status == "breached"
    assert result["rpo_s"].value == pytest.approx(DISASTER - 50.05) and result["rpo_s"].status == "breached"
    assert result["wal_replayed_bytes"].detail["replay_outcome"] == "ended-early"


def test_rpo_on_a_run_that_restored_is_measured_by_the_restore_checker():
    records = restore() + [ack(10.0, "a"), ack(150.0, "late"), read("a"), read("late", False)]
    measured = {m.name: m for m in compute(records, targets=Targets(), measures=["rto", "rpo"])}
    assert measured["lost_writes"].value == 0 and measured["given_up_writes"].value == 1  # not lost: given up
    failover = [ack(10.0, "a"), read("a"), Record(5.0, "fault", "inject", "ok", None, None, {})]
    assert "given_up_writes" not in {m.name for m in compute(failover, targets=Targets(), measures=["rpo"])}


def test_a_latest_restore_gives_up_what_was_never_archived_and_the_rpo_says_how_much():
    # database-loss: restore to the latest point; the replay applied commits up to t=50 (WAL archived
    # asynchronously, the rest never reached a repository): orders acknowledged after 50 are given up, not lost,
    # and the RPO (disaster - 50) is judged against its target
    acks = [ack(float(t), f"k{t}") for t in range(0, 100, 5)]
    reads = [read(f"k{t}", found=t + 0.05 < 50) for t in range(0, 100, 5)]
    records = [r if r.op != "replay-done" else rec(r.t, "replay-done", "ok", outcome="latest", wal_bytes=1,
                                                     wal_segments=1, replayed_to_t=50.0)
               for r in restore(kind="latest")]
    met = by_name(records + acks + reads, target=300.0)
    assert met["lost_writes"].value == 0 and met["given_up_writes"].value == 10
    assert met["rpo_s"].value == pytest.approx(DISASTER - 50.0) and met["rpo_s"].status == "met"
    breached = by_name(records + acks + reads, target=30.0)
    assert breached["rpo_s"].status == "breached" and breached["given_up_writes"].value == 10
    # an order acknowledged before the point recovered to and missing is lost, whatever the kind of restore
    missing_early = [read("k20", found=False) if r.key == "k20" else r for r in reads]
    assert by_name(records + acks + missing_early)["lost_writes"].value == 1
