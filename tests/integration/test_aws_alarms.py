"""CloudWatch alarms as the aws target's alerts (resilience/targets/aws/alarms.py) against FakeAws' alarms
(tests/fakes/aws_cloudwatch.py): the documented evaluation delays, the state history as `alert` records on the run
clock that checkers/detection.py judges, and a stop alarm that aborts the run (alarm_stop.py via the event feed)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.abort import Abort, Aborted  # noqa: E402
from resilience.checkers.detection import detect, measurements  # noqa: E402
from resilience.config import AwsSettings  # noqa: E402
from resilience.event_feed import EventFeed  # noqa: E402
from resilience.history import ALERT, PHASE, History  # noqa: E402
from resilience.monitoring_settings import CloudWatchAlarmSettings  # noqa: E402
from resilience.targets.aws.alarms import CloudWatchAlarms  # noqa: E402
from tests.fakes.aws_cloudwatch import FakeAlarms, install_alarms  # noqa: E402
from tests.fakes.aws_services import FakeAws, use_fake_credentials  # noqa: E402
from tests.fakes.waiting import wait_for  # noqa: E402

REGION = "ap-south-1"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAws]:
    use_fake_credentials(monkeypatch, REGION)
    with FakeAws(time_scale=0.005) as server:
        install_alarms(server)
        yield server


def cloudwatch(fake: FakeAws) -> Any:
    return boto3.client("cloudwatch", endpoint_url=fake.url, region_name=REGION)


def put_alarm(fake: FakeAws, name: str, period: int = 10, n: int = 3, m: int = 2) -> None:
    cloudwatch(fake).put_metric_alarm(
        AlarmName=name, Namespace="AWS/RDS", MetricName="DatabaseConnections", Statistic="Minimum", Period=period,
        EvaluationPeriods=n, DatapointsToAlarm=m, Threshold=1, ComparisonOperator="LessThanThreshold")


def alarms(fake: FakeAws) -> FakeAlarms:
    return fake.alarms  # type: ignore[attr-defined, no-any-return]


def watcher(fake: FakeAws, detection: tuple[str, ...] = (), stop: tuple[str, ...] = ()) -> CloudWatchAlarms:
    aws = replace(AwsSettings(), region=REGION, alarms=CloudWatchAlarmSettings(detection=detection, stop=stop,
                                                                               poll_s=0.05))
    return CloudWatchAlarms(aws, lambda service: cloudwatch(fake))


def test_an_alarm_fires_after_m_periods_plus_the_evaluation_delay_and_clears_after_n_minus_m_plus_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_credentials(monkeypatch, REGION)
    with FakeAws(manual_clock=True) as fake:
        install_alarms(fake)
        put_alarm(fake, "db-down", period=60, n=3, m=2)
        assert alarms(fake).breach("db-down", REGION) == 2 * 60 + 60
        fake.advance(179)
        state = cloudwatch(fake).describe_alarms(AlarmNames=["db-down"])["MetricAlarms"][0]["StateValue"]
        assert state == "OK"
        fake.advance(1)
        assert cloudwatch(fake).describe_alarms(AlarmNames=["db-down"])["MetricAlarms"][0]["StateValue"] == "ALARM"
        assert alarms(fake).clear("db-down", REGION) == (3 - 2 + 1) * 60 + 60
        alarms(fake).breach("db-down", REGION)  # breaching again before it cleared: it stays in ALARM
        fake.advance(400)
        history = cloudwatch(fake).describe_alarm_history(AlarmName="db-down", HistoryItemType="StateUpdate")
        items = history["AlarmHistoryItems"]
        assert [i["HistorySummary"] for i in items] == ["Alarm updated from OK to ALARM"]
        assert '"stateValue": "ALARM"' in items[0]["HistoryData"]
        alarms(fake).clear("db-down", REGION)
        fake.advance(180)
        newest_first = cloudwatch(fake).describe_alarm_history(AlarmName="db-down")["AlarmHistoryItems"]
        assert [i["HistorySummary"] for i in newest_first] == ["Alarm updated from ALARM to OK",
                                                              "Alarm updated from OK to ALARM"]
        page = cloudwatch(fake).describe_alarm_history(AlarmName="db-down", MaxRecords=1, ScanBy="TimestampAscending")
        assert page["AlarmHistoryItems"][0]["HistorySummary"].endswith("OK to ALARM") and page["NextToken"]


def test_the_alarm_history_becomes_the_records_detection_judges(fake: FakeAws) -> None:
    put_alarm(fake, "school-meals-db-down")
    history = History()
    history.add(ALERT, "expected", detail={"alerts": ["DatabaseDown"]})
    watch = watcher(fake, detection=("school-meals-db-down=DatabaseDown",))
    feed = EventFeed(lambda m: watch.events(), history)
    watch.start()
    try:
        fault_t = history.now()
        delay = alarms(fake).breach("school-meals-db-down", REGION)
        wait_for(lambda: any(e.op == "firing" for e in watch.events()), 10)
        recovered_t = history.now()
        alarms(fake).clear("school-meals-db-down", REGION)
        wait_for(lambda: any(e.op == "resolved" for e in watch.events()), 10)
    finally:
        watch.stop()
    feed.poll()
    watching = history.select(ALERT, "watching")[0].detail
    assert watching["for_s"] == {"DatabaseDown": 20.0} and watching["scrape_s"] == 60.0  # 2 x 10 s periods
    firing = history.select(ALERT, "firing")[0]
    assert firing.detail["alarm"] == "school-meals-db-down" and firing.detail["alert"] == "DatabaseDown"
    assert firing.t - fault_t == pytest.approx(delay * 0.005, abs=0.5)  # at CloudWatch's own timestamp
    result = detect(history.sorted(), fault_t=fault_t, recovered_t=recovered_t)
    by_name = {m.name: m for m in measurements(result)}
    assert by_name["detection_s"].value is not None and by_name["detection_s"].detail["bound_s"] == 140.0
    assert by_name["missed_alerts"].value == 0 and by_name["false_alerts"].value == 0
    assert by_name["alert_cleared_s"].value is not None and by_name["alert_cleared_s"].value < 10


def test_an_alarm_already_in_alarm_is_a_false_alert_and_cloudwatch_unreachable_is_recorded(fake: FakeAws) -> None:
    put_alarm(fake, "db-down")
    cloudwatch(fake).set_alarm_state(AlarmName="db-down", StateValue="ALARM", StateReason="before the run")
    watch = watcher(fake, detection=("db-down=DatabaseDown",))
    watch.start()
    watch.stop()
    firing = next(e for e in watch.events() if e.op == "firing")
    assert firing.detail["before_start"] is True
    broken = CloudWatchAlarms(replace(AwsSettings(), alarms=CloudWatchAlarmSettings(detection=("x",), poll_s=0.02)),
                              lambda service: (_ for _ in ()).throw(ConnectionError("no route")))
    broken.start()
    wait_for(lambda: any(e.op == "unreachable" for e in broken.events()), 5)
    broken.stop()
    assert "no route" in next(e for e in broken.events() if e.op == "unreachable").detail["error"]


def test_a_stop_alarm_going_to_alarm_aborts_the_run(fake: FakeAws) -> None:
    put_alarm(fake, "school-meals-availability", period=10, n=1, m=1)
    history = History()
    said: list[str] = []
    abort = Abort(history, said.append)
    watch = watcher(fake, stop=("school-meals-availability",))
    feed = EventFeed(lambda m: watch.events(), history, on_stop=abort.abort)
    watch.start()
    try:
        feed.poll()
        assert abort.reason is None
        alarms(fake).breach("school-meals-availability", REGION)
        wait_for(lambda: feed.poll() >= 0 and abort.reason is not None, 10)
    finally:
        watch.stop()
    assert abort.reason is not None and "school-meals-availability went to ALARM" in abort.reason
    assert [r.op for r in history.select(PHASE)] == ["abort"]
    with pytest.raises(Aborted):
        abort.check()
