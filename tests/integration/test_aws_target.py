"""The aws target against a moto server on 127.0.0.1: allow-list, NACL zone blackhole, RDS and cache failover."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import AwsSettings, Settings  # noqa: E402
from resilience.errors import UserError  # noqa: E402
from resilience.fault_registry import fault_call  # noqa: E402
from resilience.targets.aws.services import AwsServices  # noqa: E402
from resilience.targets.aws.nemesis import AwsNemesis  # noqa: E402
from resilience.targets.base import RollbackStep  # noqa: E402
from tests.fakes.aws_platform import MOTO_ACCOUNT, provision  # noqa: E402

REGION = "ap-south-1"
ZONES = ("ap-south-1a", "ap-south-1b", "ap-south-1c")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def platform(moto_url: str, aws_env: None, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A VPC with one subnet per zone, a Multi-AZ RDS cluster with a writer and a reader, a Redis group."""
    suffix = request.node.name[-20:].replace("_", "-").strip("-").lower()
    made = provision(moto_url, REGION, ZONES, suffix)
    settings = Settings(aws=AwsSettings(allowed_accounts=(MOTO_ACCOUNT,), region=REGION, rds_cluster=made.cluster,
                                        elasticache_group=made.group, endpoint_url=moto_url, allowed_regions=(REGION,),
                                        allowed_resources=(made.cluster, made.group, made.vpc, *made.subnets),
                                        blackhole_subnets=True, injection="chaosaws"))  # FIS: test_aws_fis.py
    return {"settings": settings, "session": made.session, "ec2": made.ec2, "rds": made.rds, "vpc": made.vpc,
            "subnets": made.subnets, "url": moto_url}


def associations(ec2: Any, subnets: list[str]) -> dict[str, str]:
    """subnet id -> network ACL id currently associated."""
    result = {}
    for acl in ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": subnets}])["NetworkAcls"]:
        for association in acl["Associations"]:
            if association["SubnetId"] in subnets:
                result[association["SubnetId"]] = acl["NetworkAclId"]
    return result


def test_account_not_in_allow_list_is_refused(platform: dict[str, Any]) -> None:
    settings = replace(platform["settings"], aws=replace(platform["settings"].aws, allowed_accounts=("999999999999",)))
    with pytest.raises(UserError, match="aws.allowed_accounts") as info:
        AwsServices(settings, session=platform["session"])
    assert MOTO_ACCOUNT in str(info.value)


def test_empty_allow_list_is_refused_even_in_a_dry_run() -> None:
    with pytest.raises(UserError, match="aws.allowed_accounts"):
        AwsServices(Settings(), dry_run=True)


def aws_nemesis(platform: dict[str, Any], **aws: Any) -> AwsNemesis:
    settings = replace(platform["settings"], aws=replace(platform["settings"].aws, **aws))
    return AwsNemesis(AwsServices(settings, session=platform["session"]))


def test_a_region_outside_the_allow_list_is_refused_before_any_call(platform: dict[str, Any]) -> None:
    settings = replace(platform["settings"], aws=replace(platform["settings"].aws, allowed_regions=("eu-west-1",)))
    with pytest.raises(UserError, match="aws.allowed_regions"):
        AwsServices(settings, session=platform["session"])


def test_a_zone_loss_fails_over_the_writer_in_that_zone_and_cuts_only_allowed_subnets(
        platform: dict[str, Any]) -> None:
    ec2, subnets = platform["ec2"], platform["subnets"]
    nemesis = aws_nemesis(platform, allowed_resources=(platform["settings"].aws.rds_cluster,
                                                       platform["settings"].aws.elasticache_group, platform["vpc"]))
    writer_zone = nemesis.services.primary_zone()
    before = associations(ec2, subnets)
    with pytest.raises(UserError, match="aws.allowed_resources"):  # no subnet is allowed: none is cut
        nemesis.inject(fault_call("lose_zone", {"zone": writer_zone}))
    assert associations(ec2, subnets) == before
    nemesis = aws_nemesis(platform, blackhole_subnets=False)
    step = nemesis.inject(fault_call("lose_zone", {"zone": writer_zone}))
    assert step.capability == "none" and step.arguments["failed_over"]["rds"]["promoted"]
    assert nemesis.services.primary_zone() != writer_zone  # the new writer is outside the lost zone
    assert associations(ec2, subnets) == before


