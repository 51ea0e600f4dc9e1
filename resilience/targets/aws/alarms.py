"""CloudWatch alarms as the aws target's alerts: their state history is the detection source, and an alarm can
stop a run.

`aws.alarms.detection` names the alarms standing for the platform's alerts ("alarm" or "alarm=AlertName", the
rule name in deploy/monitoring/alerts.yaml that experiments list under `alerts:`). During a run, every
`aws.alarms.poll_s`, `DescribeAlarmHistory` (HistoryItemType StateUpdate, from the run's start;
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarmHistory.html) is read per
alarm; each item's HistoryData (JSON: oldState / newState {stateValue, stateReason}) becomes an `alert` record
at the item's own Timestamp on the run's clock (not at the look, so polling adds no delay):
  -> ALARM: `firing` (fired_s_before 0: the state change is the alarm's firing and its SNS notification);
  ALARM -> OK or INSUFFICIENT_DATA: `resolved`.
An alarm already in ALARM when the run starts is `firing` at the start, `before_start` (a false alert).
The `watching` record holds the bound's parts: per alert, `for_s` = Period x DatapointsToAlarm (M of the
"M out of N" rule; EvaluationPeriods when unset:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarm-evaluation),
plus one period for the datapoint to be aggregated and published (`scrape_s`) and one minute of alarm
evaluation (`evaluation_s`); no group_wait. There is no pending state in CloudWatch.

`aws.alarms.stop` names alarms that stop a run: an ALARM transition (or the alarm in ALARM at the start, as
FIS refuses to start an experiment then) becomes an `alert/stop-condition` record, which the run's event feed
turns into an abort (resilience/alarm_stop.py): the run stops and rolls back, as for its own stop condition.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Callable

from ...config import AwsSettings
from ...monitoring_settings import alarm_alerts
from ..alert_feed import AlertFeed
from ..base import PlatformEvent
from ..local.alert_receiver import wall_to_monotonic

SOURCE = "cloudwatch-alarm-history"
EVALUATION_S = 60.0  # CloudWatch evaluates a standard alarm once a minute


def alarm_arns(aws: AwsSettings) -> list[str]:
    """The ARNs of every alarm the settings name (for the IAM policy: DescribeAlarms / DescribeAlarmHistory)."""
    names = sorted(set(alarm_alerts(aws.alarms.detection)) | set(alarm_alerts(aws.alarms.stop)))
    return [f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}" for region in aws.allowed_regions
            for account in aws.allowed_accounts for name in names]


def alarm_statements(aws: AwsSettings, region: dict[str, Any]) -> list[dict[str, Any]]:
    arns = alarm_arns(aws)
    if not arns:
        return []
    return [{"Sid": "Alarms", "Effect": "Allow", "Action": ["cloudwatch:DescribeAlarmHistory",
                                                              "cloudwatch:DescribeAlarms"],
             "Resource": arns, "Condition": region}]


def transition(item: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """(old state, new state, reason) of a StateUpdate history item."""
    try:
        data = json.loads(item.get("HistoryData") or "{}")
    except ValueError:
        data = {}
    old, new = data.get("oldState") or {}, data.get("newState") or {}
    return old.get("stateValue"), new.get("stateValue"), str(new.get("stateReason") or item.get("HistorySummary") or "")


class CloudWatchAlarms:
    """Reads the named alarms' state history every `poll_s` between start() and stop()."""

    def __init__(self, aws: AwsSettings, client: Callable[[str], Any]) -> None:
        self.aws = aws
        self.client = client
        self.detection = alarm_alerts(aws.alarms.detection)  # alarm -> alert name
        self.stop_alarms = sorted(alarm_alerts(aws.alarms.stop))
        self.feed = AlertFeed(self.look, aws.alarms.poll_s)
        self.started_wall = time.time()
        self._seen: set[tuple[str, str]] = set()  # (alarm, item Timestamp) already recorded

    @property
    def enabled(self) -> bool:
        return bool(self.detection or self.stop_alarms)

    def start(self) -> None:
        self.started_wall = time.time()
        try:
            alarms = self._describe()
        except Exception as exc:  # noqa: BLE001 - recorded: detection is then inconclusive, never a pass
            self.feed.add("unreachable", {"what": "cloudwatch", "error": f"DescribeAlarms: {type(exc).__name__}: "
                                                                          f"{str(exc)[:200]}"})
            alarms = {}
        self.feed.start(self.configuration(alarms))
        for name, alarm in alarms.items():
            if alarm.get("StateValue") == "ALARM":
                self._record(name, "ALARM", f"in ALARM when the run began: {alarm.get('StateReason', '')}",
                             self.feed.started_m, before_start=True)

    def stop(self) -> None:
        self.feed.stop()

    def events(self) -> list[PlatformEvent]:
        return self.feed.since(0.0)

    def configuration(self, alarms: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The `watching` record: for_s per alert (Period x DatapointsToAlarm), the alarms and the stop alarms."""
        for_s: dict[str, float] = {}
        periods = [60.0]
        for name, alert in self.detection.items():
            alarm = alarms.get(name) or {}
            period = float(alarm.get("Period") or 60)
            periods.append(period)
            for_s[alert] = period * int(alarm.get("DatapointsToAlarm") or alarm.get("EvaluationPeriods") or 1)
        return {"scrape_s": max(periods), "evaluation_s": EVALUATION_S, "group_wait_s": 0.0, "for_s": for_s,
                "scale": 1, "source": SOURCE, "alarms": self.detection, "stop_alarms": self.stop_alarms,
                "missing": sorted(n for n in [*self.detection, *self.stop_alarms] if n not in alarms)}

    def _describe(self) -> dict[str, dict[str, Any]]:
        names = sorted(set(self.detection) | set(self.stop_alarms))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
            answer = self.client("cloudwatch").describe_alarms(AlarmNames=names[start:start + 100],
                                                               AlarmTypes=["MetricAlarm", "CompositeAlarm"])
            for alarm in answer.get("MetricAlarms", []) + answer.get("CompositeAlarms", []):
                found[str(alarm["AlarmName"])] = alarm
        return found

    def look(self, feed: AlertFeed) -> None:
        try:
            for name in sorted(set(self.detection) | set(self.stop_alarms)):
                for item in self._history(name):
                    stamp = item.get("Timestamp")
                    key = (name, str(stamp))
                    if key in self._seen or not isinstance(stamp, datetime) or stamp.timestamp() < self.started_wall:
                        continue  # before the run: its state then is what start() recorded
                    self._seen.add(key)
                    old, new, reason = transition(item)
                    at = max(feed.started_m, wall_to_monotonic(stamp.timestamp()))
                    if new == "ALARM" or old == "ALARM":
                        self._record(name, str(new), reason, at, before_start=False)
        except Exception as exc:  # noqa: BLE001 - throttled, denied, unreachable: counted by the feed
            feed.failed("cloudwatch", f"DescribeAlarmHistory: {type(exc).__name__}: {str(exc)[:200]}")
            return
        feed.answered("cloudwatch")

    def _history(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"AlarmName": name, "HistoryItemType": "StateUpdate", "ScanBy": "TimestampAscending",
                                  "StartDate": datetime.fromtimestamp(self.started_wall - 1, timezone.utc),
                                  "EndDate": datetime.now(timezone.utc), "MaxRecords": 100}
        while True:
            answer = self.client("cloudwatch").describe_alarm_history(**kwargs)
            items += answer.get("AlarmHistoryItems", [])
            if not answer.get("NextToken"):
                return items
            kwargs["NextToken"] = answer["NextToken"]

    def _record(self, alarm: str, new: str, reason: str, at: float, before_start: bool) -> None:
        detail = {"alarm": alarm, "source": SOURCE, "reason": reason[:300], "state": new}
        if alarm in self.stop_alarms and new == "ALARM":
            self.feed.add("stop-condition", detail, at)
        alert = self.detection.get(alarm)
        if alert is None:
            return
        op = "firing" if new == "ALARM" else "resolved"
        self.feed.add(op, {**detail, "alert": alert, "fired_s_before": 0.0 if op == "firing" else None,
                           "ended_s_before": None, "before_start": before_start}, at)
