"""RDS and ElastiCache observed by one loop that keeps the last state (Patroni's model: the loop observes,
readers read the last state).

One round reads the DB cluster, its instances (one call) and the replication group: an `AwsSnapshot`
with the time it was taken. While observing, a thread takes a round every `poll_s` and also reads the
RDS / ElastiCache events and the CloudWatch connection counts since the earliest time anyone asked
for; `status`, `events_since` and the run's event feed read what it kept instead of calling AWS on
every poll. Without the loop each read is a direct round. A change of writer or primary between two
rounds is a `platform/failover` event. Every event is kept once: an API without events (moto has no
ElastiCache DescribeEvents) gives one `events-unavailable` record, stamped when first seen.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ...config import AwsSettings
from ..base import Component, PlatformEvent
from ..clock import to_monotonic, to_wall

POLL_S = 2.0  # how often the loop takes a round while observing


@dataclass(frozen=True)
class AwsSnapshot:
    """The DB cluster, its instances (by id) and the replication group, as read at `at` (monotonic)."""

    at: float
    cluster: dict[str, Any]
    instances: dict[str, dict[str, Any]]
    group: dict[str, Any] = field(default_factory=dict)

    def writer(self) -> str | None:
        return next((m["DBInstanceIdentifier"] for m in self.cluster.get("DBClusterMembers", [])
                     if m.get("IsClusterWriter")), None)

    def roles(self) -> dict[str, str | None]:
        """Who leads: the RDS writer, and each ElastiCache node group's primary."""
        roles: dict[str, str | None] = {"postgres": self.writer()}
        for group in self.group.get("NodeGroups", []):
            roles[f"redis/{group['NodeGroupId']}"] = next(
                (m.get("CacheClusterId") for m in group.get("NodeGroupMembers", []) if m.get("CurrentRole") == "primary"),
                None)
        return roles

    def primary_zone(self) -> str | None:
        writer = self.writer()
        zone = self.instances.get(writer, {}).get("AvailabilityZone") if writer else None
        return str(zone) if zone else None

    def components(self) -> list[Component]:
        """The RDS instances and ElastiCache nodes, each with its zone, role and health."""
        components = []
        for member in self.cluster.get("DBClusterMembers", []):
            name = member["DBInstanceIdentifier"]
            instance = self.instances.get(name, {})
            endpoint = instance.get("Endpoint", {})
            components.append(Component(
                name=name, kind="postgres", role="primary" if member.get("IsClusterWriter") else "replica",
                zone=instance.get("AvailabilityZone"), pid=None,
                address=f"{endpoint.get('Address', '')}:{endpoint.get('Port', '')}",
                healthy=instance.get("DBInstanceStatus") == "available"))
        for node_group in self.group.get("NodeGroups", []):
            for member in node_group.get("NodeGroupMembers", []):
                endpoint = member.get("ReadEndpoint", {})
                components.append(Component(
                    name=member["CacheClusterId"], kind="redis", role=member.get("CurrentRole", "member"),
                    zone=member.get("PreferredAvailabilityZone"), pid=None,
                    address=f"{endpoint.get('Address', '')}:{endpoint.get('Port', '')}",
                    healthy=node_group.get("Status", self.group.get("Status")) == "available"))
        return components


