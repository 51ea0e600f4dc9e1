"""Contract: alerts on a real cluster and a real account, the scenarios of tests/integration/test_kubernetes_alerts.py
and tests/integration/test_aws_alarms.py.

Kubernetes (RESILIENCE_CONTRACT_CONTEXT, and `kubernetes.monitoring.enabled: true` in the settings): the
PrometheusRule is applied when the cluster serves the Prometheus Operator's CRD (else the status says why),
Prometheus loads it (its config-reloader picks a PrometheusRule up within a few minutes), and Alertmanager's
API v2 and Prometheus's rules answer through the API server's service proxy with the harness's credentials.

AWS (RESILIENCE_CONTRACT_AWS=1, and `aws.alarms.detection` or `aws.alarms.stop` in the settings): every named
alarm exists and its state history can be read with the harness's IAM policy (deploy/iam-policy.json). With
RESILIENCE_CONTRACT_ALARM_SET=1 (credentials allowed cloudwatch:SetAlarmState, which the harness's policy does
not grant) a stop alarm is set to ALARM and the watcher must report the stop condition; CloudWatch puts the
alarm back at its next evaluation.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

import contract_support as cs
from contract_support import needs_aws, needs_cluster

SET_VAR = "RESILIENCE_CONTRACT_ALARM_SET"
RULES_LOADED_TIMEOUT_S = 600.0


def monitoring_on(settings: Any) -> None:
    if not settings.kubernetes.monitoring.enabled:
        pytest.skip("kubernetes.monitoring.enabled is off in the settings: no Prometheus/Alertmanager to test")


@needs_cluster
def test_the_prometheus_rule_is_applied_when_the_crd_exists_and_prometheus_loads_it(api: Any, settings: Any) -> None:
    """Mirrors test_with_the_crds_the_rule_is_applied_and_present / test_without_the_operator_crds_..."""
    from resilience.targets.kubernetes import alert_watch
    monitoring_on(settings)
    applied = alert_watch.apply_rules(api, settings)
    if not alert_watch.crd_served(api):
        assert applied["applied"] is False and "monitoring.coreos.com/v1" in applied["why"]
        assert alert_watch.rules_status(api, settings)["present"] is False
        return
    assert applied["applied"] is True and alert_watch.rules_status(api, settings)["present"] is True
    m = settings.kubernetes.monitoring

    def loaded() -> bool:
        status, body = alert_watch.proxy_get(api, m.namespace, m.prometheus_service, m.prometheus_port,
                                             alert_watch.RULES_PATH)
        return status == 200 and any(rule.get("name") == "DatabaseDown" for group in body["data"]["groups"]
                                     for rule in group.get("rules", []))
    cs.wait_until(loaded, RULES_LOADED_TIMEOUT_S, "Prometheus to load the PrometheusRule (check its ruleSelector "
                                                  "against kubernetes.monitoring.rule_labels)", interval_s=10)


@needs_cluster
def test_alertmanager_and_prometheus_answer_through_the_service_proxy(api: Any, settings: Any) -> None:
    """Mirrors test_alerts_through_the_service_proxy_become_the_records_detection_judges (reachability)."""
    from resilience.targets.kubernetes import alert_watch
    monitoring_on(settings)
    m = settings.kubernetes.monitoring
    status, alerts = alert_watch.proxy_get(api, m.namespace, m.alertmanager_service, m.alertmanager_port,
                                           alert_watch.ALERTS_PATH)
    assert status == 200 and isinstance(alerts, list), f"Alertmanager via the proxy: HTTP {status} {alerts}"
    watch = alert_watch.KubernetesAlerts(api, settings)
    watch.start()
    time.sleep(max(3 * m.poll_s, 5))
    watch.stop()
    ops = [e.op for e in watch.events()]
    assert ops[0] == "watching" and "unreachable" not in ops, [e.detail for e in watch.events()]


@pytest.fixture(scope="module")
def alarm_settings() -> Any:
    from resilience.config import load_settings
    loaded = load_settings()
    if not (loaded.aws.alarms.detection or loaded.aws.alarms.stop):
        pytest.skip("aws.alarms names no alarm in the settings")
    return loaded


@needs_aws
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


@needs_aws
@pytest.mark.skipif(os.environ.get(SET_VAR) != "1", reason=f"{SET_VAR}=1 not set (needs cloudwatch:SetAlarmState)")
def test_a_stop_alarm_set_to_alarm_is_reported_as_the_stop_condition(alarm_settings: Any) -> None:
    """Mirrors test_a_stop_alarm_going_to_alarm_aborts_the_run (the record the run aborts on)."""
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
