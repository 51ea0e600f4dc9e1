"""CloudWatch alarms in a whole aws run from the CLI (the fakes of test_cloud_end_to_end.py, with FakeAws' alarms,
tests/fakes/aws_cloudwatch.py): the alarms' history measures detection like the local stack's Alertmanager, and a
stop alarm going to ALARM mid-fault aborts the run, which rolls back and is sealed as aborted."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from test_cloud_end_to_end import (CONTEXT, REGION, Cloud, _cli, _is_fault_phase, _records, cloud,  # noqa: F401
                                   fake_aws, why_not_pass)

from resilience.checkers.measurement import MET
from resilience.history import ALERT, FAULT, OK
from tests.fakes.aws_cloudwatch import install_alarms
from tests.fakes.aws_services import FakeAws


def with_alarms(cloud: Cloud, fake: FakeAws, **alarms: Any) -> Any:
    """The alarms exist in the fake account (10 s period, 1 of 1), and the settings file names them."""
    client = boto3.client("cloudwatch", endpoint_url=fake.url, region_name=REGION)
    for name in ("db-down", "availability", "stop-alarm"):
        client.put_metric_alarm(AlarmName=name, Namespace="AWS/RDS", MetricName="DatabaseConnections",
                                Statistic="Minimum", Period=10, EvaluationPeriods=1, Threshold=1,
                                ComparisonOperator="LessThanThreshold")
        client.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="test start")
    settings = yaml.safe_load(cloud.config.read_text())
    settings["aws"]["alarms"] = {"poll_s": 0.2, **alarms}
    cloud.config.write_text(yaml.safe_dump(settings))
    return client


def run(cloud: Cloud, capsys: pytest.CaptureFixture[str], experiment: str) -> tuple[int, Path, dict[str, Any]]:
    code, out, err = _cli(capsys, "run", experiment, "--target", "aws", "--context", CONTEXT, "--config",
                          str(cloud.config), "--profile", "short", "--yes", "--reports-dir", str(cloud.reports),
                          "--quiet", "--seed", "7")
    run_dir = next(d for d in cloud.reports.iterdir() if d.is_dir())
    return code, run_dir, json.loads((run_dir / "result.json").read_text())


def test_the_alarm_history_measures_detection_in_an_aws_run(
        cloud: Cloud, fake_aws: FakeAws, capsys: pytest.CaptureFixture[str]) -> None:
    alarms = install_alarms(fake_aws, evaluation_delay_s=0.0)
    with_alarms(cloud, fake_aws, detection=["db-down=DatabaseDown", "availability=LowAvailability"])
    done = threading.Event()

    def metric_follows_the_writer() -> None:  # the alarms' metric: the database answers or not
        down = False
        while not done.wait(0.02):
            now_down = not fake_aws.database_available(cloud.aws.cluster)
            if now_down != down:
                for name in ("db-down", "availability"):
                    (alarms.breach if now_down else alarms.clear)(name, REGION)
                down = now_down
    follower = threading.Thread(target=metric_follows_the_writer, daemon=True)
    follower.start()
    try:
        code, run_dir, result = run(cloud, capsys, "db-failover")
    finally:
        done.set()
    measured = {m["name"]: m for m in result["measurements"]}
    assert "detection_s" in measured, why_not_pass(result)
    detection = measured["detection_s"]
    assert detection["status"] == MET and detection["detail"]["alert"] in ("DatabaseDown", "LowAvailability"), detection
    assert detection["detail"]["config"]["source"] == "cloudwatch-alarm-history"
    assert measured["missed_alerts"]["value"] == 0 and measured["false_alerts"]["value"] == 0
    assert measured["alert_cleared_s"]["value"] is not None
    ops = [(r.op, (r.detail or {}).get("alarm")) for r in _records(run_dir) if r.source == ALERT]
    assert ("firing", "db-down") in ops and ("resolved", "db-down") in ops, ops
    print(f"\nDETECTION db-failover on aws (CloudWatch): {detection['value']} s from the impact "
          f"({detection['detail']['from_injection_s']} s from the injection, bound {detection['detail']['bound_s']} s), "
          f"cleared {measured['alert_cleared_s']['value']} s after the recovery")


def test_a_stop_alarm_mid_fault_aborts_the_run_and_rolls_back(
        cloud: Cloud, fake_aws: FakeAws, capsys: pytest.CaptureFixture[str]) -> None:
    install_alarms(fake_aws)
    client = with_alarms(cloud, fake_aws, stop=["stop-alarm"])
    fired: list[float] = []

    def alarm_mid_fault() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not fired:
            for partial in cloud.reports.glob("*/history.partial.jsonl"):
                if any(_is_fault_phase(line) for line in partial.read_text(errors="replace").splitlines()):
                    client.set_alarm_state(AlarmName="stop-alarm", StateValue="ALARM", StateReason="5xx above 50%")
                    fired.append(time.monotonic())
                    return
            time.sleep(0.05)
    threading.Thread(target=alarm_mid_fault, daemon=True).start()
    code, run_dir, result = run(cloud, capsys, "zone-failure")
    ended = time.monotonic()
    assert fired, "the run never reached its fault phase"
    assert result["verdict"] == "aborted" and code == 1, (code, why_not_pass(result))
    assert result["aborted_reason"].startswith("stop condition: CloudWatch alarm stop-alarm went to ALARM"), \
        result["aborted_reason"]
    records = _records(run_dir)
    assert [r.status for r in records if r.source == FAULT and r.op == "rollback"] == [OK]
    assert [r.op for r in records if r.source == ALERT and r.op == "stop-condition"] == ["stop-condition"]
    steps = json.loads((run_dir / "rollback.json").read_text())["steps"]
    assert all(s["status"] in ("done", "not-injected") for s in steps), steps
    assert [n["metadata"]["name"] for n in cloud.kube.objects("nodes") if n["spec"].get("unschedulable")] == []
    abort = next(r for r in records if r.op == "abort")
    stop = next(r for r in records if r.op == "stop-condition")
    print(f"\nSTOP zone-failure on aws: aborted {abort.t - stop.t:.2f} s after the alarm's transition; run ended "
          f"{ended - fired[0]:.1f} s after the alarm was set")
