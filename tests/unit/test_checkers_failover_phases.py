"""checkers/failover_phases.py: the RTO of a failover taken apart, against the configuration's bounds."""

from resilience.checkers.failover_phases import config_problems, measurements, phases
from resilience.history import Record

CONFIG = {"patroni": {"ttl_s": 10, "loop_wait_s": 1, "retry_timeout_s": 4}, "sentinel_down_after_s": 1.0,
          "look_s": 1.0, "haproxy": {"inter_s": 0.5, "rise": 2, "fall": 2}}
SIGNAL_CONFIG = {**CONFIG, "sentinel_failover_timeout_s": 3.0, "api_ready_interval_s": 0.5}


def history(watching: bool = True) -> list[Record]:
    """The supervisor's looks only (no `signal` records): the fall-back."""
    records = [Record(20.0, "fault", "inject", "ok"),
               Record(19.0, "controller", "replicas", "info", detail={"ready": 3}),
               Record(21.0, "controller", "replicas", "info", detail={"ready": 0}),
               Record(24.0, "platform", "failover", "info", detail={"component": "redis", "new": "redis-2"}),
               Record(30.5, "platform", "failover", "info", detail={"component": "postgres", "new": "postgres-2"}),
               Record(31.6, "controller", "replicas", "info", detail={"ready": 3}),
               Record(30.8, "load", "POST /orders", "fail", 0.01, "k1"),
               Record(31.7, "load", "POST /orders", "ok", 0.1, "k2", {"order_id": 1})]
    if watching:
        records.append(Record(0.0, "alert", "watching", "info", detail={"failover": CONFIG}))
    return records


def signal(t: float, op: str, **detail: object) -> Record:
    return Record(t, "signal", op, "info", detail=dict(detail))


def signalled() -> list[Record]:
    """The same failover with the services' own signals (as signal_watch.py records them)."""
    records = [r for r in history(watching=False)] + [
        Record(0.0, "alert", "watching", "info", detail={"failover": SIGNAL_CONFIG}),
        signal(0.1, "watching", leader="postgres-1"),
        signal(0.2, "lb_servers", servers={"api1": "UP", "api2": "UP", "api3": "UP"}),
        signal(21.2, "sentinel", sentinel="sentinel-2", event="+sdown", instance="master", name="rsl-cache"),
        signal(21.3, "sentinel", sentinel="sentinel-2", event="+sdown", instance="sentinel", name="x"),
        signal(22.1, "sentinel", sentinel="sentinel-2", event="+odown", instance="master", name="rsl-cache"),
        signal(23.4, "sentinel", sentinel="sentinel-2", event="+switch-master", instance="master",
               old="10.231.1.1:6391", new="10.231.2.1:6392"),
        signal(22.0, "lb_server", server="api1", status="DOWN", previous="UP"),
        signal(29.6, "leader", event="deleted", value=None, how="etcd watch"),
        signal(30.1, "leader", event="set", value="postgres-2", how="etcd watch"),
        signal(31.0, "lb_server", server="api1", status="UP", previous="DOWN"),
        signal(31.1, "lb_server", server="api2", status="UP", previous="DOWN")]
    return records


def test_phases_from_the_services_signals() -> None:
    found = phases(signalled())
    assert found is not None
    pg = found["postgres"]
    assert [p["phase"] for p in pg["phases"]] == ["detect", "promote", "route", "reconnect"]
    assert pg["detect_s"] == 9.6 and pg["detect_bound_s"] == 11.0  # ttl + etcd's lease check and revocation
    assert pg["promote_s"] == 0.5 and pg["promote_bound_s"] == 5.0  # loop_wait + retry_timeout
    assert pg["route_s"] == 0.9 and pg["route_bound_s"] == 1.6  # API check + rise x inter + the 0.1 s poll
    assert pg["reconnect_s"] == 1.7 and pg["reconnect_bound_s"] is None
    assert pg["new"] == "postgres-2" and pg["within_bounds"] is True
    assert pg["sources"] == {"detect": "signal/leader deleted (etcd watch)", "promote": "signal/leader set (etcd watch)",
                             "route": "signal/lb_server UP (HAProxy, poll 0.1 s)",
                             "reconnect": "load (first acknowledged POST /orders)"}
    assert [p["start_s"] for p in pg["phases"]] == [0.0, 9.6, 10.1, 10.1]
    redis = found["redis"]
    assert redis["detect_s"] == 2.1 and redis["detect_bound_s"] == 3.0  # down-after + ping period + ask period
    assert redis["promote_s"] == 1.3 and redis["promote_bound_s"] == 3.0  # failover-timeout
    assert redis["sdown_s"] == 1.2 and redis["new"] == "10.231.2.1:6392"
    assert redis["sources"]["detect"] == "signal/sentinel +odown (pub/sub)"
    [m] = measurements(signalled())
    assert m.name == "failover_s" and m.value == 11.8 and m.target is None  # detect + promote + reconnect


def test_a_phase_over_its_bound_is_named() -> None:
    late = [r for r in signalled() if not (r.op == "leader" and (r.detail or {}).get("event") == "set")]
    late.append(signal(36.0, "leader", event="set", value="postgres-2", how="etcd watch"))
    pg = phases(late)["postgres"]  # type: ignore[index]
    promote = next(p for p in pg["phases"] if p["phase"] == "promote")
    assert promote["s"] == 6.4 and promote["within"] is False and pg["within_bounds"] is False