class AwsObserver:
    """Takes rounds (directly, or in its loop while observing) and keeps the last snapshot and every event once.

    `read_cluster`, `read_group` and `client` are the services' own reads (their errors and allow-list
    checks included), so the observer makes no call the services would not.
    """

    def __init__(self, aws: AwsSettings, client: Callable[[str], Any], read_cluster: Callable[[], dict[str, Any]],
                 read_group: Callable[[], dict[str, Any]], clock: Callable[[], float] = time.monotonic) -> None:
        self.aws = aws
        self.client = client
        self.read_cluster = read_cluster
        self.read_group = read_group
        self.clock = clock
        self.baseline_read = threading.Event()  # set once the loop knows who leads (changes count from here)
        self._lock = threading.Lock()
        self._last: AwsSnapshot | None = None
        self._events: dict[tuple[float, str, str], PlatformEvent] = {}  # each event once, by what it says
        self._reported: set[tuple[str, str]] = set()  # (op, component) of the "unavailable" records kept
        self._since: float | None = None  # the earliest time events were asked for (monotonic)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- rounds ----------------------------------------------------------------------
    def read(self) -> AwsSnapshot:
        """One round now (3 calls), kept as the last state."""
        at = self.clock()
        cluster = self.read_cluster()
        instances = self.client("rds").describe_db_instances(
            Filters=[{"Name": "db-cluster-id", "Values": [self.aws.rds_cluster]}])["DBInstances"]
        snapshot = AwsSnapshot(at, cluster, {i["DBInstanceIdentifier"]: dict(i) for i in instances}, self.read_group())
        with self._lock:
            if self._last is None or snapshot.at >= self._last.at:
                self._last = snapshot
        return snapshot

    def snapshot(self) -> AwsSnapshot:
        """The loop's last state while observing (once it has one); a direct round otherwise."""
        with self._lock:
            last = self._last if self.observing else None
        return last if last is not None else self.read()

    @property
    def observing(self) -> bool:
        return self._thread is not None and not self._stop.is_set()

    def read_events(self, since: float) -> None:
        """RDS and ElastiCache events (failover start/complete) and CloudWatch connection counts since `since`."""
        start = to_wall(since)
        sources = [("rds", "postgres", self.aws.rds_cluster, "db-cluster"),
                   ("elasticache", "redis", self.aws.elasticache_group, "replication-group")]
        for service, component, identifier, source_type in sources:
            try:
                found = self.client(service).describe_events(SourceIdentifier=identifier, SourceType=source_type,
                                                              StartTime=start)["Events"]
            except Exception as exc:  # observation is best effort (e.g. moto has no ElastiCache DescribeEvents)
                self._once("events-unavailable", component, {"component": component, "error": str(exc)})
                continue
            for event in found:
                message = str(event.get("Message", ""))
                op = "failover" if "failover" in message.lower() else f"{service}-event"
                self._keep(PlatformEvent(to_monotonic(event["Date"]) or 0.0, "platform", op, {
                    "component": component, "message": message, "source": event.get("SourceIdentifier")}))
        try:
            stats = self.client("cloudwatch").get_metric_statistics(
                Namespace="AWS/RDS", MetricName="DatabaseConnections",
                Dimensions=[{"Name": "DBClusterIdentifier", "Value": self.aws.rds_cluster}],
                StartTime=start, EndTime=datetime.now(timezone.utc), Period=60, Statistics=["Minimum", "Maximum"])
        except Exception as exc:  # best effort, as above
            self._once("metrics-unavailable", "cloudwatch", {"error": str(exc)})
            return
        for point in stats.get("Datapoints", []):
            self._keep(PlatformEvent(to_monotonic(point["Timestamp"]) or 0.0, "platform", "metric", {
                "component": "postgres", "metric": "AWS/RDS DatabaseConnections", "period_s": 60,
                "minimum": point.get("Minimum"), "maximum": point.get("Maximum")}))

    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        """What was observed from `monotonic` on: the loop's (which reads from here on), or a direct read."""
        with self._lock:
            self._since = monotonic if self._since is None else min(self._since, monotonic)
        if self._thread is None:
            self.read_events(monotonic)
        with self._lock:
            return sorted((e for e in self._events.values() if e.monotonic >= monotonic), key=lambda e: e.monotonic)

    def _keep(self, event: PlatformEvent) -> None:
        key = (event.monotonic, event.op, json.dumps(event.detail, sort_keys=True, default=str))
        with self._lock:
            self._events.setdefault(key, event)

    def _once(self, op: str, component: str, detail: dict[str, Any]) -> None:
        """A record that something cannot be read: kept the first time only (the same fact, not a new event)."""
        with self._lock:
            if (op, component) in self._reported:
                return
            self._reported.add((op, component))
        self._keep(PlatformEvent(self.clock(), "platform", op, detail))

    # -- the loop ----------------------------------------------------------------------
    def start(self, poll_s: float = POLL_S) -> None:
        if self._thread is not None:
            return
        with self._lock:
            started = self.clock()
            self._since = started if self._since is None else min(self._since, started)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(poll_s,), name="aws-observer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop after one last round (a reader after the run still sees the end); keeps what it saw."""
        thread = self._thread
        if thread is None or self._stop.is_set():
            return
        self._stop.set()
        thread.join(timeout=30)

    def _loop(self, poll_s: float) -> None:
        last: dict[str, str | None] | None = None
        last_error: str | None = None
        while True:
            stopping = self._stop.is_set()
            try:
                now = self.read().roles()
                self.read_events(self._since if self._since is not None else self.clock())
            except Exception as exc:  # noqa: BLE001 - reported (once per distinct error), then retried
                if str(exc) != last_error:
                    last_error = str(exc)
                    self._keep(PlatformEvent(self.clock(), "platform", "observe-error", {"error": str(exc)}))
            else:
                last_error = None
                at = self.clock()
                for key, holder in now.items():
                    before = (last or {}).get(key, holder)
                    if before != holder:
                        self._keep(PlatformEvent(at, "platform", "failover", {
                            "component": key.split("/")[0], "group": key, "from": before, "new_primary": holder}))
                last = now
                self.baseline_read.set()
            if stopping:
                return
            self._stop.wait(poll_s)  # set by stop(): one last round, then out
