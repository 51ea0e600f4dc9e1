"""A game-day's pace on AWS: the next experiment starts only once RDS and ElastiCache are available again.

After a failover the services stay busy for minutes: an RDS cluster is `failing-over`, an
ElastiCache replication group `modifying` until its node replacement completes, and a TestFailover
called meanwhile is refused with InvalidReplicationGroupState
(https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_TestFailover.html). So before
each experiment but the first the pacer waits `aws.gameday_cooldown_s`, then until the DB cluster,
its instances, the replication group and its node groups all report `available` (at most
`aws.settle_timeout_s`; otherwise the experiment is skipped, with the reason).

TestFailover has a quota: "up to 15 shards (called node groups in the ElastiCache API and AWS CLI)
in any rolling 24-hour period", per customer (same page). With `aws.injection: chaosaws` the pacer
counts the "Test Failover API called for node group" events of the last 24 hours in the region and
skips an experiment whose TestFailover calls would go over the quota, instead of letting it fail.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from ...fault_registry import FaultCall
from .fis import CHAOSAWS
from .services import AwsServices

TEST_FAILOVER_QUOTA = 15  # node groups per rolling 24 hours, per customer (API_TestFailover.html)
TEST_FAILOVER_EVENT = "Test Failover API called for node group"
POLL_S = 5.0


class AwsPacer:
    """Waits between a game-day's experiments and keeps the TestFailover quota; `before` says why to skip."""

    def __init__(self, services: AwsServices, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.services = services
        self.aws = services.aws
        self.sleep = sleep
        self.clock = clock
        self.started = 0  # experiments paced so far

    def before(self, experiment: str, faults: Sequence[FaultCall]) -> str | None:
        """Wait until the next experiment may start; the reason to skip it instead, or None."""
        if self.started:
            self.sleep(self.aws.gameday_cooldown_s)
        self.started += 1
        busy = self.wait_available()
        if busy:
            return busy
        return self.quota_problem(faults)

    def wait_available(self) -> str | None:
        """None once everything is available; what is still busy after aws.settle_timeout_s otherwise."""
        deadline = self.clock() + self.aws.settle_timeout_s
        while True:
            busy = self.busy()
            if not busy or self.clock() >= deadline:
                return (f"the platform was not available again after {self.aws.settle_timeout_s:g} s "
                        f"(aws.settle_timeout_s): {'; '.join(busy)}") if busy else None
            self.sleep(POLL_S)

    def busy(self) -> list[str]:
        """What is not `available` now: the DB cluster, its instances, the replication group, its node groups."""
        snapshot = self.services.observer.read()
        busy = []
        if snapshot.cluster.get("Status") != "available":
            busy.append(f"DB cluster {self.aws.rds_cluster} is {snapshot.cluster.get('Status')}")
        busy += [f"DB instance {name} is {i.get('DBInstanceStatus')}" for name, i in sorted(snapshot.instances.items())
                 if i.get("DBInstanceStatus") != "available"]
        if snapshot.group.get("Status") != "available":
            busy.append(f"replication group {self.aws.elasticache_group} is {snapshot.group.get('Status')}")
        busy += [f"node group {g.get('NodeGroupId')} is {g.get('Status')}" for g in snapshot.group.get("NodeGroups", [])
                 if g.get("Status", "available") != "available"]
        return busy

    def test_failovers(self, faults: Sequence[FaultCall]) -> int:
        """How many node groups the faults would TestFailover (chaosaws injection only; FIS uses none)."""
        if self.aws.injection != CHAOSAWS:
            return 0
        groups = len(self.services.replication_group().get("NodeGroups", [])) or 1
        return sum(1 if f.fault == "stop_cache" else groups if f.fault == "lose_zone" else 0 for f in faults)

    def quota_problem(self, faults: Sequence[FaultCall]) -> str | None:
        needed = self.test_failovers(faults)
        if not needed:
            return None
        used = self.test_failovers_used()
        if used + needed <= TEST_FAILOVER_QUOTA:
            return None
        return (f"it needs {needed} ElastiCache TestFailover call(s) and {used} of the {TEST_FAILOVER_QUOTA} node "
                f"groups ElastiCache allows per rolling 24 hours were used already (API_TestFailover); run it "
                f"once the quota has recovered")

    def test_failovers_used(self) -> int:
        """TestFailover calls in the region in the last 24 hours, from ElastiCache's replication-group events."""
        client = self.services.client("elasticache")
        used, marker = 0, None
        while True:
            page: dict[str, Any] = client.describe_events(SourceType="replication-group", Duration=24 * 60,
                                                          **({"Marker": marker} if marker else {}))
            used += sum(1 for e in page.get("Events", []) if str(e.get("Message", "")).startswith(TEST_FAILOVER_EVENT))
            marker = page.get("Marker")
            if not marker:
                return used
