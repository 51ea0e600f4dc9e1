"""checkers/detection.py on hand-built histories: detection, clearing, missed and false alerts."""

import math

from resilience.checkers import compute
from resilience.checkers.detection import detect, measurements
from resilience.checkers.measurement import verdict
from resilience.config import Targets
from resilience.history import Record

CONFIG = {"scrape_s": 1.0, "evaluation_s": 1.0, "group_wait_s": 0.0, "group_interval_s": 1.0, "scale": 30,
          "for_s": {"DatabaseDown": 2.0, "LowAvailability": 4.0, "RedisDown": 4.0}}


def alert(t: float, op: str, name: str, **detail: object) -> Record:
    return Record(t, "alert", op, "info", detail={"alert": name, **detail})


def history(expected: list[str] | None, alerts: list[Record], *, watching: bool = True,
            outage: tuple[float, float] = (30.5, 38.0)) -> list[Record]:
    """steady [0,30) · inject at 30 · rollback 40 · recovery to 70; a request every 0.05 s, failing in `outage`."""
    records = [Record(0.0, "phase", "steady", "info"), Record(30.0, "phase", "fault", "info"),
               Record(30.0, "fault", "inject", "ok"), Record(40.0, "fault", "rollback", "ok"),
               Record(40.0, "phase", "recovery", "info"), Record(70.0, "phase", "end", "info")]
    if watching:
        records.append(Record(0.0, "alert", "watching", "info", detail=dict(CONFIG)))
    if expected is not None:
        records.append(Record(0.0, "alert", "expected", "info", detail={"alerts": expected}))
    for i in range(1400):
        t = i * 0.05
        ok = not (outage[0] <= t < outage[1])
        records.append(Record(t, "load", "POST /orders" if i % 4 == 0 else "GET /menu", "ok" if ok else "fail", 0.01,
                              f"k{i}" if i % 4 == 0 else None, {"order_id": i, "seq": i} if ok and i % 4 == 0 else None))
    return records + alerts


DB_DOWN = [alert(31.5, "pending", "DatabaseDown"), alert(34.2, "rule-firing", "DatabaseDown"),
           alert(33.9, "firing", "DatabaseDown", fired_s_before=0.4), alert(39.0, "resolved", "DatabaseDown")]


def by_name(records: list[Record]) -> dict:
    result = detect(records, fault_t=30.0, recovered_t=38.1)
    return {m.name: m for m in measurements(result)}


def test_detection_from_impact_with_stages_and_bound() -> None:
    m = by_name(history(["DatabaseDown"], DB_DOWN))
    d = m["detection_s"]
    assert d.value == 3.39 and d.target == 4.0 and d.status == "met"  # 33.9 - 30.51 <= 1 + 1 + 2 + 0
    assert d.detail["from_injection_s"] == 3.9
    stages = d.detail["stages"]
    assert stages["impact_after_s"] == 0.51 and stages["pending_after_s"] == 0.99  # completions: t + 10 ms
    assert stages["firing_after_s"] == 2.0 and stages["notified_after_s"] == 0.4
    assert m["alert_cleared_s"].value == 0.9 and m["alert_cleared_s"].status == "met"
    early = detect(history(["DatabaseDown"], DB_DOWN), fault_t=30.0, recovered_t=39.5)
    assert {x.name: x for x in measurements(early)}["alert_cleared_s"].value == -0.5  # cleared before the clients saw it
    assert m["missed_alerts"].value == 0 and m["missed_alerts"].status == "met"
    assert m["false_alerts"].value == 0 and m["false_alerts"].status == "met"


def test_slower_than_the_bound_is_a_breach() -> None:
    late = [alert(31.5, "pending", "DatabaseDown"), alert(36.0, "firing", "DatabaseDown"),
            alert(39.0, "resolved", "DatabaseDown")]
    assert by_name(history(["DatabaseDown"], late))["detection_s"].status == "breached"


def test_an_expected_alert_that_never_fires_is_missed() -> None:
    """What removing an expected alert from the rules does to a run: it never fires, the run fails."""
    m = by_name(history(["DatabaseDown", "LowAvailability"], DB_DOWN))
    assert m["missed_alerts"].value == 1 and m["missed_alerts"].status == "breached"
    assert m["missed_alerts"].detail["missed"] == ["LowAvailability"]
    m = by_name(history(["DatabaseDown"], []))
    assert m["missed_alerts"].status == "breached" and m["detection_s"].value == math.inf
    assert m["detection_s"].status == "breached"
    assert verdict(list(m.values())) == "fail"


