"""checkers/failover_phases.py: the RTO of a failover taken apart, against the configuration's bounds."""

from resilience.checkers.failover_phases import config_problems, measurements, phases
from resilience.history import Record

CONFIG = {"patroni": {"ttl_s": 10, "loop_wait_s": 1, "retry_timeout_s": 4}, "sentinel_down_after_s": 1.0,
          "look_s": 1.0, "haproxy": {"inter_s": 0.5, "rise": 2, "fall": 2}}


def history(watching: bool = True) -> list[Record]:
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


def test_phases_and_bounds() -> None:
    found = phases(history())
    assert found is not None
    pg = found["postgres"]
    assert pg["promote_s"] == 10.5 and pg["promote_bound_s"] == 12.0  # ttl + loop_wait + one look
    assert pg["route_s"] == 1.1 and pg["route_bound_s"] == 2.0 and pg["reconnect_s"] == 1.3
    assert pg["within_bounds"] is True
    assert found["redis"] == {"new": "redis-2", "promote_s": 4.0, "promote_lower_bound_s": 2.0}
    [m] = measurements(history())
    assert m.name == "failover_s" and m.value == 11.8 and m.target is None


def test_without_the_settings_or_a_failover_nothing_is_reported() -> None:
    assert measurements(history(watching=False)) == []
    assert phases([r for r in history() if r.op != "failover"]) is None


def test_a_configuration_that_breaks_patronis_rule_is_named() -> None:
    bad = {**CONFIG, "patroni": {"ttl_s": 8, "loop_wait_s": 1, "retry_timeout_s": 4}}
    assert config_problems(CONFIG) == []
    assert "loop_wait + 2 x retry_timeout = 9 s > ttl = 8 s" in config_problems(bad)[0]


def test_the_phases_are_drawn_as_bars_with_their_bounds() -> None:
    from types import SimpleNamespace
    from typing import cast

    import matplotlib.pyplot as plt

    from resilience.reports.plots import failover_phases_plot
    from resilience.reports.run import RunView

    found = measurements(history())[0]
    run = SimpleNamespace(fault={"injected_t": 20.0}, rto_s=lambda: None, events=lambda: [], phases={},
                          measurement=lambda name: found if name == "failover_s" else None)
    plot = failover_phases_plot(cast(RunView, run))
    assert plot is not None
    ax = plot.figure.axes[0]
    assert [t.get_text().rsplit(" ", 2)[0] for t in ax.texts] == ["postgres promote", "postgres route",
                                                                   "postgres reconnect", "redis promote"]
    promote = ax.collections[0].get_paths()[0].get_extents()  # the first bar: from the injection, promote_s long
    assert promote.x0 == 20.0 and promote.x1 == 20.0 + found.detail["postgres"]["promote_s"]
    plt.close(plot.figure)
    empty = SimpleNamespace(fault={"injected_t": 20.0}, measurement=lambda name: None)
    assert failover_phases_plot(cast(RunView, empty)) is None
