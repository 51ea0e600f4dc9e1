"""Contract: CloudWatch alarms on a real account, the scenarios of tests/integration/test_aws_alarms.py.

Skipped unless RESILIENCE_CONTRACT_AWS=1 and the settings name alarms (`aws.alarms.detection` or `.stop`):
every named alarm exists and its state history can be read with the harness's IAM policy
(deploy/iam-policy.json). With RESILIENCE_CONTRACT_ALARM_SET=1 (credentials allowed cloudwatch:SetAlarmState,
which the harness's policy does not grant) a stop alarm is set to ALARM and the watcher must report the stop
condition; CloudWatch puts the alarm back at its next evaluation.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

import contract_support as cs
from contract_support import needs_aws

pytestmark = [needs_aws, pytest.mark.timeout(1800)]

SET_VAR = "RESILIENCE_CONTRACT_ALARM_SET"


@pytest.fixture(scope="module")
def alarm_settings() -> Any:
    from resilience.config import load_settings
    loaded = load_settings()
    if not (loaded.aws.alarms.detection or loaded.aws.alarms.stop):
        pytest.skip("aws.alarms names no alarm in the settings")
    return loaded


def test_every_named_alarm_exists_and_its_history_can_be_read(alarm_settings: Any) -> None:
    """Mirrors test_the_alarm_history_becomes_the_records_detection_judges (with the harness's permissions)."""
    from resilience.targets.aws.services import AwsServices
    services = AwsServices(alarm_settings)
    watch = services.alarms
    watch.start()
    time.sleep(max(2 * alarm_settings.aws.alarms.poll_s, 5))
    watch.stop()
    events = watch.events()
    watching = next(e for e in events if e.op == "watching")
    assert watching.detail["missing"] == [], f"alarms the settings name but CloudWatch does not have: {watching.detail}"
    assert not [e for e in events if e.op == "unreachable"], [e.detail for e in events]


def test_a_stop_alarm_set_to_alarm_is_reported_as_the_stop_condition(alarm_settings: Any) -> None:
    """Mirrors test_a_stop_alarm_going_to_alarm_aborts_the_run (the record the run aborts on)."""
    if os.environ.get(SET_VAR) != "1":
        pytest.skip(f"{SET_VAR}=1 not set (the test needs cloudwatch:SetAlarmState)")
    from resilience.monitoring_settings import alarm_alerts
    from resilience.targets.aws.services import AwsServices
    stop = sorted(alarm_alerts(alarm_settings.aws.alarms.stop))
    if not stop:
        pytest.skip("aws.alarms.stop names no alarm")
    services = AwsServices(alarm_settings)
    watch = services.alarms
    watch.start()
    try:
        services.client("cloudwatch").set_alarm_state(AlarmName=stop[0], StateValue="ALARM",
                                                       StateReason="resilience contract test")
        cs.wait_until(lambda: any(e.op == "stop-condition" for e in watch.events()), 120,
                      "the stop alarm's ALARM state in DescribeAlarmHistory")
    finally:
        watch.stop()
