"""Where a cloud target's alerts come from: an existing Prometheus/Alertmanager on Kubernetes, CloudWatch alarms on AWS.

Two small sections, nested in `kubernetes:` (as `monitoring:`) and `aws:` (as `alarms:`). The defaults
name a kube-prometheus-stack installed as release "kube-prometheus-stack" in namespace "monitoring"
(its chart's Service names and ports, its default 30 s scrape and evaluation intervals and its
Alertmanager's `group_wait: 30s`). Off until `enabled: true`: a cluster without that stack is the
common case and must not turn every run's detection inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KubeMonitoringSettings:
    enabled: bool = False  # read alerts from an existing Prometheus/Alertmanager during runs (docs/targets.md)
    namespace: str = "monitoring"  # where Prometheus and Alertmanager run
    alertmanager_service: str = "kube-prometheus-stack-alertmanager"  # its Service (reached via the API server proxy)
    alertmanager_port: str = "9093"  # a port number or name of the Service
    prometheus_service: str = "kube-prometheus-stack-prometheus"  # its Service (for /api/v1/rules: pending alerts)
    prometheus_port: str = "9090"  # a port number or name of the Service
    # labels the Prometheus's ruleSelector wants on a PrometheusRule (kube-prometheus-stack: release=<release>)
    rule_labels: tuple[str, ...] = ("release=kube-prometheus-stack",)
    apply_rules: bool = True  # ship deploy/monitoring/alerts.yaml as a PrometheusRule in kubernetes.namespace
    scrape_s: float = 30.0  # Prometheus's scrape interval: part of the detection bound (checkers/detection.py)
    evaluation_s: float = 30.0  # Prometheus's rule evaluation interval: part of the detection bound
    group_wait_s: float = 30.0  # Alertmanager's group_wait: part of the detection bound
    poll_s: float = 2.0  # how often Alertmanager's and Prometheus's APIs are read during a run


@dataclass(frozen=True)
class CloudWatchAlarmSettings:
    # alarms whose state history is the detection source: "alarm-name" or "alarm-name=AlertName" (the name of
    # the rule in deploy/monitoring/alerts.yaml the experiments' `alerts:` use; default: the alarm's own name)
    detection: tuple[str, ...] = ()
    # alarms that stop a run: when one goes to ALARM the run aborts and rolls back
    stop: tuple[str, ...] = ()
    poll_s: float = 10.0  # how often DescribeAlarmHistory is read during a run


def label_pairs(items: tuple[str, ...]) -> dict[str, str]:
    """("release=kube-prometheus-stack",) -> {"release": "kube-prometheus-stack"} (a bare key maps to "")."""
    return {k.strip(): v.strip() for k, _, v in (item.partition("=") for item in items) if k.strip()}


def alarm_alerts(items: tuple[str, ...]) -> dict[str, str]:
    """alarm name -> the alert name it stands for ("db-down=DatabaseDown"; a bare name stands for itself)."""
    return {k.strip(): (v.strip() or k.strip()) for k, _, v in (item.partition("=") for item in items) if k.strip()}
