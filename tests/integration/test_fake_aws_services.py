"""FakeAws: moto whose RDS and ElastiCache failovers take time, change the writer / primary and leave events.

RDS follows https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/multi-az-db-clusters-concepts-failover.html
and https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_FailoverDBCluster.html (status failing-over,
"typically less than 35 seconds", the writer changes) with the event messages of
https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_Events.Messages.html (RDS-EVENT-0071/0072/0073).
ElastiCache follows https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_TestFailover.html (the
events in their documented order, one test at a time per group, the rolling 24-hour limit, its error codes).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from tests.fakes.aws_services import FakeAws, use_fake_credentials  # noqa: E402
from tests.fakes.waiting import wait_for  # noqa: E402

REGION = "ap-south-1"
ZONES = ("ap-south-1a", "ap-south-1b", "ap-south-1c")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_credentials(monkeypatch, REGION)


@pytest.fixture
def fake(aws_env: None) -> Iterator[FakeAws]:
    with FakeAws(manual_clock=True) as server:
        yield server


def clients(url: str) -> tuple[Any, Any, Any]:
    session = boto3.Session(region_name=REGION)
    return (session.client("ec2", endpoint_url=url), session.client("rds", endpoint_url=url),
            session.client("elasticache", endpoint_url=url))


def unique(request: pytest.FixtureRequest) -> str:
    """moto's state is per process: names unique per test keep tests apart."""
    return request.node.name[-24:].replace("_", "-").replace("[", "-").replace("]", "").strip("-").lower()


def make_cluster(url: str, name: str, zones: tuple[str, ...] = ZONES[:2]) -> Any:
    """A DB cluster with one instance per zone given (the first created is the writer)."""
    ec2, rds, _ = clients(url)
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.30.{i}.0/24", AvailabilityZone=z)["Subnet"]["SubnetId"]
               for i, z in enumerate(ZONES)]
    rds.create_db_subnet_group(DBSubnetGroupName=f"sg-{name}", DBSubnetGroupDescription="t", SubnetIds=subnets)
    rds.create_db_cluster(DBClusterIdentifier=name, Engine="aurora-postgresql", MasterUsername="app",
                          MasterUserPassword="not-a-secret-1", DBSubnetGroupName=f"sg-{name}")
    for i, zone in enumerate(zones, 1):
        rds.create_db_instance(DBInstanceIdentifier=f"{name}-{i}", DBClusterIdentifier=name,
                               Engine="aurora-postgresql", DBInstanceClass="db.r6g.large", AvailabilityZone=zone)
    return rds


def writer(rds: Any, cluster: str) -> tuple[str, list[str]]:
    found = rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]
    return found["Status"], [m["DBInstanceIdentifier"] for m in found["DBClusterMembers"] if m["IsClusterWriter"]]


def rds_messages(rds: Any, cluster: str, **window: Any) -> list[str]:
    return [e["Message"] for e in rds.describe_events(SourceIdentifier=cluster, SourceType="db-cluster",
                                                      **window)["Events"]]


def test_rds_failover_takes_time_then_changes_the_writer_with_events(fake: FakeAws,
                                                                      request: pytest.FixtureRequest) -> None:
    name = unique(request)
    rds = make_cluster(fake.url, name)
    assert writer(rds, name) == ("available", [f"{name}-1"])

    answer = rds.failover_db_cluster(DBClusterIdentifier=name, TargetDBInstanceIdentifier=f"{name}-2")
    assert answer["DBCluster"]["Status"] == "failing-over"
    assert writer(rds, name) == ("failing-over", [f"{name}-1"])  # not yet
    # the call returned first: the writer still answers, and the failover has not started
    assert fake.database_available(name) and rds_messages(rds, name) == []
    with pytest.raises(ClientError) as info:  # one failover at a time
        rds.failover_db_cluster(DBClusterIdentifier=name, TargetDBInstanceIdentifier=f"{name}-2")
    assert info.value.response["Error"]["Code"] == "InvalidDBClusterStateFault"

    fake.advance(fake.rds_outage_after_s)  # then the outage
    assert not fake.database_available(name)
    assert rds_messages(rds, name) == [f"Started cross AZ failover to DB instance: {name}-2"]
    fake.advance(34 - fake.rds_outage_after_s)
    assert writer(rds, name) == ("failing-over", [f"{name}-1"]) and not fake.database_available(name)
    fake.advance(1)  # 35 s: "typically less than 35 seconds"; then the new writer
    assert writer(rds, name) == ("available", [f"{name}-2"]) and fake.database_available(name)
    assert rds_messages(rds, name) == [f"Started cross AZ failover to DB instance: {name}-2",
                                       f"Completed failover to DB instance: {name}-2"]


