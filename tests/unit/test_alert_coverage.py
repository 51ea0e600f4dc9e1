"""The game-day's alert coverage: faults x alerts, blind spots, rules never exercised."""

from pathlib import Path

from resilience.history import History, Record
from resilience.reports.alert_coverage import coverage, render_markdown


def run_dir(tmp_path: Path, name: str, capability: str, alerts: list[tuple[float, str]],
            expected: list[str] | None, monitored: bool = True) -> Path:
    records = [Record(0.0, "alert", "watching" if monitored else "unreachable", "info", detail={}),
               Record(10.0, "fault", "inject", "ok", detail={"capability": capability})]
    if expected is not None:
        records.append(Record(0.0, "alert", "expected", "info", detail={"alerts": expected}))
    records += [Record(t, "alert", "firing", "info", detail={"alert": a}) for t, a in alerts]
    path = tmp_path / name
    path.mkdir()
    History(records=records).dump(path / "history.jsonl")
    return path


def test_matrix_blind_spots_and_rules_never_exercised(tmp_path: Path) -> None:
    runs = [("db-failover", run_dir(tmp_path, "a", "fail_over_database", [(5.0, "RedisDown"), (13.1, "DatabaseDown"),
                                                                          (14.0, "DatabaseDown")],
                                    ["DatabaseDown", "LowAvailability"])),
            ("pod-kill", run_dir(tmp_path, "b", "kill_replicas", [], [])),
            ("cache-failover", run_dir(tmp_path, "c", "fail_over_cache", [(12.0, "RedisDown")], None, monitored=False)),
            ("never-ran", None)]
    cov = coverage(runs, rules=["DatabaseDown", "LowAvailability", "RedisDown", "HighMemory"])
    first = cov["runs"][0]
    assert first["caught"] == {"DatabaseDown": 3.1} and first["missed"] == ["LowAvailability"]  # before inject: not
    assert cov["blind_spots"] == [{"experiment": "pod-kill", "fault": "kill_replicas"}]
    assert cov["never_exercised"] == ["LowAvailability", "RedisDown", "HighMemory"]  # unmonitored runs do not count
    assert cov["unmonitored"] == ["cache-failover"] and cov["left_out"] == ["never-ran"]
    text = render_markdown(cov)
    assert "| db-failover | fail_over_database | 3.1* | missed | - | - |" in text
    assert "Blind spots (faults no alert caught): pod-kill (kill_replicas)" in text


def test_alert_notifications_are_marked_on_the_timeline_plots() -> None:
    from types import SimpleNamespace
    from typing import cast

    from resilience.reports.plots import markers
    from resilience.reports.run import RunView

    records = [Record(25.1, "alert", "firing", "info", detail={"alert": "DatabaseDown"}),
               Record(25.2, "alert", "pending", "info", detail={"alert": "DatabaseDown"}),
               Record(33.1, "alert", "resolved", "info", detail={"alert": "DatabaseDown"})]
    run = SimpleNamespace(fault={}, rto_s=lambda: None, events=lambda: records)
    assert [m.label for m in markers(cast(RunView, run))] == ["alert DatabaseDown firing", "alert DatabaseDown resolved"]
