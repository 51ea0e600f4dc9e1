"""moto in server mode, plus the failovers that moto gets wrong: they take time, change roles and leave events.

moto 5 flips an RDS cluster's writer the instant FailoverDBCluster is called and
records no event; it does not implement ElastiCache TestFailover or ElastiCache
DescribeEvents; and it creates a replication group with NumCacheClusters=2 with
one node only. A harness measuring failover time or watching the writer change
learns nothing from that. `FakeAws` serves moto on 127.0.0.1 and, for requests
that reach *its* port, replaces those operations:

RDS FailoverDBCluster (Multi-AZ DB cluster / Aurora), following
https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/multi-az-db-clusters-concepts-failover.html and
https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_FailoverDBCluster.html ("Failover times are
typically less than 35 seconds"):
- the API call returns first: the cluster's Status becomes "failing-over" at once; the writer does not
  change yet and still answers;
- then the outage: `rds_outage_after_s` fake seconds later (5 by default) the writer stops answering
  (`database_available()` is False) and event RDS-EVENT-0073 "Started cross AZ failover to DB instance:
  NAME" (RDS-EVENT-0072 "Started same AZ failover ..." when the target is in the writer's zone), source
  type db-cluster, is recorded;
- then the new writer: `rds_failover_s` fake seconds after the call (35 by default: "typically under 35
  seconds") the target becomes the writer and answers, the cluster is "available" again, and
  RDS-EVENT-0071 "Completed failover to DB instance: NAME" is recorded
  (event messages from https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_Events.Messages.html);
- a second failover while one runs is refused with InvalidDBClusterStateFault.
RDS DescribeEvents honours StartTime / EndTime / Duration (default: the last 60 minutes), which moto ignores
(https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DescribeEvents.html).

ElastiCache TestFailover, following https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_TestFailover.html:
- errors: ReplicationGroupNotFoundFault, NodeGroupNotFoundFault, InvalidReplicationGroupState (group not
  "available": one test per group at a time, the first node replacement must complete before the next call),
  TestFailoverNotAvailableFault (no replica or automatic failover disabled), APICallRateForCustomerExceeded
  (more than `test_failover_limit` node groups, 15 by default, in a rolling 24 hours);
- the group and node group become "modifying"; the call returns; `cache_outage_after_s` fake seconds
  later (5 by default) the primary stops answering (`cache_available()` is False) until the promotion;
  events, in the documented order:
  "Test Failover API called for node group <node-group-id>" (replication-group), after `cache_promote_s`
  "Failover from primary node <primary> to replica node <replica> completed" (cache-cluster, then
  replication-group) with the roles swapped, "Recovering cache nodes <node-id>" (cache-cluster), and after
  `cache_recover_s` more "Finished recovery for cache nodes <node-id>" (cache-cluster), the group
  "available" again. The durations are this fake's assumptions (the docs give the order, not the times).
ElastiCache DescribeEvents serves those events (SourceIdentifier, SourceType, StartTime, EndTime, Duration),
and CreateReplicationGroup gets the NumCacheClusters - 1 replicas moto leaves out (zones from
PreferredCacheClusterAZs).

chaosaws builds its own boto3 clients from the default session and honours AWS_ENDPOINT_URL: point that at
`FakeAws.url` (or pass endpoint_url) and its failover_db_cluster / test_failover reach these handlers.

Time is fake seconds on tests/fakes/clock.py: scaled (`time_scale`, 0.01 by default: a 35 s failover takes
0.35 s) or manual (`manual_clock=True`, then `advance(seconds)`). Other moto servers in the same process keep
moto's own behaviour: the replacements act only on requests that came through this server.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from .aws_fis import FakeFis, install as install_fis
from .aws_refusals import Refusals
from .aws_restore import RdsRestores, install as install_restores
from .clock import FakeClock
from .serving import ServedFake

_CURRENT = threading.local()  # the FakeAws whose server is handling this thread's request
_INSTALLED = False
_LOCK = threading.RLock()


@dataclass
class CacheEvent:
    """An ElastiCache event (DescribeEvents shape: SourceIdentifier, SourceType, Message, Date)."""
    source_identifier: str
    source_type: str
    message: str
    date: datetime


@dataclass
class RdsEvent:
    """An RDS event as moto's serializer reads it."""
    source_identifier: str
    source_type: str
    message: str
    event_categories: list[str]
    source_arn: str
    date: datetime = field(default_factory=lambda: _utcnow())