def test_without_signals_the_supervisors_looks_are_used_and_named() -> None:
    found = phases(history())
    assert found is not None
    pg = found["postgres"]
    assert [p["phase"] for p in pg["phases"]] == ["promote", "route", "reconnect"]  # detect is inside promote
    assert pg["promote_s"] == 10.5 and pg["promote_bound_s"] == 12.0  # ttl + loop_wait + one look
    assert pg["route_s"] == 1.1 and pg["route_bound_s"] == 2.0 and pg["reconnect_s"] == 1.3
    assert pg["within_bounds"] is True
    assert pg["sources"]["promote"].startswith("platform/failover (supervisor look")
    assert pg["sources"]["route"].startswith("controller/replicas")
    assert found["redis"]["promote_s"] == 4.0 and found["redis"]["promote_lower_bound_s"] == 2.0
    [m] = measurements(history())
    assert m.name == "failover_s" and m.value == 11.8 and m.target is None


def test_a_missing_signal_falls_back_phase_by_phase() -> None:
    no_lb = [r for r in signalled() if r.op not in ("lb_server", "lb_servers")]
    pg = phases(no_lb)["postgres"]  # type: ignore[index]
    assert pg["sources"]["detect"].startswith("signal/leader") and pg["sources"]["route"].startswith("controller/")
    no_leader = [r for r in signalled() if r.op != "leader"]
    pg = phases(no_leader)["postgres"]  # type: ignore[index]
    assert pg["sources"]["promote"].startswith("platform/failover") and "detect" not in pg["sources"]


def test_without_the_settings_or_a_failover_nothing_is_reported() -> None:
    assert measurements(history(watching=False)) == []
    assert phases([r for r in history() if r.op != "failover"]) is None


def test_a_configuration_that_breaks_patronis_rule_is_named() -> None:
    bad = {**CONFIG, "patroni": {"ttl_s": 8, "loop_wait_s": 1, "retry_timeout_s": 4}}
    assert config_problems(CONFIG) == []
    assert "loop_wait + 2 x retry_timeout = 9 s > ttl = 8 s" in config_problems(bad)[0]
    assert config_problems({**CONFIG, "client_timeout_s": 3.0}) == []  # the API's: 1 s connect + 2 s command
    assert "client timeout (15.0 s) is longer than the failover budget" in config_problems({**CONFIG, "client_timeout_s": 15.0})[0]


def test_the_phases_are_drawn_as_bars_with_their_bounds() -> None:
    from types import SimpleNamespace
    from typing import cast

    import matplotlib.pyplot as plt

    from resilience.reports.plots import failover_phases_plot
    from resilience.reports.run import RunView

    found = measurements(signalled())[0]
    run = SimpleNamespace(fault={"injected_t": 20.0}, rto_s=lambda: None, events=lambda: [], phases={},
                          measurement=lambda name: found if name == "failover_s" else None)
    plot = failover_phases_plot(cast(RunView, run))
    assert plot is not None
    ax = plot.figure.axes[0]
    assert [t.get_text().rsplit(" ", 2)[0] for t in ax.texts] == [
        "postgres detect", "postgres promote", "postgres route", "postgres reconnect", "redis detect", "redis promote"]
    detect = ax.collections[0].get_paths()[0].get_extents()  # the first bar: from the injection, detect_s long
    assert detect.x0 == 20.0 and abs(detect.x1 - (20.0 + found.detail["postgres"]["detect_s"])) < 1e-9
    promote = ax.collections[1].get_paths()[0].get_extents()  # the next starts where detect ended
    assert abs(promote.x0 - 29.6) < 1e-9
    plt.close(plot.figure)
    empty = SimpleNamespace(fault={"injected_t": 20.0}, measurement=lambda name: None)
    assert failover_phases_plot(cast(RunView, empty)) is None


def test_a_fault_that_took_an_etcd_member_allows_for_etcds_election_in_detect() -> None:
    """A zone loss takes one etcd member, maybe its leader: the new leader extends every lease by an election
    timeout on taking office, after up to two of them to be elected (etcd lessor.Promote)."""
    config = {**SIGNAL_CONFIG, "etcd_election_timeout_s": 1.0}
    base = [r for r in signalled() if not (r.source == "alert" and r.op == "watching")]
    base.append(Record(0.0, "alert", "watching", "info", detail={"failover": config}))
    lost = [r for r in base if not (r.op == "leader")] + [
        Record(20.1, "platform", "fault:lose_zone", "info",
               detail={"phase": "inject", "zone": "zone-a", "services": ["etcd-1", "redis-1", "postgres-1"]}),
        signal(32.6, "leader", event="deleted", value=None, how="etcd watch"),  # 12.6 s: seen after a zone loss
        signal(33.1, "leader", event="set", value="postgres-2", how="etcd watch")]
    detect = next(p for p in phases(lost)["postgres"]["phases"] if p["phase"] == "detect")  # type: ignore[index]
    assert detect["s"] == 12.6 and detect["bound_s"] == 14.0 and detect["within"] is True
    # the same detection without an etcd member lost (a database kill) is over its bound
    no_etcd = [r for r in lost if r.op != "fault:lose_zone"] + [
        Record(20.1, "platform", "fault:lose_zone", "info",
               detail={"phase": "inject", "zone": "zone-b", "services": ["redis-2", "postgres-1"]})]
    detect = next(p for p in phases(no_etcd)["postgres"]["phases"] if p["phase"] == "detect")  # type: ignore[index]
    assert detect["bound_s"] == 11.0 and detect["within"] is False
    # a history from before the stack recorded etcd's election timeout keeps the old bound (rechecks agree)
    old = [r for r in lost if not (r.source == "alert" and r.op == "watching")] + [
        Record(0.0, "alert", "watching", "info", detail={"failover": SIGNAL_CONFIG})]
    detect = next(p for p in phases(old)["postgres"]["phases"] if p["phase"] == "detect")  # type: ignore[index]
    assert detect["bound_s"] == 11.0