def test_forged_rollback_naming_a_foreign_subnet_is_refused(platform: dict[str, Any]) -> None:
    nemesis = aws_nemesis(platform)
    forged = RollbackStep("restore_zone", {"zone": ZONES[0], "vpc_id": platform["vpc"], "blackhole_acl_id": "acl-1",
                                           "subnets": [{"subnet_id": "subnet-elsewhere", "original_acl_id": "acl-2"}]})
    assert "subnet 'subnet-elsewhere' is not in aws.allowed_resources" in (nemesis.rollback_refusal(forged) or "")


def test_status_and_endpoints(platform: dict[str, Any]) -> None:
    target = AwsServices(platform["settings"], session=platform["session"])
    assert target.account == MOTO_ACCOUNT
    status = target.components_status()
    roles = sorted((c.kind, c.role) for c in status.components)
    assert roles.count(("postgres", "primary")) == 1 and roles.count(("postgres", "replica")) == 1
    assert ("redis", "primary") in roles  # moto lists only the primary as a node-group member
    endpoints = target.backend_endpoints()
    assert endpoints.postgres_host and endpoints.redis_host


def test_zone_outage_swaps_nacls_and_rollback_restores_them(platform: dict[str, Any]) -> None:
    ec2, subnets = platform["ec2"], platform["subnets"]
    before = associations(ec2, subnets)
    target = aws_nemesis(platform)

    step = target.inject(fault_call("lose_zone", {"zone": ZONES[0]}))
    assert step.capability == "restore_zone"
    assert step.arguments["subnets"] == [{"subnet_id": subnets[0], "original_acl_id": before[subnets[0]]}]
    blackhole = step.arguments["blackhole_acl_id"]
    during = associations(ec2, subnets)
    assert during[subnets[0]] == blackhole
    assert during[subnets[1]] == before[subnets[1]] and during[subnets[2]] == before[subnets[2]]
    acl = ec2.describe_network_acls(NetworkAclIds=[blackhole])["NetworkAcls"][0]
    assert not [e for e in acl["Entries"] if e["RuleAction"] == "allow"]  # deny-all

    target.rollback(step)
    target.rollback(RollbackStep(**step.to_json()))  # safe twice, and from its JSON form
    assert associations(ec2, subnets) == before
    remaining = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [platform["vpc"]]}])["NetworkAcls"]
    assert blackhole not in {a["NetworkAclId"] for a in remaining}


def test_zone_outage_defaults_to_the_writer_zone(platform: dict[str, Any]) -> None:
    target = aws_nemesis(platform)
    writer_zone = target.services.primary_zone()
    assert writer_zone in ZONES
    step = target.inject(fault_call("lose_zone", {}))
    assert step.arguments["zone"] == writer_zone
    target.rollback(step)


def test_database_failover_goes_through_chaosaws(platform: dict[str, Any]) -> None:
    target = aws_nemesis(platform)
    writer_before = next(c.name for c in target.services.components_status().components if c.role == "primary")
    step = target.inject(fault_call("fail_over_database", {}))
    assert step.capability == "none"
    assert "rollback none:" in "\n".join(target.plan(fault_call("fail_over_database", {})))
    writer_after = next(c.name for c in target.services.components_status().components if c.role == "primary")
    assert writer_after != writer_before  # moto performed the failover chaosaws asked for


