"""CloudWatch alarms on FakeAws that take the time alarms take, and their state history.

moto 5.2 keeps alarms (PutMetricAlarm, DescribeAlarms, SetAlarmState) but does not implement
DescribeAlarmHistory and never evaluates a metric. `install_alarms(fake)` adds, for requests through that
FakeAws server:

- DescribeAlarmHistory (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarmHistory.html):
  AlarmName, HistoryItemType, StartDate / EndDate, ScanBy (TimestampDescending by default), MaxRecords (1..100,
  default 100) and NextToken; items are `StateUpdate`s with HistorySummary "Alarm updated from OK to ALARM"
  and HistoryData, a JSON string with oldState / newState {stateValue, stateReason}, as CloudWatch writes them.
  Every state change (SetAlarmState included) is an item.
- Alarm evaluation, after https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html
  ("Evaluating an alarm": Period, EvaluationPeriods N, DatapointsToAlarm M): `breach(name)` says the metric
  crosses the threshold from now on; the alarm goes to ALARM once M breaching datapoints are in, M x Period
  fake seconds later, plus `evaluation_delay_s` (60: the datapoint's publication and the next once-a-minute
  evaluation; the fake's assumption, the docs give no figure). `clear(name)`: the metric is back; the alarm
  returns to OK once fewer than M of the last N datapoints breach, (N - M + 1) x Period later plus the same
  delay. A breach cleared before its alarm fired never fires (and the other way round).
moto starts a new alarm in OK (CloudWatch: INSUFFICIENT_DATA); tests set the state they need.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aws_services import FakeAws

ACCOUNT = "123456789012"  # moto's default account
_INSTALLED = False
_LOCK = threading.RLock()


def _naive(value: Any) -> datetime | None:
    from .aws_services import _parse_time
    return _parse_time(value)


class FakeAlarms:
    def __init__(self, fake: "FakeAws", evaluation_delay_s: float = 60.0) -> None:
        self.fake = fake
        self.evaluation_delay_s = evaluation_delay_s
        self._generation: dict[str, int] = {}  # alarm -> the latest breach/clear (older timers do nothing)
        self.transitions: list[tuple[str, str, float]] = []  # (alarm, new state, fake time) as they happened

    def backend(self, region: str) -> Any:
        from moto.cloudwatch.models import cloudwatch_backends
        return cloudwatch_backends[ACCOUNT][region]

    def alarm(self, name: str, region: str) -> Any:
        alarm = self.backend(region).alarms.get(name)
        if alarm is None:
            raise KeyError(f"no alarm {name} in {region}: create it with PutMetricAlarm first")
        return alarm

    def breach(self, name: str, region: str) -> float:
        """The metric breaches from now: ALARM after M x Period + the evaluation delay; returns that delay."""
        alarm = self.alarm(name, region)
        m = int(alarm.datapoints_to_alarm or alarm.evaluation_periods)
        return self._later(name, region, "ALARM", m * int(alarm.period) + self.evaluation_delay_s,
                           f"Threshold Crossed: {m} datapoints were greater than the threshold ({alarm.threshold}).")

    def clear(self, name: str, region: str) -> float:
        """The metric is back under the threshold: OK after (N - M + 1) x Period + the delay; returns that delay."""
        alarm = self.alarm(name, region)
        n = int(alarm.evaluation_periods)
        m = int(alarm.datapoints_to_alarm or n)
        return self._later(name, region, "OK", (n - m + 1) * int(alarm.period) + self.evaluation_delay_s,
                           f"Threshold Crossed: fewer than {m} of the last {n} datapoints breach.")

    def _later(self, name: str, region: str, state: str, after_s: float, reason: str) -> float:
        generation = self._generation[name] = self._generation.get(name, 0) + 1

        def act() -> None:
            if self._generation.get(name) != generation:
                return
            alarm = self.backend(region).alarms.get(name)
            if alarm is not None and alarm.state_value != state:
                alarm.update_state(reason, json.dumps({"version": "1.0"}), state)
                self.transitions.append((name, state, self.fake.clock.now()))
        self.fake._later(after_s, act)
        return after_s

    # -- DescribeAlarmHistory
    def describe_alarm_history(self, response: Any) -> Any:
        from moto.core.responses import ActionResult
        get = response._get_param
        name, kind = get("AlarmName"), get("HistoryItemType")
        start, end = _naive(get("StartDate")), _naive(get("EndDate"))
        items = [item for alarm in response.cloudwatch_backend.alarms.values()
                 if name in (None, alarm.name) for item in getattr(alarm, "fake_history", [])
                 if kind in (None, item["HistoryItemType"])
                 and (start is None or item["Timestamp"] >= start) and (end is None or item["Timestamp"] <= end)]
        items.sort(key=lambda i: i["Timestamp"], reverse=get("ScanBy") != "TimestampAscending")
        first = int(get("NextToken") or 0)
        size = max(1, min(100, int(get("MaxRecords") or 100)))
        page = items[first:first + size]
        more = first + size < len(items)
        return ActionResult({"AlarmHistoryItems": page, **({"NextToken": str(first + size)} if more else {})})


def _record_history(alarm: Any, old: str, new: str, reason: str) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    history = alarm.__dict__.setdefault("fake_history", [])
    history.append({"AlarmName": alarm.name, "AlarmType": "CompositeAlarm" if alarm.rule else "MetricAlarm",
                    "Timestamp": now, "HistoryItemType": "StateUpdate",
                    "HistorySummary": f"Alarm updated from {old} to {new}",
                    "HistoryData": json.dumps({"version": "1.0", "oldState": {"stateValue": old},
                                               "newState": {"stateValue": new, "stateReason": reason}})})


def install_alarms(fake: "FakeAws", evaluation_delay_s: float = 60.0) -> FakeAlarms:
    """Give `fake` alarms that evaluate (fake.alarms) and DescribeAlarmHistory (handlers wrapped once)."""
    global _INSTALLED
    from .aws_services import _active
    fake.alarms = FakeAlarms(fake, evaluation_delay_s)  # type: ignore[attr-defined]
    with _LOCK:
        if _INSTALLED:
            return fake.alarms  # type: ignore[attr-defined, no-any-return]
        from moto.cloudwatch.models import Alarm
        from moto.cloudwatch.responses import CloudWatchResponse
        original_update = Alarm.update_state

        def update_state(alarm: Any, reason: str, reason_data: str, state_value: str) -> None:
            old = alarm.state_value
            original_update(alarm, reason, reason_data, state_value)
            _record_history(alarm, old, state_value, reason)

        def describe_alarm_history(self: Any) -> Any:
            active = _active()
            alarms = getattr(active, "alarms", None)
            if alarms is None:
                raise NotImplementedError("The describe_alarm_history action has not been implemented")
            return alarms.describe_alarm_history(self)

        Alarm.update_state = update_state  # type: ignore[method-assign]
        setattr(CloudWatchResponse, "describe_alarm_history", describe_alarm_history)
        _INSTALLED = True
    return fake.alarms  # type: ignore[attr-defined, no-any-return]
