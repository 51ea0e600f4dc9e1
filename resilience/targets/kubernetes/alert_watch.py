"""The platform's alerts on Kubernetes: the rules shipped as a PrometheusRule, the alerts read from an existing
Prometheus/Alertmanager (kube-prometheus-stack is the usual case) through the API server's service proxy.

- Rules: deploy/monitoring/alerts.yaml, the production profile as written (one source of truth), becomes a
  `PrometheusRule` (monitoring.coreos.com/v1, the Prometheus Operator's CRD) in `kubernetes.namespace`,
  labelled with `kubernetes.monitoring.rule_labels` (kube-prometheus-stack's Prometheus selects rules by
  `release: <release>`). Applied (server-side apply) by `up` when the API serves the CRD; otherwise the
  status says why not (`rules_status`).
- Alerts: during a run, every `poll_s`, `GET /api/v2/alerts` on Alertmanager
  (https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml, gettableAlerts) and
  `GET /api/v1/rules` on Prometheus (pending alerts and their activeAt), both through
  `/api/v1/namespaces/{ns}/services/{name}:{port}/proxy/{path}` (kubernetes.io/docs/tasks/
  access-application-cluster/access-cluster-services/#manually-constructing-apiserver-proxy-urls) with the
  official client's credentials (RBAC: `services/proxy` get in the monitoring namespace). targets/alert_feed.py
  makes the same `alert` records the local stack's webhook does, so checkers/detection.py judges both alike.

Difference from the local stack: `firing` is when the harness first saw the alert active in Alertmanager
(up to `poll_s` late), not a notification: Alertmanager's API does not say when it notified its receivers.
"""

from __future__ import annotations

import json
from typing import Any

from ...config import Settings
from ...monitoring_settings import KubeMonitoringSettings, label_pairs
from ..alert_feed import AlertFeed
from ..base import PlatformEvent
from ..local import alert_rules
from . import discovery
from .manifests import MANAGED_BY_LABEL, MANAGER

GROUP, VERSION, PLURAL, KIND = "monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule"
RULE_NAME = "resilience-platform-alerts"
PROXY = "/api/v1/namespaces/{namespace}/services/{name}/proxy/"
# RBAC (rbac.py, with kubernetes.monitoring.enabled): Role `resilience-alerts` in the app namespace (the
# PrometheusRule: server-side apply = create + patch) and in the monitoring namespace (the two APIs via the proxy)
ALERTS_ROLE = "resilience-alerts"
RULE_RULES: tuple[tuple[str, tuple[str, ...], list[str]], ...] = ((GROUP, (PLURAL,), ["get", "create", "patch"]),)
PROXY_RULES: tuple[tuple[str, tuple[str, ...], list[str]], ...] = (("", ("services/proxy",), ["get"]),)
ALERTS_PATH, RULES_PATH = "api/v2/alerts", "api/v1/rules"


def prometheus_rule(settings: Settings) -> dict[str, Any]:
    """deploy/monitoring/alerts.yaml (production windows) as a PrometheusRule manifest."""
    m = settings.kubernetes.monitoring
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": RULE_NAME, "namespace": settings.kubernetes.namespace,
                         "labels": {MANAGED_BY_LABEL: MANAGER, **label_pairs(m.rule_labels)}},
            "spec": {"groups": alert_rules.load()["groups"]}}


def crd_served(api_client: Any) -> bool:
    """API discovery: does the API server serve monitoring.coreos.com/v1 prometheusrules (the CRD is installed)?"""
    return discovery.serves(api_client, GROUP, VERSION, PLURAL)


def apply_rules(api_client: Any, settings: Settings) -> dict[str, Any]:
    """Server-side apply the PrometheusRule when the CRD exists; what happened, for the status."""
    m = settings.kubernetes.monitoring
    if not m.enabled or not m.apply_rules:
        return {"applied": False, "why": "kubernetes.monitoring.enabled / apply_rules is off"}
    if not crd_served(api_client):
        return {"applied": False, "why": f"the cluster does not serve {GROUP}/{VERSION} {PLURAL} (no Prometheus "
                                         f"Operator CRDs): install kube-prometheus-stack, or load "
                                         f"deploy/monitoring/alerts.yaml into your Prometheus yourself"}
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    body = prometheus_rule(settings)
    try:
        client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
            GROUP, VERSION, settings.kubernetes.namespace, PLURAL, RULE_NAME, body, field_manager=MANAGER, force=True,
            _content_type="application/apply-patch+yaml")
    except ApiException as exc:  # e.g. 403: RBAC without the resilience-alerts Role (rbac.py)
        return {"applied": False, "why": f"server-side apply of PrometheusRule {RULE_NAME} answered HTTP {exc.status} "
                                         f"{exc.reason}: grant the harness prometheusrules create/patch "
                                         f"(deploy/rbac.yaml with kubernetes.monitoring.enabled)"}
    return {"applied": True, "name": RULE_NAME, "namespace": settings.kubernetes.namespace,
            "alerts": sorted(alert_rules.windows(alert_rules.load()))}