def test_rds_failover_without_a_target_picks_a_reader_and_reports_same_az(fake: FakeAws,
                                                                           request: pytest.FixtureRequest) -> None:
    name = unique(request)
    rds = make_cluster(fake.url, name, zones=(ZONES[0], ZONES[0]))
    rds.failover_db_cluster(DBClusterIdentifier=name)
    fake.advance(fake.rds_outage_after_s)
    assert rds_messages(rds, name) == [f"Started same AZ failover to DB instance: {name}-2"]
    fake.advance(35)
    assert writer(rds, name) == ("available", [f"{name}-2"])


def test_rds_describe_events_honours_the_time_window(fake: FakeAws, request: pytest.FixtureRequest) -> None:
    """StartTime / EndTime / Duration select events, as DescribeEvents documents (moto returns them all)."""
    name = unique(request)
    rds = make_cluster(fake.url, name)
    rds.failover_db_cluster(DBClusterIdentifier=name)
    fake.advance(fake.rds_outage_after_s)  # the failover starts (its event) after the call returned
    now = datetime.now(timezone.utc)
    assert len(rds_messages(rds, name)) == 1
    assert rds_messages(rds, name, StartTime=now + timedelta(minutes=1)) == []
    assert rds_messages(rds, name, EndTime=now - timedelta(minutes=1)) == []
    assert len(rds_messages(rds, name, Duration=5)) == 1


def make_group(url: str, name: str, nodes: int = 2, failover: bool = True) -> Any:
    _, _, cache = clients(url)
    cache.create_replication_group(ReplicationGroupId=name, ReplicationGroupDescription="t", Engine="redis",
                                   CacheNodeType="cache.t4g.small", NumCacheClusters=nodes,
                                   AutomaticFailoverEnabled=failover, PreferredCacheClusterAZs=list(ZONES[:nodes]))
    return cache


def roles(cache: Any, name: str) -> tuple[str, dict[str, str]]:
    group = cache.describe_replication_groups(ReplicationGroupId=name)["ReplicationGroups"][0]
    members = group["NodeGroups"][0]["NodeGroupMembers"]
    return group["Status"], {m["CacheClusterId"]: m["CurrentRole"] for m in members}


def test_a_replication_group_has_the_replicas_it_was_created_with(fake: FakeAws,
                                                                   request: pytest.FixtureRequest) -> None:
    """NumCacheClusters=2 is a primary and a replica (moto alone creates the primary only)."""
    name = unique(request)
    cache = make_group(fake.url, name)
    group = cache.describe_replication_groups(ReplicationGroupId=name)["ReplicationGroups"][0]
    members = group["NodeGroups"][0]["NodeGroupMembers"]
    assert [(m["CacheClusterId"], m["CurrentRole"], m["PreferredAvailabilityZone"]) for m in members] == [
        (f"{name}-001", "primary", ZONES[0]), (f"{name}-002", "replica", ZONES[1])]
    assert group["MemberClusters"] == [f"{name}-001", f"{name}-002"]


def test_elasticache_test_failover_swaps_the_primary_over_time_with_the_documented_events(
        fake: FakeAws, request: pytest.FixtureRequest) -> None:
    name = unique(request)
    cache = make_group(fake.url, name)
    answer = cache.test_failover(ReplicationGroupId=name, NodeGroupId="0001")
    assert answer["ReplicationGroup"]["Status"] == "modifying"
    assert roles(cache, name) == ("modifying", {f"{name}-001": "primary", f"{name}-002": "replica"})
    with pytest.raises(ClientError) as info:  # the first node replacement must complete first
        cache.test_failover(ReplicationGroupId=name, NodeGroupId="0001")
    assert info.value.response["Error"]["Code"] == "InvalidReplicationGroupState"
    assert fake.cache_available(name)  # the call returned first; then the outage, then the new primary
    fake.advance(fake.cache_outage_after_s)
    assert not fake.cache_available(name)
    fake.advance(30 - fake.cache_outage_after_s)
    assert roles(cache, name) == ("modifying", {f"{name}-001": "replica", f"{name}-002": "primary"})
    assert fake.cache_available(name)
    fake.advance(90)
    assert roles(cache, name)[0] == "available"

    events = cache.describe_events(StartTime=datetime.now(timezone.utc) - timedelta(minutes=5))["Events"]
    failover = f"Failover from primary node {name}-001 to replica node {name}-002 completed"
    assert [(e["SourceType"], e["SourceIdentifier"], e["Message"]) for e in events] == [
        ("replication-group", name, "Test Failover API called for node group 0001"),
        ("cache-cluster", f"{name}-001", failover),
        ("replication-group", name, failover),
        ("cache-cluster", f"{name}-001", "Recovering cache nodes 0001"),
        ("cache-cluster", f"{name}-001", "Finished recovery for cache nodes 0001"),
    ]
    only_group = cache.describe_events(SourceIdentifier=name, SourceType="replication-group")["Events"]
    assert [e["Message"] for e in only_group] == ["Test Failover API called for node group 0001", failover]


