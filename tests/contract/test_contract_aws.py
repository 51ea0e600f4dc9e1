"""Contract: the aws target on a real account, the scenarios of tests/integration/test_aws_target.py.

moto answers in memory: its RDS failover is instant, ElastiCache TestFailover and DescribeEvents are not
implemented, and a node group lists only its primary. Here the same calls go to RDS (a Multi-AZ DB
cluster) and ElastiCache (a replication group with automatic failover, cluster mode disabled), and the
tests wait for what AWS really does: a failover takes tens of seconds (RDS) to minutes (ElastiCache),
and a test waits for the cluster or group to be `available` again before it ends.

Skipped unless RESILIENCE_CONTRACT_AWS=1 (the composed zone loss also needs RESILIENCE_CONTRACT_CONTEXT).
The settings file names the account, region and resources (aws.allowed_*). Each failover test costs a real
failover; ElastiCache accepts TestFailover on at most 15 node groups per rolling 24 hours.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

import contract_support as cs
from contract_support import needs_aws, needs_cluster
from resilience.errors import UserError
from resilience.fault_registry import fault_call
from resilience.targets.base import RollbackStep

pytestmark = [needs_aws, pytest.mark.timeout(3600)]

FAILOVER_TIMEOUT_S = 900.0  # RDS Multi-AZ DB cluster: typically under a minute; ElastiCache: minutes


@pytest.fixture(scope="module")
def aws_settings() -> Any:
    from resilience.config import load_settings
    loaded = load_settings()
    if not loaded.aws.allowed_accounts:
        pytest.fail(f"{cs.AWS_VAR}=1 but the settings ({loaded.source}) allow no AWS account (aws.allowed_accounts); "
                    f"see docs/eks-walkthrough.md for the settings file")
    return loaded


@pytest.fixture(scope="module")
def services(aws_settings: Any) -> Any:
    from resilience.targets.aws.services import AwsServices
    return AwsServices(aws_settings)


def with_aws(settings: Any, **changes: Any) -> Any:
    return dataclasses.replace(settings, aws=dataclasses.replace(settings.aws, **changes))


def wait_available(services: Any) -> None:
    """Back to normal before the next test: the DB cluster and the replication group `available`."""
    cs.wait_until(lambda: services.cluster().get("Status") == "available"
                  and services.replication_group().get("Status") == "available", FAILOVER_TIMEOUT_S,
                  "the RDS cluster and the ElastiCache group to be available", interval_s=10)


def test_an_account_outside_the_allow_list_is_refused(aws_settings: Any, services: Any) -> None:
    """Mirrors test_account_not_in_allow_list_is_refused (sts:GetCallerIdentity is the only call made)."""
    from resilience.targets.aws.services import AwsServices
    with pytest.raises(UserError, match="aws.allowed_accounts") as info:
        AwsServices(with_aws(aws_settings, allowed_accounts=("000000000000",)))
    assert services.account and services.account in str(info.value)


def test_a_region_outside_the_allow_list_is_refused_before_any_call(aws_settings: Any) -> None:
    """Mirrors test_a_region_outside_the_allow_list_is_refused_before_any_call."""
    from resilience.targets.aws.services import AwsServices
    with pytest.raises(UserError, match="aws.allowed_regions"):
        AwsServices(with_aws(aws_settings, allowed_regions=("xx-nowhere-1",)))


def test_status_and_endpoints(services: Any) -> None:
    """Mirrors test_status_and_endpoints. Unlike moto, ElastiCache lists every member of a node group."""
    status = services.components_status()
    roles = sorted((c.kind, c.role) for c in status.components)
    assert roles.count(("postgres", "primary")) == 1 and ("postgres", "replica") in roles, roles
    assert ("redis", "primary") in roles and ("redis", "replica") in roles, \
        f"{roles}: the replication group needs a replica (automatic failover) and cluster mode disabled " \
        f"(NodeGroupMembers[].CurrentRole is reported only then)"
    assert all(c.zone for c in status.components), "every member should report its Availability Zone"
    endpoints = services.backend_endpoints()
    assert endpoints.postgres_host == services.cluster()["Endpoint"] and endpoints.redis_host


def test_the_writer_zone_is_the_zone_to_lose_by_default(services: Any) -> None:
    """Mirrors test_zone_outage_defaults_to_the_writer_zone (the zone only; the fault is the tests below)."""
    writer = next(c for c in services.components_status().components if c.kind == "postgres" and c.role == "primary")
    assert services.primary_zone() == writer.zone


def test_events_since_reads_rds_and_elasticache_events(services: Any) -> None:
    """Mirrors test_events_since_reports_what_the_apis_offer: real AWS serves both DescribeEvents."""
    events = services.events_since(time.monotonic() - 3600)
    unavailable = [e.detail for e in events if e.op in ("events-unavailable", "metrics-unavailable")]
    assert unavailable == []
    assert all(e.source == "platform" for e in events)


def test_a_forged_rollback_naming_a_foreign_subnet_is_refused(services: Any) -> None:
    """Mirrors test_forged_rollback_naming_a_foreign_subnet_is_refused (refused before any call)."""
    from resilience.targets.aws.nemesis import AwsNemesis
    vpc = next((r for r in services.settings.aws.allowed_resources if r.startswith("vpc-")), "vpc-unknown")
    forged = RollbackStep("restore_zone", {"zone": "any", "vpc_id": vpc, "blackhole_acl_id": "acl-1",
                                           "subnets": [{"subnet_id": "subnet-elsewhere", "original_acl_id": "acl-2"}]})
    assert "subnet 'subnet-elsewhere' is not in aws.allowed_resources" in (AwsNemesis(services).rollback_refusal(forged)
                                                                           or "")


def test_a_database_failover_through_chaosaws_is_observed_as_it_happens(services: Any) -> None:
    """Mirrors test_database_failover_goes_through_chaosaws and test_a_writer_change_is_observed_as_it_happens:
    a real FailoverDBCluster, and the observer's platform/failover record of the new writer."""
    from resilience.targets.aws.nemesis import AwsNemesis
    wait_available(services)
    nemesis = AwsNemesis(services)
    start = time.monotonic()
    services.start_observing()
    try:
        assert services.baseline_read.wait(60), "the observer never read who leads"
        before = services.roles()["postgres"]
        step = nemesis.inject(fault_call("fail_over_database", {}))
        assert step.capability == "none" and step.arguments["writer_before"] == before
        failovers = cs.wait_until(lambda: [e for e in services.events_since(start)
                                           if e.op == "failover" and e.detail.get("component") == "postgres"
                                           and "from" in e.detail], FAILOVER_TIMEOUT_S,
                                  "the observer to see the RDS writer change", interval_s=5)
    finally:
        services.stop_observing()
    assert failovers[0].detail["from"] == before
    assert failovers[0].detail["new_primary"] == step.arguments["promoted"]
    assert start <= failovers[0].monotonic <= time.monotonic()
    wait_available(services)


