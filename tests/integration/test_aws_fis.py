"""Faults as AWS FIS experiments, against FakeAws' FIS (tests/fakes/aws_fis.py): the fake refuses what the API
refuses and runs the documented lifecycle; the harness records the template before the start, stops the
experiment on rollback (the network comes back), and touches no template it did not make."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import AwsSettings, Settings  # noqa: E402
from resilience.errors import UserError  # noqa: E402
from resilience.fault_registry import fault_call  # noqa: E402
from resilience.targets.aws.nemesis import AwsNemesis  # noqa: E402
from resilience.targets.aws.services import AwsServices  # noqa: E402
from resilience.targets.base import RollbackStep  # noqa: E402
from tests.fakes.aws_platform import MOTO_ACCOUNT, AwsPlatform, provision  # noqa: E402
from tests.fakes.aws_services import FakeAws, use_fake_credentials  # noqa: E402
from tests.fakes.waiting import wait_for  # noqa: E402

REGION = "ap-south-1"
ZONES = ("ap-south-1a", "ap-south-1b", "ap-south-1c")
ROLE = f"arn:aws:iam::{MOTO_ACCOUNT}:role/resilience-fis"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAws]:
    with FakeAws(time_scale=0.01) as server:
        yield server


@pytest.fixture
def made(fake: FakeAws, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> AwsPlatform:
    use_fake_credentials(monkeypatch, REGION)
    import hashlib
    suffix = "f" + hashlib.sha1(request.node.name.encode()).hexdigest()[:12]
    return provision(fake.url, REGION, ZONES, suffix,
                     cache_zones=[ZONES[1], ZONES[2]])


def nemesis(fake: FakeAws, made: AwsPlatform, **aws: Any) -> AwsNemesis:
    settings = Settings(aws=replace(AwsSettings(
        allowed_accounts=(MOTO_ACCOUNT,), region=REGION, rds_cluster=made.cluster, elasticache_group=made.group,
        endpoint_url=fake.url, allowed_regions=(REGION,), allowed_resources=(made.cluster, made.group, made.vpc,
                                                                              *made.subnets),
        blackhole_subnets=True, fis_role_arn=ROLE), **aws))
    return AwsNemesis(AwsServices(settings, session=made.session))


def fis_client(made: AwsPlatform, fake: FakeAws) -> Any:
    return made.session.client("fis", endpoint_url=fake.url)


def template(made: AwsPlatform, **change: Any) -> dict[str, Any]:
    arn = f"arn:aws:rds:{REGION}:{MOTO_ACCOUNT}:cluster:{made.cluster}"
    base = {"clientToken": "t", "description": "d", "roleArn": ROLE, "stopConditions": [{"source": "none"}],
            "actions": {"a": {"actionId": "aws:rds:failover-db-cluster", "targets": {"Clusters": "c"}}},
            "targets": {"c": {"resourceType": "aws:rds:cluster", "resourceArns": [arn], "selectionMode": "ALL"}},
            "tags": {"k": "v"}}
    return {**base, **change}


@pytest.mark.parametrize("change, message", [
    ({"roleArn": "arn:aws:iam::123456789012:user/someone"}, "not the ARN of an IAM role"),
    ({"actions": {"a": {"actionId": "aws:ec2:terminate-everything", "targets": {"Clusters": "c"}}}}, "not supported"),
    ({"actions": {"a": {"actionId": "aws:network:disrupt-connectivity", "targets": {"Subnets": "c"},
                        "parameters": {"duration": "PT5M"}}}}, "needs a target 'Subnets' of type aws:ec2:subnet"),
    ({"stopConditions": [{"source": "aws:cloudwatch:alarm", "value": "arn:aws:sns:ap-south-1:1:topic-x"}]}, "CloudWatch alarm ARN"),
])
def test_the_fake_refuses_templates_the_api_refuses(fake: FakeAws, made: AwsPlatform, change: dict[str, Any],
                                                    message: str) -> None:
    with pytest.raises(ClientError) as info:
        fis_client(made, fake).create_experiment_template(**template(made, **change))
    assert info.value.response["Error"]["Code"] == "ValidationException" and message in str(info.value)


def test_an_experiment_runs_the_documented_lifecycle_and_a_missing_target_fails_it(
        fake: FakeAws, made: AwsPlatform) -> None:
    fis = fis_client(made, fake)
    made_template = fis.create_experiment_template(**template(made))["experimentTemplate"]
    experiment = fis.start_experiment(clientToken="s", experimentTemplateId=made_template["id"])["experiment"]
    assert experiment["state"]["status"] == "pending"
    seen = []

    def status() -> str:
        state = str(fis.get_experiment(id=experiment["id"])["experiment"]["state"]["status"])
        if not seen or seen[-1] != state:
            seen.append(state)
        return state
    wait_for(lambda: status() == "completed", timeout_s=20, what="the experiment to complete")
    assert [s for s in ("pending", "initiating", "running", "completed") if s in seen][-2:] == ["running", "completed"]
    cluster = made.rds.describe_db_clusters(DBClusterIdentifier=made.cluster)["DBClusters"][0]
    assert cluster["Status"] in ("failing-over", "available")  # FIS called FailoverDBCluster

    gone = template(made, clientToken="g", targets={"c": {"resourceType": "aws:rds:cluster", "selectionMode": "ALL",
                                                          "resourceArns": [f"arn:aws:rds:{REGION}:{MOTO_ACCOUNT}:"
                                                                           f"cluster:no-such-cluster"]}})
    missing = fis.create_experiment_template(**gone)["experimentTemplate"]
    failed = fis.start_experiment(clientToken="f", experimentTemplateId=missing["id"])["experiment"]
    wait_for(lambda: fis.get_experiment(id=failed["id"])["experiment"]["state"]["status"] == "failed", timeout_s=20)
    assert "Target resolution returned empty set" in fis.get_experiment(id=failed["id"])["experiment"]["state"]["reason"]


def test_a_database_failover_through_fis_records_the_template_first_and_rollback_stops_it(
        fake: FakeAws, made: AwsPlatform) -> None:
    aws = nemesis(fake, made)
    recorded: list[RollbackStep] = []
    writer = aws.services.observer.read().writer()
    step = aws.inject(fault_call("fail_over_database", {}), record=recorded.append)
    assert [s.arguments["experiment_id"] for s in recorded][0] is None  # the template, before the start
    assert recorded[-1] == step and step.capability == "stop_fis_failover" and step.arguments["experiment_id"]
    assert step.arguments["actions"] == ["aws:rds:failover-db-cluster"]
    wait_for(lambda: aws.services.observer.read().writer() != writer, timeout_s=20, what="the writer to change")
    aws.rollback(step)
    aws.rollback(RollbackStep(**step.to_json()))  # twice, and from rollback.json's form
    with pytest.raises(ClientError, match="does not exist"):
        fis_client(made, fake).get_experiment_template(id=step.arguments["template_id"])
    assert "fis:StartExperiment" in "\n".join(aws.plan(fault_call("fail_over_database", {})))


def test_a_zone_loss_through_fis_cuts_the_subnets_until_the_rollback_stops_it(fake: FakeAws, made: AwsPlatform) -> None:
    aws = nemesis(fake, made)
    before = made.network_acls()
    step = aws.inject(fault_call("lose_zone", {"zone": ZONES[1]}))
    assert step.capability == "stop_fis_zone"
    assert sorted(step.arguments["actions"]) == ["aws:elasticache:replicationgroup-interrupt-az-power",
                                                 "aws:network:disrupt-connectivity", "aws:rds:failover-db-cluster"]
    during = wait_for(lambda: made.network_acls()[made.subnets[1]] != before[made.subnets[1]] and made.network_acls(),
                      timeout_s=20, what="the subnet cut")
    assert {s: a for s, a in during.items() if s != made.subnets[1]} == {
        s: a for s, a in before.items() if s != made.subnets[1]}
    aws.rollback(step)
    assert made.network_acls() == before  # FIS put the subnet back when the experiment stopped


def test_stop_cache_through_fis_powers_off_the_primary_s_zone(fake: FakeAws, made: AwsPlatform) -> None:
    aws = nemesis(fake, made)
    primary_zone, _ = aws.cache_zones()
    step = aws.inject(fault_call("stop_cache", {"mode": "failover"}))
    assert step.capability == "stop_fis_cache" and step.arguments["zone"] == primary_zone == ZONES[1]
    wait_for(lambda: aws.cache_zones()[0] != primary_zone, timeout_s=20, what="the primary to move")
    aws.rollback(step)


def test_a_forged_step_naming_a_template_we_did_not_make_is_refused(fake: FakeAws, made: AwsPlatform) -> None:
    theirs = fis_client(made, fake).create_experiment_template(**template(made, clientToken="x"))["experimentTemplate"]
    aws = nemesis(fake, made)
    forged = RollbackStep("stop_fis_failover", {"template_id": theirs["id"], "experiment_id": None})
    with pytest.raises(UserError, match="not one this tool made"):
        aws.rollback(forged)
    assert fis_client(made, fake).get_experiment_template(id=theirs["id"])  # untouched


def test_fis_without_a_role_is_refused_and_chaosaws_stays_available(fake: FakeAws, made: AwsPlatform) -> None:
    assert "aws.fis_role_arn" in (nemesis(fake, made, fis_role_arn=None).argument_refusal(
        fault_call("fail_over_database", {})) or "")
    direct = nemesis(fake, made, fis_role_arn=None, injection="chaosaws")
    assert direct.argument_refusal(fault_call("fail_over_database", {})) is None
    assert direct.inject(fault_call("fail_over_database", {})).capability == "none"


def test_resilience_rollback_stops_the_experiment_a_killed_run_left_running(fake: FakeAws, made: AwsPlatform,
                                                                             tmp_path: Path) -> None:
    """A run killed mid-fault leaves rollback.json naming the template (and, once started, the experiment):
    `resilience rollback` (its replay) stops the experiment and deletes the template."""
    from resilience.recheck import replay_rollbacks
    from resilience.rollbackfile import ROLLBACK, RollbackEntry, write_rollback_file
    aws = nemesis(fake, made)
    before = made.network_acls()
    steps: list[RollbackStep] = []
    aws.inject(fault_call("lose_zone", {"zone": ZONES[1]}), record=steps.append)  # the harness dies here
    before_start = steps[0]  # what rollback.json held had it died before StartExperiment answered
    assert before_start.arguments["experiment_id"] is None
    write_rollback_file(tmp_path / ROLLBACK, {"target": "aws", "steps": [
        RollbackEntry("lose_zone", {"zone": ZONES[1]}, before_start, "injecting").to_json()]})
    wait_for(lambda: made.network_acls() != before, timeout_s=20, what="FIS to cut the subnet")
    replay = replay_rollbacks(tmp_path, aws)  # type: ignore[arg-type]  # the target's rollback is the nemesis'
    assert replay.failed == 0, replay.lines
    fis = fis_client(made, fake)
    experiment = fis.get_experiment(id=steps[-1].arguments["experiment_id"])["experiment"]
    assert experiment["state"]["status"] == "stopped"  # found through the template, stopped
    assert made.network_acls() == before  # FIS put the subnet back
    with pytest.raises(ClientError, match="does not exist"):
        fis.get_experiment_template(id=before_start.arguments["template_id"])