def test_alerts_in_the_steady_phase_or_already_firing_are_false() -> None:
    early = [alert(10.0, "firing", "RedisDown"), alert(0.0, "pending", "HighLatency", before_start=True)]
    m = by_name(history(["DatabaseDown"], DB_DOWN + early))
    assert m["false_alerts"].value == 2 and m["false_alerts"].status == "breached"


def test_an_absorbed_fault_must_raise_nothing() -> None:
    m = by_name(history([], DB_DOWN))
    assert m["false_alerts"].value == 1 and m["false_alerts"].status == "breached"
    assert m["detection_s"].status == "inconclusive" and m["missed_alerts"].status == "met"
    quiet = by_name(history([], []))
    assert quiet["false_alerts"].status == "met" and quiet["missed_alerts"].status == "met"


def test_an_alert_still_firing_at_the_end_never_cleared() -> None:
    m = by_name(history(["DatabaseDown"], DB_DOWN[:-1]))
    assert m["alert_cleared_s"].value == math.inf and m["alert_cleared_s"].status == "breached"


def test_unreachable_monitoring_is_inconclusive_never_a_pass() -> None:
    down = [Record(35.0, "alert", "unreachable", "info", detail={"what": "prometheus", "error": "refused"})]
    for records in (history(["DatabaseDown"], DB_DOWN + down), history(["DatabaseDown"], DB_DOWN + down, watching=False)):
        m = by_name(records)
        assert {x.status for x in m.values()} == {"inconclusive"}
        assert verdict(list(m.values())) != "pass"


def test_a_target_that_reads_no_alerts_gets_no_detection_measurements() -> None:
    """Kubernetes and AWS runs of db-failover / zone-failure: no alert source, so nothing judged (not inconclusive)."""
    assert detect(history(["DatabaseDown"], [], watching=False), fault_t=30.0, recovered_t=38.1) is None


def test_no_impact_seen_measures_from_the_injection() -> None:
    m = by_name(history(["DatabaseDown"], DB_DOWN, outage=(0.0, 0.0)))
    assert m["detection_s"].value == 3.9 and m["detection_s"].detail["from"].startswith("injection")


def test_compute_adds_detection_only_when_the_experiment_named_alerts() -> None:
    named = compute(history(["DatabaseDown"], DB_DOWN), targets=Targets(), measures=["rto"])
    assert [m.name for m in named] == ["rto_s", "detection_s", "alert_cleared_s", "missed_alerts", "false_alerts"]
    cleared = next(m for m in named if m.name == "alert_cleared_s")
    assert cleared.detail["recovered_t"] is not None and cleared.value < 1.5
    assert [m.name for m in compute(history(None, DB_DOWN), targets=Targets(), measures=["rto"])] == ["rto_s"]


def test_experiments_name_known_alerts_only() -> None:
    import pytest

    from resilience.errors import UserError
    from resilience.experiments import _alerts

    assert _alerts(None, "x") is None and _alerts([], "x") == ()
    assert _alerts(["DatabaseDown"], "x") == ("DatabaseDown",)
    with pytest.raises(UserError, match="DatabaseDown"):
        _alerts(["DatabseDown"], "x")