def plan_lines(settings: Settings) -> list[str]:
    """What `up` does about the rules, for a dry run (nothing when monitoring is off)."""
    m = settings.kubernetes.monitoring
    if not m.enabled or not m.apply_rules:
        return []
    ns = settings.kubernetes.namespace
    return [f"GET /apis/{GROUP}/{VERSION} (is the PrometheusRule CRD installed?); if so, server-side apply "
            f"PATCH /apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{RULE_NAME} (deploy/monitoring/alerts.yaml)"]


def rules_status(api_client: Any, settings: Settings) -> dict[str, Any]:
    """For `status`: is the PrometheusRule there (or why it cannot be)?"""
    m = settings.kubernetes.monitoring
    if not m.enabled:
        return {"present": False, "why": "kubernetes.monitoring.enabled is off"}
    if not crd_served(api_client):
        return {"present": False, "why": f"the cluster does not serve {GROUP}/{VERSION} {PLURAL}"}
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    try:
        client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            GROUP, VERSION, settings.kubernetes.namespace, PLURAL, RULE_NAME)
    except ApiException as exc:
        if exc.status == 404:
            return {"present": False, "why": f"no PrometheusRule {RULE_NAME} yet (`resilience up` applies it)"}
        return {"present": False, "why": f"reading PrometheusRule {RULE_NAME} answered HTTP {exc.status} {exc.reason}"}
    return {"present": True, "name": RULE_NAME}


def proxy_get(api_client: Any, namespace: str, service: str, port: str, path: str, timeout_s: float = 10.0
              ) -> tuple[int, Any]:
    """GET a Service's `path` through the API server (path written into the URL as is: its slashes unescaped)."""
    request = api_client.param_serialize(
        method="GET", resource_path=PROXY + path, path_params={"namespace": namespace, "name": f"{service}:{port}"},
        header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
    response = api_client.call_api(*request, _request_timeout=timeout_s)
    body = response.read()
    status = int(response.status)
    try:
        return status, json.loads(body) if status == 200 else body[:200].decode("utf-8", errors="replace")
    except ValueError:
        return status, None


def configuration(m: KubeMonitoringSettings) -> dict[str, Any]:
    """What the detection bound is made of (the `watching` record): production `for:` windows, the intervals."""
    return {"scrape_s": m.scrape_s, "evaluation_s": m.evaluation_s, "group_wait_s": m.group_wait_s,
            "poll_s": m.poll_s, "scale": 1, "for_s": alert_rules.windows(alert_rules.load()),
            "source": "alertmanager-api-v2",
            "alertmanager": f"{m.namespace}/{m.alertmanager_service}:{m.alertmanager_port}",
            "prometheus": f"{m.namespace}/{m.prometheus_service}:{m.prometheus_port}"}


class KubernetesAlerts:
    """Reads Alertmanager's alerts and Prometheus's rules every `poll_s` between start() and stop()."""

    def __init__(self, api_client: Any, settings: Settings) -> None:
        self.api = api_client
        self.settings = settings
        self.m = settings.kubernetes.monitoring
        self.feed = AlertFeed(self.look, self.m.poll_s)

    def start(self) -> None:
        self.feed.start({**configuration(self.m), "rules": apply_rules(self.api, self.settings)})

    def stop(self) -> None:
        self.feed.stop()

    def events(self) -> list[PlatformEvent]:
        return self.feed.since(0.0)

    def look(self, feed: AlertFeed) -> None:
        m = self.m
        for what, service, port, path in (("alertmanager", m.alertmanager_service, m.alertmanager_port, ALERTS_PATH),
                                          ("prometheus", m.prometheus_service, m.prometheus_port, RULES_PATH)):
            try:
                status, body = proxy_get(self.api, m.namespace, service, port, path)
            except Exception as exc:  # noqa: BLE001 - no answer from the API server at all
                feed.failed(what, f"GET {path} via the API server: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            if status != 200 or body is None:
                feed.failed(what, f"GET {path} through the service proxy answered HTTP {status}: {body}")
                continue
            feed.answered(what)
            if what == "alertmanager":
                feed.alertmanager_alerts(list(body) if isinstance(body, list) else [])
            else:
                feed.prometheus_rules(((body.get("data") or {}).get("groups") or []) if isinstance(body, dict) else [])


class ObservedWithAlerts:
    """The namespace's watches (observer.py) and the alerts, started, stopped and read as one observer."""

    def __init__(self, observer: Any, alerts: KubernetesAlerts) -> None:
        self.observer, self.alerts = observer, alerts

    def start(self) -> None:
        self.observer.start()
        self.alerts.start()

    def stop(self) -> None:
        self.observer.stop()
        self.alerts.stop()

    def events(self) -> list[PlatformEvent]:
        return self.observer.events() + self.alerts.events()


def observer(api_client: Any, settings: Settings) -> Any:
    """What `KubernetesPlatform.start_observing` starts: the watches, plus the alerts when monitoring is enabled."""
    from .observer import KubernetesObserver
    watches = KubernetesObserver(api_client, settings.kubernetes.namespace)
    if not settings.kubernetes.monitoring.enabled:
        return watches
    return ObservedWithAlerts(watches, KubernetesAlerts(api_client, settings))
