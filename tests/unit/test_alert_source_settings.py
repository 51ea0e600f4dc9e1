"""kubernetes.monitoring and aws.alarms: values the API server, Prometheus or CloudWatch would refuse, or that
would poll in a busy loop, are refused when the settings load (exit 2), each naming its field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from resilience.config import load_settings
from resilience.errors import UserError


def load(tmp_path: Path, section: str, key: str, value: object) -> None:
    path = tmp_path / "resilience.yaml"
    path.write_text(yaml.safe_dump({section: {key: value}}))
    load_settings(path)


@pytest.mark.parametrize("value, field", [
    ({"namespace": "Monitoring"}, "kubernetes.monitoring.namespace"),
    ({"alertmanager_service": "bad name"}, "kubernetes.monitoring.alertmanager_service"),
    ({"prometheus_port": ""}, "kubernetes.monitoring.prometheus_port"),
    ({"alertmanager_port": "70000"}, "kubernetes.monitoring.alertmanager_port"),
    ({"rule_labels": ["=x"]}, "kubernetes.monitoring.rule_labels"),
    ({"rule_labels": ["release"]}, "kubernetes.monitoring.rule_labels"),
    ({"scrape_s": -3}, "kubernetes.monitoring.scrape_s"),
    ({"evaluation_s": 0}, "kubernetes.monitoring.evaluation_s"),
    ({"poll_s": 0}, "kubernetes.monitoring.poll_s"),
])
def test_a_broken_monitoring_setting_is_refused_naming_it(tmp_path: Path, value: dict[str, object], field: str) -> None:
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        load(tmp_path, "kubernetes", "monitoring", value)


@pytest.mark.parametrize("value, field", [
    ({"detection": ["=DatabaseDown"]}, "aws.alarms.detection"),
    ({"detection": ["db-down="]}, "aws.alarms.detection"),
    ({"detection": ["db-down=NoSuchAlert"]}, "aws.alarms.detection"),
    ({"detection": ["db-down", "db-down=DatabaseDown"]}, "aws.alarms.detection"),
    ({"detection": ["x" * 256]}, "aws.alarms.detection"),
    ({"stop": ["stop=DatabaseDown"]}, "aws.alarms.stop"),
    ({"stop": [" "]}, "aws.alarms.stop"),
    ({"poll_s": 0}, "aws.alarms.poll_s"),
    ({"poll_s": -1}, "aws.alarms.poll_s"),
])
def test_a_broken_alarm_setting_is_refused_naming_it(tmp_path: Path, value: dict[str, object], field: str) -> None:
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        load(tmp_path, "aws", "alarms", value)


def test_the_documented_forms_load(tmp_path: Path) -> None:
    path = tmp_path / "resilience.yaml"
    path.write_text(yaml.safe_dump({
        "kubernetes": {"monitoring": {"enabled": True, "alertmanager_port": "http-web", "prometheus_port": "9090",
                                      "rule_labels": ["release=kube-prometheus-stack", "app.kubernetes.io/part-of=x"]}},
        "aws": {"alarms": {"detection": ["db-down=DatabaseDown", "school-meals-5xx"], "stop": ["stop-alarm"],
                           "poll_s": 10}}}))
    settings = load_settings(path)
    assert settings.kubernetes.monitoring.alertmanager_port == "http-web"
    assert settings.aws.alarms.detection == ("db-down=DatabaseDown", "school-meals-5xx")