def test_test_failover_refuses_what_the_api_refuses(aws_env: None, request: pytest.FixtureRequest) -> None:
    name = unique(request)
    with FakeAws(manual_clock=True, test_failover_limit=1) as fake:
        cache = make_group(fake.url, name)
        single = make_group(fake.url, f"{name}-single", nodes=1)

        def code(**kwargs: str) -> str:
            with pytest.raises(ClientError) as info:
                cache.test_failover(**kwargs)
            return str(info.value.response["Error"]["Code"])

        assert code(ReplicationGroupId="no-such-group", NodeGroupId="0001") == "ReplicationGroupNotFoundFault"
        assert code(ReplicationGroupId=name, NodeGroupId="0009") == "NodeGroupNotFoundFault"
        assert code(ReplicationGroupId=f"{name}-single", NodeGroupId="0001") == "TestFailoverNotAvailableFault"
        assert single is not None
        cache.test_failover(ReplicationGroupId=name, NodeGroupId="0001")
        fake.advance(200)
        assert code(ReplicationGroupId=name, NodeGroupId="0001") == "APICallRateForCustomerExceeded"
        fake.advance(24 * 3600)  # the rolling 24 hours
        cache.test_failover(ReplicationGroupId=name, NodeGroupId="0001")


def test_chaosaws_actions_reach_the_fake_through_aws_endpoint_url(aws_env: None, monkeypatch: pytest.MonkeyPatch,
                                                                  request: pytest.FixtureRequest) -> None:
    """chaosaws builds its clients from boto3's default session; AWS_ENDPOINT_URL points them here. On the
    scaled clock (0.01) the failovers finish by themselves in well under a second."""
    from chaosaws.elasticache.actions import test_failover
    from chaosaws.rds.actions import failover_db_cluster
    name = unique(request)
    with FakeAws() as fake:
        rds = make_cluster(fake.url, name)
        cache = make_group(fake.url, name)
        monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
        previous = boto3.DEFAULT_SESSION
        boto3.setup_default_session(region_name=REGION)
        try:
            configuration = {"aws_region": REGION}
            failover_db_cluster(name, f"{name}-2", configuration=configuration)
            test_failover(name, "0001", configuration=configuration)
        finally:
            boto3.DEFAULT_SESSION = previous
        # the failover started by chaosaws's call finishes by itself (its 'failing-over' status lasts only ~0.35 s
        # on this clock: asserting it right after the calls raced on a busy machine; the timing is tested above)
        wait_for(lambda: writer(rds, name) == ("available", [f"{name}-2"]), what="the RDS writer to change")
        wait_for(lambda: roles(cache, name) == ("available", {f"{name}-001": "replica", f"{name}-002": "primary"}),
                 what="the ElastiCache primary to change and recover")


def test_other_moto_servers_keep_motos_own_behaviour(fake: FakeAws, request: pytest.FixtureRequest) -> None:
    """The replacements act on requests that came through a FakeAws server only."""
    from moto.server import ThreadedMotoServer
    name = unique(request)
    plain = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    plain.start()
    try:
        host, port = plain.get_host_and_port()
        url = f"http://{host}:{port}"
        rds = make_cluster(url, name)
        rds.failover_db_cluster(DBClusterIdentifier=name, TargetDBInstanceIdentifier=f"{name}-2")
        assert writer(rds, name) == ("available", [f"{name}-2"])  # moto: instant and silent
        assert rds_messages(rds, name) == []
        cache = make_group(url, name)
        assert len(roles(cache, name)[1]) == 1  # moto: the primary only
        no_retries = boto3.Session(region_name=REGION).client("elasticache", endpoint_url=url,
                                                              config=Config(retries={"total_max_attempts": 1}))
        with pytest.raises(ResponseParserError, match="500 Internal Server Error"):  # moto: not implemented
            no_retries.test_failover(ReplicationGroupId=name, NodeGroupId="0001")
    finally:
        plain.stop()
    assert os.environ.get("AWS_ENDPOINT_URL") is None
