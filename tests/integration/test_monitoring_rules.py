"""The alert rules and the routing, checked by Prometheus's and Alertmanager's own tools.

promtool checks and unit-tests deploy/monitoring/alerts.yaml (and the local profile derived from it);
amtool checks both Alertmanager configurations and the production routing. Skipped with a reason
when the tools are missing (scripts/bootstrap.sh installs them).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from resilience.config import Settings
from resilience.targets.local import alert_rules, monitoring
from resilience.targets.local.services import StackLayout

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "monitoring"
promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="promtool missing: sudo bash scripts/bootstrap.sh")
amtool = pytest.mark.skipif(not shutil.which("amtool"), reason="amtool missing: sudo bash scripts/bootstrap.sh")


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, cwd=cwd)


@promtool
def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = run("promtool", "check", "rules", DEPLOY / "alerts.yaml")
    assert checked.returncode == 0 and "8 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = run("promtool", "test", "rules", DEPLOY / "alerts.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


@promtool
def test_removing_an_expected_alert_fails_its_unit_test(tmp_path: Path) -> None:
    doc = alert_rules.load()
    for group in doc["groups"]:
        group["rules"] = [r for r in group["rules"] if r.get("alert") != "DatabaseDown"]
    (tmp_path / "alerts.yaml").write_text(alert_rules.render(doc))
    shutil.copy(DEPLOY / "alerts.test.yaml", tmp_path)
    tested = run("promtool", "test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert tested.returncode != 0 and "DatabaseDown" in tested.stdout + tested.stderr


@promtool
def test_the_local_profile_fires_after_the_scaled_window(tmp_path: Path) -> None:
    """Local profile: `for: 1m` becomes 2 s; with 1 s evaluations DatabaseDown fires 2 s after the primary is gone."""
    scaled = alert_rules.scaled(alert_rules.load())
    assert alert_rules.windows(scaled)["DatabaseDown"] == 2.0 and alert_rules.windows(scaled)["HighErrorRate"] == 10.0
    (tmp_path / "rules.yaml").write_text(alert_rules.render(scaled))
    checked = run("promtool", "check", "rules", tmp_path / "rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1s",
        "tests": [{"interval": "1s",
                   "input_series": [{"series": 'patroni_primary{job="patroni",instance="postgres-1"}',
                                     "values": "1x4 stale"},
                                    {"series": 'patroni_primary{job="patroni",instance="postgres-2"}',
                                     "values": "0x20"}],
                   "alert_rule_test": [
                       {"eval_time": "6s", "alertname": "DatabaseDown", "exp_alerts": []},
                       {"eval_time": "8s", "alertname": "DatabaseDown",
                        "exp_alerts": [{"exp_labels": {"severity": "critical", "team": "platform"},
                                        "exp_annotations": {"summary": "No PostgreSQL primary"}}]}]}]}))
    tested = run("promtool", "test", "rules", "test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@promtool
def test_the_local_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    settings = Settings()
    stack = dataclasses.replace(settings.stack, state_dir=str(tmp_path))
    layout = StackLayout(stack, lambda zone: "127.0.0.1", lambda zone: None)
    mon = monitoring.Monitoring(layout)
    mon.write_configs()
    checked = run("promtool", "check", "config", mon.home / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@amtool
def test_both_alertmanager_configurations_are_valid(tmp_path: Path) -> None:
    local = tmp_path / "alertmanager.yml"
    local.write_text(yaml.safe_dump(monitoring.alertmanager_config()))
    for path in (DEPLOY / "alertmanager.yml", local):
        checked = run("amtool", "check-config", path)
        assert checked.returncode == 0, checked.stdout + checked.stderr


@amtool
@pytest.mark.parametrize("labels, receivers", [
    (["alertname=DatabaseDown", "severity=critical", "team=platform"], "platform-pagerduty,platform-slack"),
    (["alertname=PaymentFailures", "severity=critical", "team=payments"], "payments-pagerduty"),
    (["alertname=HighLatency", "severity=warning", "team=platform"], "platform-slack"),
    (["alertname=Other", "severity=info"], "platform-email"),
])
def test_production_routing(labels: list[str], receivers: str) -> None:
    routed = run("amtool", "config", "routes", "test", f"--config.file={DEPLOY / 'alertmanager.yml'}",
                 f"--verify.receivers={receivers}", *labels)
    assert routed.returncode == 0, routed.stdout + routed.stderr