def test_cache_failover_calls_test_failover_on_the_moto_endpoint(platform: dict[str, Any]) -> None:
    """moto has no ElastiCache TestFailover: intercept the exact call chaosaws makes and answer it."""
    import chaosaws  # noqa: F401  (chaosaws clients come from boto3's default session)
    from botocore.awsrequest import AWSResponse
    seen: list[dict[str, Any]] = []

    def answer(model: Any, params: dict[str, Any], **kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
        seen.append({"operation": model.name, "url": params["url"], "body": params["body"]})
        return AWSResponse(params["url"], 200, {}, None), {"ReplicationGroup": {"Status": "modifying"}}

    previous = boto3.DEFAULT_SESSION
    boto3.setup_default_session(region_name=REGION)
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.elasticache.TestFailover", answer)
    try:
        target = aws_nemesis(platform)
        step = target.inject(fault_call("stop_cache", {}))
    finally:
        boto3.DEFAULT_SESSION = previous
    assert step.arguments["node_group_id"]
    assert len(seen) == 1 and seen[0]["operation"] == "TestFailover"
    assert seen[0]["url"].startswith(platform["url"])
    assert seen[0]["body"]["ReplicationGroupId"] == platform["settings"].aws.elasticache_group
    assert seen[0]["body"]["NodeGroupId"] == step.arguments["node_group_id"]


def test_events_since_reports_what_the_apis_offer(platform: dict[str, Any]) -> None:
    import time
    target = AwsServices(platform["settings"], session=platform["session"])
    events = target.events_since(time.monotonic() - 600)
    components_unavailable = {e.detail.get("component") for e in events if e.op == "events-unavailable"}
    assert "postgres" not in components_unavailable  # moto serves RDS DescribeEvents
    assert all(e.source == "platform" for e in events)


def test_dry_run_makes_no_call(aws_env: None) -> None:
    settings = Settings(aws=AwsSettings(allowed_accounts=(MOTO_ACCOUNT,), endpoint_url="http://127.0.0.1:9",
                                        allowed_regions=(REGION,), blackhole_subnets=True, injection="chaosaws"))
    services = AwsServices(settings, dry_run=True)  # port 9 is never contacted: a call would fail loudly
    nemesis = AwsNemesis(services)
    plan = services.plan_up()
    for call in (fault_call("lose_zone", {"zone": "ap-south-1a"}), fault_call("fail_over_database", {}),
                 fault_call("stop_cache", {})):
        plan += nemesis.plan(call)
    text = "\n".join(plan)
    assert "sts:GetCallerIdentity" in text
    assert "ec2:ReplaceNetworkAclAssociation" in text
    assert "chaosaws.rds.actions.failover_db_cluster(db_cluster_identifier='school-meals-db'" in text
    assert "chaosaws.elasticache.actions.test_failover(replication_group_id='school-meals-cache'" in text
    fis = AwsNemesis(AwsServices(replace(settings, aws=replace(settings.aws, injection="fis")), dry_run=True))
    text = "\n".join(line for call in (fault_call("lose_zone", {"zone": "ap-south-1a"}),
                                        fault_call("fail_over_database", {})) for line in fis.plan(call))
    assert "aws:network:disrupt-connectivity" in text and "rollback stop_fis_zone:" in text
    assert "rollback stop_fis_failover:" in text and "ec2:DescribeNatGateways" in text


def test_a_writer_change_is_observed_as_it_happens(platform: dict[str, Any]) -> None:
    import time
    nemesis = aws_nemesis(platform)
    services = nemesis.services
    start = time.monotonic()
    services.start_observing(poll_s=0.1)
    try:
        before = services.roles()["postgres"]
        assert services.baseline_read.wait(10)  # the observer knows who leads before the fault
        nemesis.inject(fault_call("fail_over_database", {}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [e for e in services.events_since(start) if e.op == "failover"]:
            time.sleep(0.05)
    finally:
        services.stop_observing()
    failovers = [e for e in services.events_since(start) if e.op == "failover"]
    assert failovers and failovers[0].detail["component"] == "postgres"
    assert failovers[0].detail["from"] == before and failovers[0].detail["new_primary"] != before
    assert start <= failovers[0].monotonic <= time.monotonic()


def test_the_blackhole_never_cuts_the_harness_s_own_way_to_aws(platform: dict[str, Any]) -> None:
    ec2, subnets = platform["ec2"], platform["subnets"]
    before = associations(ec2, subnets)
    with pytest.raises(UserError, match=f"{subnets[0]} \\(aws.harness_subnets\\)"):
        aws_nemesis(platform, harness_subnets=(subnets[0],)).inject(fault_call("lose_zone", {"zone": ZONES[0]}))
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    gateway = ec2.create_nat_gateway(SubnetId=subnets[1], AllocationId=allocation)["NatGateway"]["NatGatewayId"]
    with pytest.raises(UserError, match=f"{subnets[1]} \\(NAT gateway {gateway}\\)"):
        aws_nemesis(platform).inject(fault_call("lose_zone", {"zone": ZONES[1]}))
    endpoint = ec2.create_vpc_endpoint(VpcId=platform["vpc"], ServiceName="com.amazonaws.ap-south-1.ec2",
                                       VpcEndpointType="Interface", SubnetIds=[subnets[2]])["VpcEndpoint"]
    with pytest.raises(UserError, match=f"{subnets[2]} \\(VPC endpoint {endpoint['VpcEndpointId']}"):
        aws_nemesis(platform).inject(fault_call("lose_zone", {"zone": ZONES[2]}))
    assert associations(ec2, subnets) == before  # refused before anything was touched
    assert "DescribeNatGateways" in "\n".join(aws_nemesis(platform).plan(fault_call("lose_zone", {"zone": ZONES[0]})))


def test_a_forged_step_naming_another_acl_is_refused_and_the_real_one_restores(platform: dict[str, Any]) -> None:
    ec2, subnets = platform["ec2"], platform["subnets"]
    before = associations(ec2, subnets)
    nemesis = aws_nemesis(platform)
    step = nemesis.inject(fault_call("lose_zone", {"zone": ZONES[0]}))
    blackhole = step.arguments["blackhole_acl_id"]
    other = ec2.create_network_acl(VpcId=platform["vpc"])["NetworkAcl"]["NetworkAclId"]  # e.g. a wide-open one
    forged = RollbackStep(**{**step.to_json(), "arguments": {
        **step.arguments, "subnets": [{"subnet_id": subnets[0], "original_acl_id": other}]}})
    assert nemesis.rollback_refusal(forged) is None  # every id is allowed: only the blackhole's tag tells
    with pytest.raises(UserError, match=f"names {other} as the network ACL of {subnets[0]}, but the blackhole "
                                        f"{blackhole} recorded {before[subnets[0]]}"):
        nemesis.rollback(forged)
    assert associations(ec2, subnets)[subnets[0]] == blackhole  # nothing was touched
    nemesis.rollback(step)
    assert associations(ec2, subnets) == before


def test_a_subnet_someone_moved_to_a_third_acl_is_left_alone(platform: dict[str, Any]) -> None:
    ec2, subnets = platform["ec2"], platform["subnets"]
    nemesis = aws_nemesis(platform)
    step = nemesis.inject(fault_call("lose_zone", {"zone": ZONES[0]}))
    third = ec2.create_network_acl(VpcId=platform["vpc"])["NetworkAcl"]["NetworkAclId"]
    association = next(a["NetworkAclAssociationId"] for acl in ec2.describe_network_acls(
        NetworkAclIds=[step.arguments["blackhole_acl_id"]])["NetworkAcls"] for a in acl["Associations"])
    ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=third)
    with pytest.raises(UserError, match=f"the subnet is on {third}"):
        nemesis.rollback(step)
    assert associations(ec2, subnets)[subnets[0]] == third
