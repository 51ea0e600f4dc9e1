"""The AWS services' observer: status and events read from the last observation, each record once.

A hand-made boto3 stand-in counts every call, so the tests can say what a poll costs.
"""

from __future__ import annotations

import collections
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from resilience.config import AwsSettings, Settings
from resilience.event_feed import EventFeed
from resilience.history import History
from resilience.targets.aws.services import AwsServices

ACCOUNT = "123456789012"
REGION = "ap-south-1"


class Calls(collections.Counter[str]):
    def aws(self) -> int:
        """Calls other than the account check, made once when the services are built."""
        return sum(n for name, n in self.items() if name != "sts.get_caller_identity")


class FakeClient:
    """One boto3 client: answers from `state`, counts calls; ElastiCache has no DescribeEvents (as moto)."""

    def __init__(self, service: str, state: dict[str, Any], calls: Calls) -> None:
        self.service, self.state, self.calls = service, state, calls

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls[f"{self.service}.{name}"] += 1
            return getattr(self, f"_{name}")(**kwargs)
        return call

    def _get_caller_identity(self) -> dict[str, Any]:
        return {"Account": ACCOUNT}

    def _describe_db_clusters(self, DBClusterIdentifier: str) -> dict[str, Any]:
        members = [{"DBInstanceIdentifier": name, "IsClusterWriter": name == self.state["writer"]}
                   for name in self.state["instances"]]
        return {"DBClusters": [{"DBClusterIdentifier": DBClusterIdentifier, "Status": "available",
                                "DBClusterMembers": members, "Endpoint": "db.example", "Port": 5432}]}

    def _describe_db_instances(self, DBInstanceIdentifier: str | None = None,
                               Filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        names = [DBInstanceIdentifier] if DBInstanceIdentifier else list(self.state["instances"])
        return {"DBInstances": [{"DBInstanceIdentifier": name, "AvailabilityZone": self.state["instances"][name],
                                 "DBInstanceStatus": "available", "Endpoint": {"Address": f"{name}.db", "Port": 5432}}
                                for name in names]}

    def _describe_replication_groups(self, ReplicationGroupId: str) -> dict[str, Any]:
        return {"ReplicationGroups": [{"ReplicationGroupId": ReplicationGroupId, "Status": "available", "NodeGroups": [
            {"NodeGroupId": "0001", "Status": "available", "NodeGroupMembers": [
                {"CacheClusterId": "cache-1", "CurrentRole": "primary", "PreferredAvailabilityZone": "ap-south-1a",
                 "ReadEndpoint": {"Address": "cache-1.example", "Port": 6379}},
                {"CacheClusterId": "cache-2", "CurrentRole": "replica", "PreferredAvailabilityZone": "ap-south-1b",
                 "ReadEndpoint": {"Address": "cache-2.example", "Port": 6379}}]}]}]}

    def _describe_events(self, **kwargs: Any) -> dict[str, Any]:
        if self.service == "elasticache":
            raise RuntimeError("The describe_events action has not been implemented")
        return {"Events": [{"Date": self.state["event_at"], "Message": "Completed failover to DB instance: db-2",
                            "SourceIdentifier": "school-meals-db"}]}

    def _get_metric_statistics(self, **kwargs: Any) -> dict[str, Any]:
        return {"Datapoints": [{"Timestamp": self.state["event_at"], "Minimum": 3.0, "Maximum": 9.0}]}


class FakeSession:
    def __init__(self, state: dict[str, Any], calls: Calls) -> None:
        self.state, self.calls = state, calls

    def client(self, service: str, **kwargs: Any) -> FakeClient:
        return FakeClient(service, self.state, self.calls)


@pytest.fixture
def world() -> dict[str, Any]:
    return {"writer": "db-1", "instances": {"db-1": "ap-south-1a", "db-2": "ap-south-1b", "db-3": "ap-south-1c"},
            "event_at": datetime.now(timezone.utc)}


def services(world: dict[str, Any], calls: Calls) -> AwsServices:
    settings = Settings(aws=AwsSettings(allowed_accounts=(ACCOUNT,), region=REGION, allowed_regions=(REGION,)))
    return AwsServices(settings, session=FakeSession(world, calls))


def test_a_service_without_events_gives_one_unavailable_record_not_one_per_poll(world: dict[str, Any]) -> None:
    calls = Calls()
    history = History()
    world["event_at"] = datetime.now(timezone.utc)  # after the run's origin
    feed = EventFeed(services(world, calls).events_since, history)
    for _ in range(5):
        feed.poll()
    unavailable = [r for r in history.records if r.op == "events-unavailable"]
    assert len(unavailable) == 1 and unavailable[0].detail["component"] == "redis"
    assert [r.op for r in history.records].count("failover") == 1  # the RDS event, once
    assert [r.op for r in history.records].count("metric") == 1


def test_status_polled_ten_times_costs_no_more_than_one_observation_round(world: dict[str, Any]) -> None:
    calls = Calls()
    aws = services(world, calls)
    aws.components_status()
    one_read = calls.aws()
    assert one_read == 3  # the cluster, its instances in one call, the replication group
    calls.clear()
    aws.start_observing(poll_s=3600)  # one round now, then none within the test
    try:
        assert aws.baseline_read.wait(10)
        round_cost = calls.aws()
        for _ in range(10):
            status = aws.components_status()
        assert calls.aws() == round_cost  # the ten reads made no call
    finally:
        aws.stop_observing()
    writer = next(c for c in status.components if c.kind == "postgres" and c.role == "primary")
    assert (writer.name, writer.zone) == ("db-1", "ap-south-1a") and len(status.components) == 5


def test_events_read_while_observing_come_from_the_loop_and_a_writer_change_is_a_failover(
        world: dict[str, Any]) -> None:
    calls = Calls()
    aws = services(world, calls)
    start = time.monotonic()
    aws.start_observing(poll_s=0.05)
    try:
        assert aws.baseline_read.wait(10)
        world["writer"] = "db-2"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [e for e in aws.events_since(start) if e.detail.get("from")]:
            time.sleep(0.02)
    finally:
        aws.stop_observing()
    events = aws.events_since(start)
    failover = next(e for e in events if e.op == "failover" and e.detail.get("from"))
    assert (failover.detail["from"], failover.detail["new_primary"]) == ("db-1", "db-2")
    assert [e.op for e in events].count("events-unavailable") == 1
    before = calls.aws()
    aws.events_since(start)  # stopped: the last state is kept, nothing is read again
    assert calls.aws() == before
