"""Contract: alerts on a real cluster, the scenarios of tests/integration/test_kubernetes_alerts.py (the aws side:
test_contract_alarms.py).

Kubernetes (RESILIENCE_CONTRACT_CONTEXT, and `kubernetes.monitoring.enabled: true` in the settings): the
PrometheusRule is applied when the cluster serves the Prometheus Operator's CRD (else the status says why),
Prometheus loads it (its config-reloader picks a PrometheusRule up within a few minutes), and Alertmanager's
API v2 and Prometheus's rules answer through the API server's service proxy with the harness's credentials.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import contract_support as cs
from contract_support import needs_cluster

pytestmark = [needs_cluster, pytest.mark.timeout(1800)]

RULES_LOADED_TIMEOUT_S = 600.0


def monitoring_on(settings: Any) -> None:
    if not settings.kubernetes.monitoring.enabled:
        pytest.skip("kubernetes.monitoring.enabled is off in the settings: no Prometheus/Alertmanager to test")


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