def test_a_cache_failover_through_chaosaws_changes_the_primary(services: Any) -> None:
    """Mirrors test_cache_failover_calls_test_failover_on_the_moto_endpoint, with the real TestFailover."""
    from resilience.targets.aws.nemesis import AwsNemesis
    wait_available(services)
    step = AwsNemesis(services).inject(fault_call("stop_cache", {}))
    key = f"redis/{step.arguments['node_group_id']}"
    before = services.roles()[key]
    cs.wait_until(lambda: services.roles().get(key) not in (None, before), FAILOVER_TIMEOUT_S,
                  f"ElastiCache to promote a replica in node group {step.arguments['node_group_id']}", interval_s=10)
    wait_available(services)


@needs_cluster
def test_a_zone_loss_on_the_composed_target_fails_over_what_leads_in_that_zone(
        k8s: Any, api: Any, settings: Any, contract_context: str) -> None:
    """Mirrors test_a_zone_loss_fails_over_the_writer_in_that_zone_and_cuts_only_allowed_subnets and
    test_zone_outage_swaps_nacls_and_rollback_restores_them, through `make_target("aws")`: the zone of the
    writer loses its app pods and nodes, the writer moves out of it, and (only with aws.blackhole_subnets)
    the zone's allowed subnets are cut and restored."""
    from resilience.targets import make_target
    t = make_target("aws", settings, context=contract_context)
    services = t.services[0]
    wait_available(services)
    zone = t.primary_zone()
    assert zone, "the RDS writer reports no zone"
    assert cs.zone_nodes(api, zone), f"no node of the EKS cluster is labelled {zone}: is the context the EKS one?"
    was = cs.cordoned(api)
    step = t.inject(fault_call("lose_zone", {"zone": "primary"}))
    try:
        k8s_step, aws_step = (RollbackStep.from_json(s) for s in step.arguments["steps"])
        assert k8s_step.nemesis == "kubernetes" and k8s_step.arguments["zone"] == zone
        assert all(cs.cordoned(api)[n] for n in k8s_step.arguments["nodes"])
        assert aws_step.nemesis == "aws" and aws_step.arguments["failed_over"]["rds"]["promoted"]
        cs.wait_until(lambda: services.primary_zone() not in (None, zone), FAILOVER_TIMEOUT_S,
                      f"the RDS writer to move out of {zone}", interval_s=5)
        if services.settings.aws.blackhole_subnets:
            ec2 = services.client("ec2")
            for subnet in aws_step.arguments["subnets"]:
                acls = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id",
                                                          "Values": [subnet["subnet_id"]]}])["NetworkAcls"]
                assert [a["NetworkAclId"] for a in acls] == [aws_step.arguments["blackhole_acl_id"]]
    finally:
        t.rollback(step)
    assert cs.cordoned(api) == was
    if services.settings.aws.blackhole_subnets:
        ec2 = services.client("ec2")
        for subnet in aws_step.arguments["subnets"]:
            acls = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id",
                                                      "Values": [subnet["subnet_id"]]}])["NetworkAcls"]
            assert [a["NetworkAclId"] for a in acls] == [subnet["original_acl_id"]]
    wait_available(services)