def use_fake_credentials(monkeypatch: Any, region: str) -> None:
    """Environment for boto3 clients (and chaosaws) talking to a fake: dummy keys, the region, no profile and
    no endpoint override (set AWS_ENDPOINT_URL to `FakeAws.url` where a client must be redirected)."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": region}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


def _fault(code: str, message: str) -> Exception:
    """A service error moto serializes with the operation's own error shapes (by shape name or error code)."""
    from moto.core.exceptions import ServiceException

    class FakeAwsFault(ServiceException):  # defined here, not in moto.core: moto then uses the request's service
        pass
    return FakeAwsFault(code, message)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # moto keeps naive UTC datetimes


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _window(params: Callable[[str], Any]) -> tuple[datetime, datetime]:
    """DescribeEvents' time window: StartTime/EndTime, else Duration minutes (default 60) back from now."""
    end = _parse_time(params("EndTime")) or _utcnow()
    start = _parse_time(params("StartTime"))
    if start is None:
        duration = int(params("Duration") or 60)
        start = end - timedelta(minutes=duration)
    return start, end


class FakeAws(ServedFake):
    """`with FakeAws() as aws:` serves moto at `aws.url`, with failovers that take time."""

    thread_name = "fake-aws"

    def __init__(self, *, time_scale: float = 0.01, manual_clock: bool = False, rds_failover_s: float = 35.0,
                 cache_promote_s: float = 30.0, cache_recover_s: float = 90.0, test_failover_limit: int = 15,
                 rds_outage_after_s: float = 5.0, cache_outage_after_s: float = 5.0, rds_restore_s: float = 600.0,
                 rds_instance_create_s: float = 420.0, rds_restorable_lag_s: float = 300.0) -> None:
        super().__init__()
        _install()
        self.clock = FakeClock(time_scale=time_scale, manual=manual_clock)
        self.rds_failover_s = rds_failover_s
        self.cache_promote_s = cache_promote_s
        self.cache_recover_s = cache_recover_s
        self.test_failover_limit = test_failover_limit
        # failover timing: the call returns, then the outage, then the new writer / primary
        self.rds_outage_after_s = rds_outage_after_s
        self.cache_outage_after_s = cache_outage_after_s
        self.writers_down: set[str] = set()  # DB cluster ids whose writer does not answer now
        self.primaries_down: set[str] = set()  # replication group ids whose primary does not answer now
        self.cache_events: list[tuple[str, str, CacheEvent]] = []  # (account, region, event)
        self._test_failovers: list[float] = []  # fake times of TestFailover calls (the rolling 24 h limit)
        self.refusals = Refusals()  # errors to answer instead, and every request counted (aws_refusals.py)
        self.fis = FakeFis(self.clock, lambda: self.url)  # FIS experiments that act (aws_fis.py)
        install_fis(_active)
        # point-in-time restores that take minutes and refuse what RDS refuses (aws_restore.py)
        self.restores = RdsRestores(self, restore_s=rds_restore_s, instance_create_s=rds_instance_create_s,
                                    restorable_lag_s=rds_restorable_lag_s)

    # -- lifecycle (start / stop / url / with / advance: ServedFake)
    def _make_server(self) -> Any:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server
        moto_app = DomainDispatcherApplication(create_backend_app)
        fake = self

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            refused = fake.refusals.answer(environ)  # injected throttling / AccessDenied (aws_refusals.py)
            if refused is not None:
                return refused(environ, start_response)
            _CURRENT.fake = fake
            try:
                return moto_app(environ, start_response)
            finally:
                _CURRENT.fake = None

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        return make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)

    def _later(self, seconds: float, fn: Callable[[], None]) -> None:
        def locked() -> None:
            with _LOCK:
                fn()
        self.clock.call_later(seconds, locked)

    # -- RDS
    def rds_failover(self, response: Any) -> Any:
        from moto.core.responses import ActionResult
        from moto.rds.exceptions import DBClusterNotFoundError, InvalidDBClusterStateFault, InvalidParameterValue
        backend = response.backend
        params = response.params
        cluster_id = params.get("DBClusterIdentifier")
        cluster = backend.clusters.get(cluster_id)
        if cluster is None:
            raise DBClusterNotFoundError(cluster_id, f"The source cluster could not be found or cannot be accessed: "
                                                     f"{cluster_id}")
        if cluster.status != "available":
            raise InvalidDBClusterStateFault(f"DbCluster {cluster_id} is in {cluster.status} state but expected it "
                                             f"to be one of available")
        members = cluster.members
        writer = next((m for m in members if m.is_cluster_writer), None)
        target_id = params.get("TargetDBInstanceIdentifier")
        if target_id:
            target = next((m for m in members if m.db_instance_identifier == target_id), None)
            if target is None:
                raise InvalidParameterValue(f"Cannot find target instance: {target_id}")
            if target is writer:
                raise InvalidParameterValue(f"Target instance {target_id} is already the writer of {cluster_id}")
        else:
            target = next((m for m in members if not m.is_cluster_writer and m.status == "available"), None)
        if len(members) < 2 or target is None:
            raise InvalidDBClusterStateFault(f"Database cluster:{cluster_id} should have at least two database "
                                             f"instances for failover")
        cross_az = writer is None or writer.availability_zone != target.availability_zone
        name = target.db_instance_identifier
        cluster.status = "failing-over"

        def outage() -> None:  # after the call returned: the writer goes away
            if backend.clusters.get(cluster_id) is not cluster or cluster.status != "failing-over":
                return
            self.writers_down.add(cluster_id)
            self._rds_event(backend, cluster, "Started cross AZ failover to DB instance: " + name if cross_az
                            else "Started same AZ failover to DB instance: " + name)

        def complete() -> None:
            if backend.clusters.get(cluster_id) is not cluster:
                return
            cluster.failover(target)
            cluster.status = "available"
            self.writers_down.discard(cluster_id)
            self._rds_event(backend, cluster, f"Completed failover to DB instance: {name}")
        self._later(min(self.rds_outage_after_s, self.rds_failover_s), outage)
        self._later(self.rds_failover_s, complete)
        return ActionResult({"DBCluster": cluster})

    @staticmethod
    def _rds_event(backend: Any, cluster: Any, message: str) -> None:
        backend.events.append(RdsEvent(cluster.db_cluster_identifier, "db-cluster", message, ["failover"],
                                       cluster.arn))

    # -- ElastiCache
    def complete_replicas(self, response: Any) -> None:
        """Add the replicas moto leaves out of a cluster-mode-disabled group created with NumCacheClusters."""
        wanted = int(response._get_param("NumCacheClusters") or 0)
        zones = list(response._get_param("PreferredCacheClusterAZs", []) or [])
        group = response.elasticache_backend.replication_groups.get(response._get_param("ReplicationGroupId"))
        if group is None or group.cluster_mode == "enabled" or wanted < 2:
            return
        node_group = group.node_groups[0]
        members = node_group["node_group_members"]
        primary = members[0]
        domain = primary["read_endpoint"]["address"].split(".", 1)[1]
        if zones:
            primary["preferred_availability_zone"] = zones[0]
        for i in range(len(members), wanted):
            cluster_id = f"{group.replication_group_id}-{i + 1:0>3}"
            members.append({"cache_cluster_id": cluster_id, "cache_node_id": primary["cache_node_id"],
                            "read_endpoint": {"address": f"{cluster_id}.{domain}", "port": group.port},
                            "preferred_availability_zone": zones[i] if i < len(zones) else
                            primary["preferred_availability_zone"],
                            "current_role": "replica"})
            group.member_clusters.append(cluster_id)

    def test_failover(self, response: Any) -> Any:
        from moto.core.responses import ActionResult
        backend = response.elasticache_backend
        group_id = response._get_param("ReplicationGroupId")
        node_group_id = response._get_param("NodeGroupId")
        group = backend.replication_groups.get(group_id)
        if group is None:
            raise _fault("ReplicationGroupNotFoundFault", f"Replication group {group_id} not found.")
        node_group = next((g for g in group.node_groups if g["node_group_id"] == node_group_id), None)
        if node_group is None:
            raise _fault("NodeGroupNotFoundFault", f"Node group {node_group_id} not found in replication "
                                                             f"group {group_id}.")
        if group.status != "available":
            raise _fault("InvalidReplicationGroupStateFault",
                                   f"Replication group {group_id} is not in available state ({group.status}).")
        members = node_group["node_group_members"]
        primary = next((m for m in members if m.get("current_role") == "primary"), None)
        replicas = [m for m in members if m.get("current_role") == "replica"]
        if group.automatic_failover != "enabled" or primary is None or not replicas:
            raise _fault("TestFailoverNotAvailableFault",
                                   f"TestFailover is not available for node group {node_group_id} of {group_id}: it "
                                   f"needs automatic failover enabled and a replica.")
        now = self.clock.now()
        recent = [t for t in self._test_failovers if t > now - 24 * 3600]
        if len(recent) >= self.test_failover_limit:
            raise _fault("APICallRateForCustomerExceededFault",
                                   f"TestFailover was called on {len(recent)} node groups in the last 24 hours "
                                   f"(the limit is {self.test_failover_limit}).")
        self._test_failovers = recent + [now]
        account, region = response.current_account, response.region
        promoted = next((r for r in replicas if r.get("preferred_availability_zone") !=
                         primary.get("preferred_availability_zone")), replicas[0])
        group.status = node_group["status"] = "modifying"
        self._cache_event(account, region, group_id, "replication-group",
                          f"Test Failover API called for node group {node_group_id}")

        def outage() -> None:  # after the call returned: the primary goes away until the promotion
            if backend.replication_groups.get(group_id) is group and primary.get("current_role") == "primary":
                self.primaries_down.add(group_id)

        def promote() -> None:
            if backend.replication_groups.get(group_id) is not group:
                return
            self.primaries_down.discard(group_id)
            primary["current_role"], promoted["current_role"] = "replica", "primary"
            text = f"Failover from primary node {primary['cache_cluster_id']} to replica node " \
                   f"{promoted['cache_cluster_id']} completed"
            self._cache_event(account, region, primary["cache_cluster_id"], "cache-cluster", text)
            self._cache_event(account, region, group_id, "replication-group", text)
            self._cache_event(account, region, primary["cache_cluster_id"], "cache-cluster",
                              f"Recovering cache nodes {primary['cache_node_id']}")
            self._later(self.cache_recover_s, recovered)

        def recovered() -> None:
            if backend.replication_groups.get(group_id) is not group:
                return
            self._cache_event(account, region, primary["cache_cluster_id"], "cache-cluster",
                              f"Finished recovery for cache nodes {primary['cache_node_id']}")
            group.status = node_group["status"] = "available"

        self._later(min(self.cache_outage_after_s, self.cache_promote_s), outage)
        self._later(self.cache_promote_s, promote)
        return ActionResult({"ReplicationGroup": group})

    # -- what a fake app sees of the failovers
    def database_available(self, cluster_id: str) -> bool:
        """Whether the cluster's writer answers now (False from a failover's start until its new writer)."""
        return cluster_id not in self.writers_down

    def cache_available(self, group_id: str) -> bool:
        """Whether the replication group's primary answers now (False from a TestFailover's outage to the promotion)."""
        return group_id not in self.primaries_down

    def _cache_event(self, account: str, region: str, source: str, source_type: str, message: str) -> None:
        self.cache_events.append((account, region, CacheEvent(source, source_type, message, _utcnow())))

    def describe_cache_events(self, response: Any) -> Any:
        from moto.core.responses import ActionResult
        source = response._get_param("SourceIdentifier")
        source_type = response._get_param("SourceType")
        start, end = _window(response._get_param)
        events = [e for account, region, e in self.cache_events
                  if account == response.current_account and region == response.region
                  and (not source or e.source_identifier == source) and (not source_type or e.source_type ==
                                                                         source_type)
                  and start <= e.date <= end]
        return ActionResult({"Events": sorted(events, key=lambda e: e.date)})

    @staticmethod
    def describe_rds_events(response: Any, original: Callable[[Any], Any]) -> Any:
        from moto.core.responses import ActionResult
        params = response.params
        start, end = _window(lambda name: params.get(name))
        events = response.backend.describe_events(source_identifier=params.get("SourceIdentifier"),
                                                  source_type=params.get("SourceType"))
        return ActionResult({"Events": [e for e in events if start <= _parse_time(e.date) <= end]})  # type: ignore[operator]


