"""Where a cloud target's alerts come from: an existing Prometheus/Alertmanager on Kubernetes, CloudWatch alarms on AWS.

Two small sections, nested in `kubernetes:` (as `monitoring:`) and `aws:` (as `alarms:`). The defaults
name a kube-prometheus-stack installed as release "kube-prometheus-stack" in namespace "monitoring"
(its chart's Service names and ports, its default 30 s scrape and evaluation intervals and its
Alertmanager's `group_wait: 30s`). Off until `enabled: true`: a cluster without that stack is the
common case and must not turn every run's detection inconclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UserError


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


DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a Kubernetes namespace or Service name (RFC 1123)
PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?")  # a Service port's name (IANA_SVC_NAME, <= 15)
LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
ALARM_NAME_MAX = 255  # CloudWatch PutMetricAlarm: AlarmName is 1..255 characters


def validate_monitoring(m: KubeMonitoringSettings, where: str) -> None:
    """Names the API server would refuse, and intervals that would make detection bounds or polling nonsense."""
    section = "kubernetes.monitoring"
    for name in ("namespace", "alertmanager_service", "prometheus_service"):
        value = getattr(m, name)
        if not DNS_LABEL.fullmatch(value):
            raise UserError(f"{where}: '{section}.{name}' must be a Kubernetes name (lowercase letters, digits, '-', "
                            f"at most 63), e.g. monitoring or kube-prometheus-stack-alertmanager; got {value!r}.")
    for name in ("alertmanager_port", "prometheus_port"):
        value = getattr(m, name)
        if not (1 <= int(value) <= 65535 if value.isdigit() else bool(PORT_NAME.fullmatch(value))):
            raise UserError(f"{where}: '{section}.{name}' must be the Service's port number (1..65535) or port name "
                            f"(e.g. http-web); got {value!r}.")
    for item in m.rule_labels:
        key, eq, _ = item.partition("=")
        if not eq or not LABEL_KEY.fullmatch(key.strip()):
            raise UserError(f"{where}: '{section}.rule_labels' entries are key=value labels the Prometheus's "
                            f"ruleSelector wants, e.g. release=kube-prometheus-stack; got {item!r}.")
    for name, low in (("scrape_s", 1.0), ("evaluation_s", 1.0), ("group_wait_s", 0.0)):
        if not low <= getattr(m, name) <= 3600:
            raise UserError(f"{where}: '{section}.{name}' must be {low:g}..3600 s (your Prometheus's and "
                            f"Alertmanager's own setting); got {getattr(m, name)}.")
    if not 0.05 <= m.poll_s <= 60:
        raise UserError(f"{where}: '{section}.poll_s' (how often the APIs are read during a run) must be 0.05..60 s; "
                        f"got {m.poll_s}.")


def validate_alarms(a: CloudWatchAlarmSettings, where: str) -> None:
    """Alarm names CloudWatch would refuse, alert names no experiment can expect, a poll that would be throttled."""
    from .targets.local.alert_rules import RULES_PATH, load, windows
    known = sorted(windows(load()))
    seen: set[str] = set()
    for setting, items in (("detection", a.detection), ("stop", a.stop)):
        for item in items:
            alarm, eq, alert = (part.strip() for part in item.partition("="))
            if not 1 <= len(alarm) <= ALARM_NAME_MAX or (setting == "stop" and eq):
                form = "alarm-name or alarm-name=AlertName" if setting == "detection" else "an alarm name"
                raise UserError(f"{where}: 'aws.alarms.{setting}' entries are {form} (a CloudWatch alarm name is "
                                f"1..{ALARM_NAME_MAX} characters); got {item!r}.")
            if eq and alert not in known:
                raise UserError(f"{where}: 'aws.alarms.detection' entry {item!r} maps the alarm to {alert!r}, which is "
                                f"not a rule in {RULES_PATH} ({', '.join(known)}); name one of those, or write the "
                                f"alarm alone.")
            if setting == "detection" and alarm in seen:
                raise UserError(f"{where}: 'aws.alarms.detection' names the alarm {alarm!r} twice; list each alarm once.")
            if setting == "detection":
                seen.add(alarm)
    if not 0.1 <= a.poll_s <= 300:
        raise UserError(f"{where}: 'aws.alarms.poll_s' (how often DescribeAlarmHistory is read) must be 0.1..300 s; "
                        f"got {a.poll_s}.")
