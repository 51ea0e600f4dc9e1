"""The aws target's calls as AWS answers them: throttled (retried), denied (a clear error), from three threads
(one client each, made once), and its observation reading what TestFailover leaves on the cache clusters and
the connection count under the dimension the engine publishes it by."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import AwsSettings, Settings  # noqa: E402
from resilience.errors import UserError  # noqa: E402
from resilience.targets.aws import clients  # noqa: E402
from resilience.targets.aws.clients import MAX_ATTEMPTS, POLICY_FILE, AccessDenied  # noqa: E402
from resilience.targets.aws.observer import connection_dimensions  # noqa: E402
from resilience.targets.aws.services import AwsServices  # noqa: E402
from tests.fakes.aws_platform import MOTO_ACCOUNT, AwsPlatform, provision  # noqa: E402
from tests.fakes.aws_services import FakeAws, use_fake_credentials  # noqa: E402
from tests.fakes.waiting import wait_for  # noqa: E402

REGION = "ap-south-1"
ZONES = ("ap-south-1a", "ap-south-1b", "ap-south-1c")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAws]:
    with FakeAws(time_scale=0.01) as server:
        yield server


@pytest.fixture
def made(fake: FakeAws, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> AwsPlatform:
    use_fake_credentials(monkeypatch, REGION)
    fake.refusals.clear()
    return provision(fake.url, REGION, ZONES, request.node.name[-18:].replace("_", "-").strip("-").lower())


def services(fake: FakeAws, made: AwsPlatform, session: Any | None = None) -> AwsServices:
    settings = Settings(aws=AwsSettings(allowed_accounts=(MOTO_ACCOUNT,), region=REGION, rds_cluster=made.cluster,
                                        elasticache_group=made.group, endpoint_url=fake.url, allowed_regions=(REGION,),
                                        allowed_resources=(made.cluster, made.group)))
    return AwsServices(settings, session=session or boto3.Session(region_name=REGION))


def test_throttling_is_retried_with_backoff_and_the_call_succeeds(fake: FakeAws, made: AwsPlatform) -> None:
    aws = services(fake, made)
    before = fake.refusals.calls["DescribeDBClusters"]
    fake.refusals.add("DescribeDBClusters", "Throttling", times=3)
    assert aws.cluster()["DBClusterIdentifier"] == made.cluster
    assert fake.refusals.calls["DescribeDBClusters"] - before == 4  # three throttled, then the answer
    fake.refusals.add("DescribeSubnets", "RequestLimitExceeded", times=2)  # EC2's throttling code
    assert aws.client("ec2").describe_subnets(SubnetIds=made.subnets[:1])["Subnets"]
    assert aws.client("rds").meta.config.retries == {"mode": "standard", "total_max_attempts": MAX_ATTEMPTS}


def test_throttling_beyond_the_retries_is_an_error_not_a_hang(fake: FakeAws, made: AwsPlatform,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients, "MAX_ATTEMPTS", 2)  # the backoff of six attempts takes ~15 s
    aws = services(fake, made)
    fake.refusals.add("DescribeDBClusters", "Throttling", times=2)
    with pytest.raises(UserError, match="Throttling"):
        aws.cluster()


def test_access_denied_names_the_iam_action_and_the_policy_file(fake: FakeAws, made: AwsPlatform) -> None:
    aws = services(fake, made)
    before = fake.refusals.calls["DescribeReplicationGroups"]
    fake.refusals.add("DescribeReplicationGroups", "AccessDenied")
    with pytest.raises(AccessDenied) as info:
        aws.replication_group()
    assert info.value.action == "elasticache:DescribeReplicationGroups"
    assert POLICY_FILE in str(info.value) and isinstance(info.value, UserError)
    assert fake.refusals.calls["DescribeReplicationGroups"] - before == 1  # never retried
    fake.refusals.add("CreateNetworkAcl", "UnauthorizedOperation")  # EC2's code
    with pytest.raises(AccessDenied, match="ec2:CreateNetworkAcl"):
        aws.client("ec2").create_network_acl(VpcId=made.vpc)


class CountingSession:
    """A boto3 Session that counts the clients made and the threads that made them."""

    def __init__(self) -> None:
        self.session = boto3.Session(region_name=REGION)
        self.made: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.inside = 0
        self.overlapped = False

    def client(self, service: str, **kwargs: Any) -> Any:
        with self.lock:
            self.inside += 1
            self.overlapped |= self.inside > 1
        try:
            self.made[service] += 1
            return self.session.client(service, **kwargs)
        finally:
            with self.lock:
                self.inside -= 1

    def get_credentials(self) -> Any:
        return self.session.get_credentials()


def test_three_threads_share_one_client_per_service_made_once(fake: FakeAws, made: AwsPlatform) -> None:
    session = CountingSession()
    aws = services(fake, made, session=session)
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            for _ in range(5):
                aws.observer.read()
                aws.events_since(0.0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=poll) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert dict(session.made) == {"sts": 1, "rds": 1, "elasticache": 1, "cloudwatch": 1}
    assert not session.overlapped  # the session was never used by two threads at once


def test_test_failovers_cache_cluster_events_are_read(fake: FakeAws, made: AwsPlatform) -> None:
    aws = services(fake, made)
    import time
    start = time.monotonic()
    aws.client("elasticache").test_failover(ReplicationGroupId=made.group, NodeGroupId="0001")
    wait_for(lambda: aws.replication_group()["Status"] == "available", timeout_s=30)
    messages = [(e.detail.get("source_type"), e.detail["message"]) for e in aws.events_since(start - 1)
                if e.detail.get("component") == "redis"]
    assert ("replication-group", "Test Failover API called for node group 0001") in messages
    assert any(t == "cache-cluster" and m.startswith("Recovering cache nodes") for t, m in messages), messages
    assert any(t == "cache-cluster" and m.startswith("Finished recovery") for t, m in messages), messages


def test_database_connections_are_read_by_the_dimension_the_engine_publishes() -> None:
    assert connection_dimensions({"Engine": "aurora-postgresql"}, "db-1", "c") == [
        {"Name": "DBClusterIdentifier", "Value": "c"}]
    for engine in ("postgres", "mysql"):  # a Multi-AZ DB cluster: per instance only, the writer's
        assert connection_dimensions({"Engine": engine}, "db-2", "c") == [{"Name": "DBInstanceIdentifier",
                                                                           "Value": "db-2"}]