def _active() -> FakeAws | None:
    fake = getattr(_CURRENT, "fake", None)
    return fake if isinstance(fake, FakeAws) else None


def _install() -> None:
    """Wrap moto's handlers once: requests through a FakeAws server get the fake's behaviour, others moto's."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        from moto.elasticache.responses import ElastiCacheResponse
        from moto.rds.responses import RDSResponse

        original_failover = RDSResponse.failover_db_cluster
        original_rds_events = RDSResponse.describe_events
        original_create_group = ElastiCacheResponse.create_replication_group

        def failover_db_cluster(self: Any) -> Any:
            fake = _active()
            if fake is None:
                return original_failover(self)
            with _LOCK:
                return fake.rds_failover(self)

        def rds_describe_events(self: Any) -> Any:
            fake = _active()
            return original_rds_events(self) if fake is None else fake.describe_rds_events(self, original_rds_events)

        def create_replication_group(self: Any) -> Any:
            result = original_create_group(self)
            fake = _active()
            if fake is not None:
                with _LOCK:
                    fake.complete_replicas(self)
            return result

        def test_failover(self: Any) -> Any:
            fake = _active()
            if fake is None:
                raise NotImplementedError("The test_failover action has not been implemented")
            with _LOCK:
                return fake.test_failover(self)

        def cache_describe_events(self: Any) -> Any:
            fake = _active()
            if fake is None:
                raise NotImplementedError("The describe_events action has not been implemented")
            with _LOCK:
                return fake.describe_cache_events(self)

        RDSResponse.failover_db_cluster = failover_db_cluster  # type: ignore[method-assign]
        RDSResponse.describe_events = rds_describe_events  # type: ignore[method-assign]
        ElastiCacheResponse.create_replication_group = create_replication_group  # type: ignore[method-assign]
        setattr(ElastiCacheResponse, "test_failover", test_failover)
        setattr(ElastiCacheResponse, "describe_events", cache_describe_events)
        install_restores(_active)
        _INSTALLED = True
