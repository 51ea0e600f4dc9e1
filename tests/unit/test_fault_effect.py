"""A fault counts from when it took effect: the effect watch's records, and what the checkers make of them."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from resilience.checkers import compute
from resilience.checkers.measurement import INCONCLUSIVE, verdict
from resilience.checkers.windows import fault_time
from resilience.config import Targets
from resilience.effect_watch import EffectWatch, too_short
from resilience.history import FAULT, History, Record
from resilience.targets.fault_module import Documented, Effect

HOLD_S = 2.0


def watch(history: History) -> tuple[EffectWatch, list[str]]:
    said: list[str] = []
    return EffectWatch(history, said.append, poll_s=0.01), said


def effects(history: History) -> list[Record]:
    return [r for r in history.records if r.source == FAULT and r.op == "effect"]


def test_a_fault_acting_in_its_call_is_in_effect_from_the_call_once_its_signal_shows() -> None:
    history = History()
    looks = iter([None, None, {"leader": "postgres-2"}])
    w, said = watch(history)
    w.start("fail_over_database", 0.0, [Effect("the Patroni leader changed", 5.0, lambda: next(looks))])
    time.sleep(0.2)  # three looks, 0.01 s apart
    w.stop()
    [record] = effects(history)
    assert record.status == "ok" and record.t == 0.0  # the kill happened in the call
    assert record.detail["observed"] == {"leader": "postgres-2"} and record.detail["seen_t"] > 0  # type: ignore[index]
    assert said and said[0].startswith("fault took effect: the Patroni leader changed")


def test_an_asynchronous_failover_is_in_effect_from_when_the_platform_says_its_outage_began() -> None:
    history = History()
    began = history.origin_monotonic + 0.02
    w, _ = watch(history)
    time.sleep(0.05)
    w.start("fail_over_database", 0.0, [Effect("the RDS writer changed", 5.0,
                                               lambda: {"writer": "b", "began_monotonic": began}, in_call=False)])
    w.stop()
    [record] = effects(history)
    assert abs(record.t - 0.02) < 1e-6 and "began_monotonic" not in record.detail["observed"]  # type: ignore[index]


def test_an_effect_not_seen_by_its_deadline_is_a_failed_effect_with_the_reason() -> None:
    history = History()
    w, said = watch(history)
    w.start("fail_over_database", 0.0, [Effect("no writer change", 0.1, lambda: None, in_call=False)])
    time.sleep(0.3)
    [record] = effects(history)
    assert record.status == "fail"
    assert record.detail["reason"] == ("fail_over_database was requested at t=0.0 s but no writer change was not "  # type: ignore[index]
                                       "observed within 0.1 s")
    assert said[-1].startswith("FAULT NOT SEEN")


def test_a_run_that_ends_before_the_deadline_says_its_profile_was_too_short() -> None:
    history = History()
    w, _ = watch(history)
    w.start("stop_cache", 0.0, [Effect("the ElastiCache primary changed", 60.0, lambda: None)])
    w.stop()
    [record] = effects(history)
    assert record.status == "fail" and "the profile is too short" in record.detail["reason"]  # type: ignore[index]


def test_a_fault_without_a_signal_is_in_effect_at_its_call() -> None:
    history = History()
    w, _ = watch(history)
    w.start("pause_replicas", 3.0, [])
    assert [(r.status, r.t) for r in effects(history)] == [("ok", 3.0)]


# -- the checkers -------------------------------------------------------------------------------------------

def rows(until: float, down: tuple[float, float] | None = None) -> list[Record]:
    """A request every 0.05 s from 0 to `until`, failing inside `down`; every 4th an order."""
    out = []
    for i in range(int(until / 0.05)):
        t = round(i * 0.05, 3)
        bad = down is not None and down[0] <= t < down[1]
        write = i % 4 == 0
        out.append(Record(t, "load", "POST /orders" if write else "GET /menu", "fail" if bad else "ok", 0.01,
                          f"k{i}" if write else None, None if bad or not write else {"order_id": f"o{i}"}))
    return out


def harness(inject_t: float, effect: Record | None) -> list[Record]:
    out = [Record(1.0, "phase", "steady", "info"),
           Record(inject_t, FAULT, "inject", "ok", detail={"capability": "fail_over_database"}),
           Record(inject_t, "phase", "fault", "info"), Record(30.0, "phase", "recovery", "info"),
           Record(40.0, "phase", "end", "info")]
    return out + ([effect] if effect else [])


TARGETS = Targets(rto_s=30.0, rto_hold_s=HOLD_S)


def rto(records: list[Record]) -> Any:
    return next(m for m in compute(records, targets=TARGETS, measures=["availability", "rto"]) if m.name == "rto_s")


def test_an_outage_that_starts_after_the_call_is_measured_from_the_effect_and_was_rto_0_from_the_call() -> None:
    load = rows(40.0, down=(15.0, 20.0))  # the call at 10 s, the outage from 15 s (after a 2 s hold window)
    before = rto(harness(10.0, None) + load)
    assert before.value == 0.0  # the old rule: healthy for the first hold window after the request
    effect = Record(15.0, FAULT, "effect", "ok", detail={"capability": "fail_over_database", "seen_t": 20.0,
                                                         "requested_t": 10.0, "recovers_after": True})
    now = rto(harness(10.0, effect) + load)
    assert 5.0 <= now.value < 5.2 and now.detail["fault_t"] == 15.0
    assert "taking effect" in now.definition


def test_a_failover_cannot_recover_before_its_new_leader_was_seen() -> None:
    load = rows(40.0)  # the service never noticed
    effect = Record(10.0, FAULT, "effect", "ok", detail={"capability": "stop_cache", "seen_t": 16.0,
                                                         "requested_t": 10.0, "recovers_after": True})
    assert 5.9 <= rto(harness(10.0, effect) + load).value <= 6.1


def test_an_effect_never_seen_makes_the_run_inconclusive_never_rto_0() -> None:
    missed = Record(40.0, FAULT, "effect", "fail", detail={
        "capability": "fail_over_database", "reason": "fail_over_database was requested at t=10.0 s but the RDS "
        "writer changed was not observed within 180 s"})
    records = harness(10.0, missed) + rows(40.0)
    assert fault_time(records) is None
    measured = compute(records, targets=TARGETS, measures=["availability", "rto"])
    judged = [m for m in measured if m.phase != "steady" and m.target is not None]
    assert judged and all(m.status == INCONCLUSIVE for m in judged)
    assert "was not observed within 180 s" in rto(records).detail["reason"]
    assert verdict(measured) == "inconclusive"


def test_a_fault_cut_short_is_inconclusive() -> None:
    cut = Record(12.0, FAULT, "cut-short", "fail", detail={"capability": "lose_zone",
                                                          "reason": "the fault activity ended early: boom"})
    measured = compute(harness(10.0, None) + [cut] + rows(40.0), targets=TARGETS, measures=["availability", "rto"])
    assert verdict(measured) == "inconclusive"
    assert rto(harness(10.0, None) + [cut] + rows(40.0)).detail["reason"] == "the fault activity ended early: boom"


def test_the_judged_fault_window_starts_from_the_effect() -> None:
    load = rows(40.0, down=(10.0, 15.0))  # failing between the request and the effect: not the fault's doing
    effect = Record(15.0, FAULT, "effect", "ok", detail={"capability": "x", "seen_t": 15.0, "requested_t": 10.0})
    measured = compute(harness(10.0, effect) + load, targets=TARGETS, measures=["availability"])
    fault = next(m for m in measured if m.phase == "fault")
    assert fault.value == 1.0


def test_dry_run_says_when_a_profile_is_too_short_for_the_documented_failover() -> None:
    spec = SimpleNamespace(profile="short", durations=SimpleNamespace(fault_s=22.0, recovery_s=15.0))
    documented = Documented(35.0, "RDS Multi-AZ DB cluster failover: typically under 35 s")
    [line] = too_short(spec, 10.0, {"fail_over_database": [documented]})
    assert line.startswith("warning: profile short is too short for fail_over_database") and "45 s" in line
    long_enough = SimpleNamespace(profile="full", durations=SimpleNamespace(fault_s=40.0, recovery_s=30.0))
    assert too_short(long_enough, 10.0, {"fail_over_database": [documented]}) == []


def test_an_effect_that_cannot_be_watched_is_a_failed_effect() -> None:
    history = History()
    w, _ = watch(history)

    def broken() -> list[Effect]:
        raise RuntimeError("DescribeDBClusters: AccessDenied")
    w.start("fail_over_database", 1.0, broken)
    [record] = effects(history)
    assert record.status == "fail" and "could not be watched: RuntimeError: DescribeDBClusters" in \
        record.detail["reason"]  # type: ignore[index]


def test_every_fault_module_that_breaks_something_names_its_effect() -> None:
    """Each target's fault modules declare the signal that shows the fault took effect (hold_replication's is its
    kill's: a fail_over_database of its own)."""
    from resilience.targets.aws.faults import FAULTS as AWS
    from resilience.targets.fault_module import FaultModule
    from resilience.targets.kubernetes.faults import FAULTS as KUBERNETES
    from resilience.targets.local.faults import FAULTS as LOCAL
    expected = {LOCAL: {"fail_over_database", "stop_cache", "lose_zone", "kill_replicas", "pause_replicas",
                        "corrupt_orders", "lose_database", "lose_region",
                        "delay_network", "drop_packets", "blackhole_network", "reject_network",
                        "partition_primary", "starve_cpu",
                        "limit_bandwidth", "pressure_memory", "throttle_disk_io"},
                KUBERNETES: {"lose_zone", "kill_replicas", "fail_over_database",
                             "delay_network", "drop_packets", "blackhole_network"},  # issue 21: Chaos Mesh
                AWS: {"fail_over_database", "stop_cache", "lose_zone",
                      "delay_network", "drop_packets", "blackhole_network"}}  # issue 21: FIS EKS pod actions
    for table, faults in expected.items():
        declared = {name for name, module in table.load().modules.items()
                    if type(module).effect is not FaultModule.effect}
        assert declared == faults, (table.nemesis, declared)
