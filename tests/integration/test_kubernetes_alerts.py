"""Kubernetes alerts: the PrometheusRule from the one rules file, and Alertmanager / Prometheus read through the
API server's service proxy (the fake's stand-ins, tests/fakes/kube/monitoring.py) into `alert` records that
checkers/detection.py judges as it judges the local stack's."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

import pytest

pytest.importorskip("kubernetes")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.checkers.detection import detect, measurements  # noqa: E402
from resilience.config import KubernetesSettings, Settings  # noqa: E402
from resilience.event_feed import EventFeed  # noqa: E402
from resilience.history import ALERT, History  # noqa: E402
from resilience.monitoring_settings import KubeMonitoringSettings  # noqa: E402
from resilience.targets.kubernetes import alert_watch  # noqa: E402
from resilience.targets.local import alert_rules  # noqa: E402
from tests.fakes.kube.monitoring import ALERTMANAGER, FakeMonitoring, install_monitoring  # noqa: E402
from tests.fakes.kube.testing import api_client, namespace, wait_for  # noqa: E402
from tests.fakes.kube_api import FakeKubeApi  # noqa: E402

NS = "school-meals"


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(time_scale=0.002) as fake:
        with fake._lock:
            fake.store.put(("api/v1", "namespaces", None, NS), namespace(NS))
        yield fake


@pytest.fixture
def monitoring(kube: FakeKubeApi) -> Iterator[FakeMonitoring]:
    stack = install_monitoring(kube)
    yield stack
    stack.stop()


def settings(enabled: bool = True, poll_s: float = 0.05) -> Settings:
    m = replace(KubeMonitoringSettings(), enabled=enabled, poll_s=poll_s, scrape_s=1.0, evaluation_s=1.0,
                group_wait_s=1.0)
    return Settings(kubernetes=replace(KubernetesSettings(), namespace=NS, monitoring=m))


def test_the_prometheus_rule_is_the_rules_file_with_its_production_windows() -> None:
    rule = alert_watch.prometheus_rule(settings())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # what the chart's ruleSelector wants
    assert rule["spec"]["groups"] == alert_rules.load()["groups"]  # one source of truth, not scaled
    windows = alert_rules.windows({"groups": rule["spec"]["groups"]})
    assert windows["DatabaseDown"] == 60 and windows["HighErrorRate"] == 300 and len(windows) == 8


def test_without_the_operator_crds_the_rules_are_not_applied_and_the_status_says_why(kube: FakeKubeApi) -> None:
    api = api_client(kube)
    assert not alert_watch.crd_served(api)
    result = alert_watch.apply_rules(api, settings())
    assert result["applied"] is False and "monitoring.coreos.com/v1" in result["why"]
    assert alert_watch.rules_status(api, settings())["present"] is False
    assert not kube.mutating_requests()
    assert alert_watch.apply_rules(api, settings(enabled=False))["applied"] is False


def test_with_the_crds_the_rule_is_applied_and_present(kube: FakeKubeApi, monitoring: FakeMonitoring) -> None:
    api = api_client(kube)
    assert alert_watch.rules_status(api, settings())["present"] is False
    result = alert_watch.apply_rules(api, settings())
    assert result["applied"] is True and "DatabaseDown" in result["alerts"]
    stored = kube.get("prometheusrules", alert_watch.RULE_NAME, NS)
    assert stored is not None and stored["spec"]["groups"][0]["rules"][3]["alert"] == "DatabaseDown"
    assert alert_watch.apply_rules(api, settings())["applied"] is True  # idempotent (server-side apply)
    assert alert_watch.rules_status(api, settings())["present"] is True


def test_alerts_through_the_service_proxy_become_the_records_detection_judges(
        kube: FakeKubeApi, monitoring: FakeMonitoring) -> None:
    api = api_client(kube)
    history = History()
    feed = EventFeed(lambda m: alerts.events(), history)
    history.add(ALERT, "expected", detail={"alerts": ["DatabaseDown"]})
    alerts = alert_watch.KubernetesAlerts(api, settings())
    alerts.start()
    try:
        time.sleep(0.2)
        fault_t = history.now()
        monitoring.pend("DatabaseDown")
        wait_for(lambda: any(e.op == "pending" for e in alerts.events()), 5)
        monitoring.fire("DatabaseDown")
        wait_for(lambda: {"firing", "rule-firing"} <= {e.op for e in alerts.events()}, 5)
        recovered_t = history.now()
        monitoring.resolve("DatabaseDown")
        wait_for(lambda: any(e.op == "resolved" for e in alerts.events()), 5)
    finally:
        alerts.stop()
    feed.poll()
    ops = [r.op for r in history.select(ALERT)]
    assert ops[:2] == ["expected", "watching"] and ops[-1] == "stopped"
    assert ops.index("pending") < ops.index("firing") < ops.index("resolved") and "rule-firing" in ops
    watching = history.select(ALERT, "watching")[0].detail
    assert watching["rules"]["applied"] is True and watching["for_s"]["DatabaseDown"] == 60
    # the proxy path, as the official client sent it (slashes of the path kept)
    assert any(unquote(r.path) == f"/api/v1/namespaces/monitoring/services/{ALERTMANAGER}:9093/proxy/api/v2/alerts"
               for r in kube.requests)
    result = detect(history.sorted(), fault_t=fault_t, recovered_t=recovered_t)
    assert result is not None and result.unreachable is None and not result.missed and not result.false
    by_name = {m.name: m for m in measurements(result)}
    assert by_name["detection_s"].value is not None and 0 < by_name["detection_s"].value < 5
    assert by_name["detection_s"].detail["bound_s"] == 63.0  # scrape 1 + evaluation 1 + for 60 + group_wait 1
    assert by_name["alert_cleared_s"].value is not None and by_name["alert_cleared_s"].value < 5
    assert by_name["missed_alerts"].value == 0


def test_an_alert_firing_before_the_run_is_a_false_alert_and_monitoring_down_is_inconclusive(
        kube: FakeKubeApi, monitoring: FakeMonitoring) -> None:
    monitoring.fire("RedisDown", at=time.time() - 30)
    alerts = alert_watch.KubernetesAlerts(api_client(kube), settings())
    alerts.start()
    try:
        wait_for(lambda: any(e.op == "firing" for e in alerts.events()), 5)
        monitoring.down()
        wait_for(lambda: any(e.op == "unreachable" for e in alerts.events()), 5)
    finally:
        alerts.stop()
    firing = next(e for e in alerts.events() if e.op == "firing")
    assert firing.detail["alert"] == "RedisDown" and firing.detail["before_start"] is True
    assert firing.detail["fired_s_before"] >= 29
    unreachable = next(e for e in alerts.events() if e.op == "unreachable")
    assert "503" in unreachable.detail["error"]


def test_the_observer_adds_the_alerts_only_when_monitoring_is_enabled(kube: FakeKubeApi) -> None:
    from resilience.targets.kubernetes.observer import KubernetesObserver
    api = api_client(kube)
    assert isinstance(alert_watch.observer(api, settings(enabled=False)), KubernetesObserver)
    assert isinstance(alert_watch.observer(api, settings()), alert_watch.ObservedWithAlerts)


def test_rbac_grants_the_rule_and_the_proxy_only_with_monitoring_enabled() -> None:
    from resilience.targets.kubernetes.rbac import rbac_manifests
    off = [(m["kind"], m["metadata"]["name"]) for m in rbac_manifests(settings(enabled=False))]
    assert ("Role", alert_watch.ALERTS_ROLE) not in off
    roles = {m["metadata"]["namespace"]: m["rules"] for m in rbac_manifests(settings())
             if m["kind"] == "Role" and m["metadata"]["name"] == alert_watch.ALERTS_ROLE}
    assert roles["monitoring"] == [{"apiGroups": [""], "resources": ["services/proxy"], "verbs": ["get"]}]
    assert roles[NS] == [{"apiGroups": ["monitoring.coreos.com"], "resources": ["prometheusrules"],
                          "verbs": ["get", "create", "patch"]}]


@pytest.mark.parametrize("installed", [True, False])
def test_up_applies_the_rule_status_reports_it_and_a_run_watches_the_alerts(kube: FakeKubeApi, installed: bool) -> None:
    """The platform end to end: `up` applies the PrometheusRule when the CRD exists, `status` says whether it is
    there (and why not), and start_observing / events_since bring the alerts into the run."""
    from resilience.targets.kubernetes.manifests import BackendEndpoints
    from resilience.targets.kubernetes.platform import KubernetesPlatform
    stack = install_monitoring(kube) if installed else None
    s = replace(settings(), kubernetes=replace(settings().kubernetes, allowed_contexts=("fake",)))
    platform = KubernetesPlatform(s, "fake", api_client=api_client(kube), wait_timeout_s=10, echo=lambda line: None,
                                  backends=BackendEndpoints(postgres_host="pg.example", redis_host="redis.example"))
    try:
        status = platform.up()
        assert status.detail["alert_rules"]["present"] is installed, status.detail["alert_rules"]
        if not installed:
            assert "monitoring.coreos.com/v1" in status.detail["alert_rules"]["why"]
            return
        assert stack is not None
        start = time.monotonic()
        platform.start_observing()
        stack.fire("LowAvailability")
        wait_for(lambda: any(e.source == ALERT and e.op == "firing" for e in platform.events_since(start)), 5)
        platform.stop_observing()
        ops = [e.op for e in platform.events_since(start) if e.source == ALERT]
        assert ops[0] == "watching" and "firing" in ops and ops[-1] == "stopped"
    finally:
        if stack is not None:
            stack.stop()


def test_a_refused_apply_is_reported_not_raised(kube: FakeKubeApi, monitoring: FakeMonitoring,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the resilience-alerts Role the API server answers 403: `up` goes on and the status says why."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    def forbidden(*args: object, **kwargs: object) -> None:
        raise ApiException(status=403, reason="Forbidden")
    monkeypatch.setattr(client.CustomObjectsApi, "patch_namespaced_custom_object", forbidden)
    result = alert_watch.apply_rules(api_client(kube), settings())
    assert result["applied"] is False and "HTTP 403" in result["why"] and "deploy/rbac.yaml" in result["why"]


def test_the_dry_run_plan_names_the_rule_only_with_monitoring_enabled() -> None:
    assert alert_watch.plan_lines(settings(enabled=False)) == []
    [line] = alert_watch.plan_lines(settings())
    assert f"/namespaces/{NS}/prometheusrules/{alert_watch.RULE_NAME}" in line