def test_an_experiment_target_judges_detection_and_clearing_and_the_report_states_it() -> None:
    from resilience.reports.run import fmt_target

    records = history(["DatabaseDown"], DB_DOWN)  # detection 3.39 s (bound 4 s), cleared 0.9 s after recovery
    # targets for production windows; this history's stack scales its windows by 30 (CONFIG): / 30
    tight = {m.name: m for m in compute(records, targets=Targets(detection_s=90.0, alert_cleared_s=15.0),
                                        measures=["rto"])}
    d, c = tight["detection_s"], tight["alert_cleared_s"]
    assert d.value == 3.39 and d.target == 3.0 and d.status == "breached"  # over the experiment's target / 30
    assert d.detail["bound_s"] == 4.0 and d.detail["within_bound"] is True  # the bound is still reported
    assert "targets.detection_s" in d.detail["judged_against"]
    assert fmt_target(d) == "<= 3 s" and fmt_target(c) == "<= 0.5 s"
    assert c.status == "breached" and "targets.alert_cleared_s" in c.detail["judged_against"]
    assert verdict(list(tight.values())) == "fail"
    loose = {m.name: m for m in compute(records, targets=Targets(detection_s=120.0, alert_cleared_s=90.0),
                                        measures=["rto"])}
    assert loose["detection_s"].status == "met" and loose["alert_cleared_s"].status == "met"
    default = {m.name: m for m in compute(records, targets=Targets(), measures=["rto"])}
    assert default["detection_s"].target == 4.0 and default["alert_cleared_s"].target is None  # the bound; must clear


def test_the_detection_targets_are_settable_and_validated() -> None:
    import pytest

    from resilience.config import Settings, override_targets
    from resilience.errors import UserError

    targets = override_targets(Settings().targets, {"detection_s": 4, "alert_cleared_s": 3}, "--set-target")
    assert (targets.detection_s, targets.alert_cleared_s) == (4, 3)
    with pytest.raises(UserError, match="detection_s"):
        override_targets(Settings().targets, {"detection_s": -1}, "--set-target")


def test_the_catalogue_experiments_with_alerts_set_a_detection_target_within_their_bound() -> None:
    """Targets are for production windows (kube-prometheus-stack: scrape and evaluation 30 s, group_wait 30 s,
    group_interval 5 m): no tighter than what that configuration implies there, and / 30 (the local windows)
    no tighter than what the local configuration implies."""
    from resilience.config import Settings
    from resilience.experiments import catalogue, load
    from resilience.targets.local import alert_rules, monitoring

    production_for = alert_rules.windows(alert_rules.load())
    local_for = alert_rules.windows(alert_rules.scaled(alert_rules.load()))
    specs = [spec for spec in (load(str(p)) for p in catalogue()) if spec.alerts]
    assert {spec.name for spec in specs} >= {"db-failover", "zone-failure"}
    for spec in specs:
        targets = spec.targets(Settings().targets)
        first = min(spec.alerts or (), key=lambda a: production_for[a])  # the quickest expected alert
        assert targets.detection_s >= 30 + 30 + production_for[first] + 30, spec.path
        local = monitoring.SCRAPE_S + monitoring.EVALUATION_S + local_for[first] + monitoring.GROUP_WAIT_S
        assert targets.detection_s / alert_rules.SCALE >= local, spec.path
        assert targets.alert_cleared_s >= 30 + 30 + 300, spec.path
        assert targets.alert_cleared_s / alert_rules.SCALE >= \
            monitoring.SCRAPE_S + monitoring.EVALUATION_S + monitoring.GROUP_INTERVAL_S, spec.path


def test_a_scaled_stack_is_judged_against_the_targets_scaled_like_its_windows() -> None:
    from resilience.checkers.detection import AlertTimeline, DetectionResult, measurements
    line = AlertTimeline("DatabaseDown", pending_t=11.0, rule_firing_t=13.0, notified_t=15.5, resolved_t=30.0)
    config = {"scale": 30, "scrape_s": 1.0, "evaluation_s": 1.0, "group_wait_s": 0.0, "for_s": {"DatabaseDown": 2.0}}
    result = DetectionResult(("DatabaseDown",), config, None, 10.0, 10.2, 25.0, line, {"DatabaseDown": line})
    found = {m.name: m for m in measurements(result, target_s=150.0, cleared_target_s=360.0)}
    assert found["detection_s"].target == 5.0 and found["detection_s"].status == "breached"  # 5.3 s > 150 / 30
    assert found["detection_s"].detail["target_scale"] == 30.0
    assert found["alert_cleared_s"].target == 12.0 and found["alert_cleared_s"].status == "met"
    unscaled = {m.name: m for m in measurements(DetectionResult(("DatabaseDown",), {**config, "scale": None}, None, 10.0,
                                                                10.2, 25.0, line, {"DatabaseDown": line}),
                                                target_s=150.0)}
    assert unscaled["detection_s"].target == 150.0 and unscaled["detection_s"].status == "met"
