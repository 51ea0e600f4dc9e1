"""The platform's managed services on AWS: PostgreSQL on RDS, Redis on ElastiCache.

The account is checked first: the constructor asks STS who we are and refuses
any account not in `aws.allowed_accounts` before any other call. This target
does not create infrastructure (EKS, RDS and ElastiCache come from the
platform's own provisioning); the target's plan checks that it is there. Faults
(aws/nemesis.py):

- database failover: `chaosaws.rds.actions.failover_db_cluster`
- cache failover: `chaosaws.elasticache.actions.test_failover`
- zone outage: our own network-ACL blackhole (chaosaws has no such action): a
  new NACL with no allow rules replaces the zone's subnet associations; the
  original associations go into the RollbackStep, and rollback restores them.

chaosaws builds its own boto3 clients; we hand it this session's credentials
and region, and the endpoint (tests: moto) through `AWS_ENDPOINT_URL`, which
botocore honours, set only for the duration of the call.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from ...config import Settings
from ...errors import HarnessError, UserError
from ..base import Component, PlatformEvent, StackStatus
from ..clock import to_monotonic, to_wall
from ..blast_radius import region_problem
from ..kubernetes.manifests import BackendEndpoints
from ..base import Services

@contextlib.contextmanager
def endpoint_env(endpoint_url: str | None) -> Iterator[None]:
    """Point every boto3 client created inside the block at `endpoint_url` (botocore's AWS_ENDPOINT_URL)."""
    if not endpoint_url:
        yield
        return
    before = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = before


POLL_S = 2.0  # how often the writer and primaries are read while observing


class AwsServices(Services):
    """RDS Multi-AZ DB cluster + ElastiCache replication group in an allowed account (faults: aws/nemesis.py)."""

    name = "aws"

    def __init__(self, settings: Settings, dry_run: bool = False, session: Any | None = None) -> None:
        self.settings = settings
        self.aws = settings.aws
        self.dry_run = dry_run  # plans only: no session, no call
        self._observer: threading.Thread | None = None
        self._stop_observer = threading.Event()
        self._observed: list[PlatformEvent] = []
        self.baseline_read = threading.Event()  # set once the observer knows who leads (changes count from here)
        if not self.aws.allowed_accounts:
            raise UserError(f"{settings.source}: 'aws.allowed_accounts' is empty, so no AWS account may be used. "
                            f"Add the 12-digit id of an account meant for chaos experiments, e.g.\n"
                            f"  aws:\n    allowed_accounts: ['123456789012']")
        self.account: str | None = None
        if dry_run:
            self._session: Any = None
            return
        if session is None:
            import boto3
            session = boto3.Session(region_name=self.aws.region)
        self._session = session
        self.account = self._check_account()

    # -- clients and the allow-list -----------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client, only ever for an allowed region (checked before every call)."""
        problem = region_problem(self.settings)
        if problem:
            raise UserError(problem)
        return self._session.client(service, region_name=self.aws.region, endpoint_url=self.aws.endpoint_url)

    def _check_account(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            account = str(self.client("sts").get_caller_identity()["Account"])
        except (BotoCoreError, ClientError) as exc:
            raise UserError(f"AWS: cannot tell which account these credentials belong to "
                            f"(sts:GetCallerIdentity failed: {exc}). Check AWS_PROFILE / credentials.") from None
        if account not in self.aws.allowed_accounts:
            raise UserError(
                f"{self.settings.source}: AWS account {account} is not in 'aws.allowed_accounts' "
                f"({', '.join(self.aws.allowed_accounts)}). Nothing else was called. If this account is meant "
                f"for chaos experiments, add '{account}' to aws.allowed_accounts; otherwise switch credentials.")
        return account

    def chaos(self, function: Callable[..., Any], **arguments: Any) -> Any:
        """Call a chaosaws function with this session's region, credentials and endpoint."""
        creds = self._session.get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
        secrets = {} if frozen is None else {"aws_access_key_id": frozen.access_key,
                                             "aws_secret_access_key": frozen.secret_key,
                                             "aws_session_token": frozen.token}
        from chaoslib.exceptions import ChaosException
        problem = region_problem(self.settings)
        if problem:
            raise UserError(problem)
        with endpoint_env(self.aws.endpoint_url):
            try:
                return function(**arguments, configuration={"aws_region": self.aws.region}, secrets=secrets)
            except ChaosException as exc:
                raise HarnessError(f"{function.__module__}.{function.__name__}({arguments}) failed: {exc}") from exc

    # -- plans and status ------------------------------------------------------------
    def plan_up(self) -> list[str]:
        return [f"check: region {self.aws.region!r} is in aws.allowed_regions "
                f"({', '.join(self.aws.allowed_regions) or 'empty: every call is refused'}) before every call",
                f"check: sts:GetCallerIdentity; the account must be in aws.allowed_accounts "
                f"({', '.join(self.aws.allowed_accounts)}) before any other call",
                f"check: rds:DescribeDBClusters(DBClusterIdentifier={self.aws.rds_cluster!r}) and "
                f"rds:DescribeDBInstances for each member; elasticache:DescribeReplicationGroups("
                f"ReplicationGroupId={self.aws.elasticache_group!r}) (nothing is created)"]

    def cluster(self) -> dict[str, Any]:
        from botocore.exceptions import ClientError
        try:
            clusters = self.client("rds").describe_db_clusters(DBClusterIdentifier=self.aws.rds_cluster)["DBClusters"]
        except ClientError as exc:
            raise UserError(f"aws.rds_cluster: RDS DB cluster {self.aws.rds_cluster!r} in {self.aws.region} "
                            f"cannot be read ({exc}). Fix the setting or the region.") from None
        return dict(clusters[0])

    def replication_group(self) -> dict[str, Any]:
        from botocore.exceptions import ClientError
        try:
            groups = self.client("elasticache").describe_replication_groups(
                ReplicationGroupId=self.aws.elasticache_group)["ReplicationGroups"]
        except ClientError as exc:
            raise UserError(f"aws.elasticache_group: replication group {self.aws.elasticache_group!r} in "
                            f"{self.aws.region} cannot be read ({exc}). Fix the setting or the region.") from None
        return dict(groups[0])

    def components_status(self) -> StackStatus:
        """The RDS instances and ElastiCache nodes as components, each with its zone, role and health."""
        cluster = self.cluster()
        rds = self.client("rds")
        components = []
        for member in cluster.get("DBClusterMembers", []):
            instance = rds.describe_db_instances(DBInstanceIdentifier=member["DBInstanceIdentifier"])["DBInstances"][0]
            components.append(Component(
                name=member["DBInstanceIdentifier"], kind="postgres",
                role="primary" if member.get("IsClusterWriter") else "replica",
                zone=instance.get("AvailabilityZone"), pid=None,
                address=f"{instance.get('Endpoint', {}).get('Address', '')}:{instance.get('Endpoint', {}).get('Port', '')}",
                healthy=instance.get("DBInstanceStatus") == "available"))
        group = self.replication_group()
        for node_group in group.get("NodeGroups", []):
            for member in node_group.get("NodeGroupMembers", []):
                endpoint = member.get("ReadEndpoint", {})
                components.append(Component(
                    name=member["CacheClusterId"], kind="redis", role=member.get("CurrentRole", "member"),
                    zone=member.get("PreferredAvailabilityZone"), pid=None,
                    address=f"{endpoint.get('Address', '')}:{endpoint.get('Port', '')}",
                    healthy=node_group.get("Status", group.get("Status")) == "available"))
        detail = {"account": self.account, "region": self.aws.region, "rds_cluster_status": cluster.get("Status"),
                  "elasticache_status": group.get("Status")}
        running = cluster.get("Status") == "available"
        return StackStatus(self.name, running, None, None, components, detail)

    def backend_endpoints(self) -> BackendEndpoints:
        """The RDS writer endpoint and the ElastiCache primary endpoint, for the kubernetes target's manifests."""
        if self.dry_run:
            raise UserError("backend_endpoints() needs real AWS calls; it is not available in a dry run.")
        cluster = self.cluster()
        group = self.replication_group()
        primary = group.get("ConfigurationEndpoint") or group["NodeGroups"][0]["PrimaryEndpoint"]
        return BackendEndpoints(postgres_host=cluster["Endpoint"], postgres_port=int(cluster.get("Port") or 5432),
                                redis_host=primary["Address"], redis_port=int(primary.get("Port") or 6379))

    def instance_zone(self, instance_id: str) -> str | None:
        instance = self.client("rds").describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
        return instance.get("AvailabilityZone")

    def primary_zone(self) -> str | None:
        """The zone of the RDS writer instance."""
        if self.dry_run:
            return None
        for member in self.cluster().get("DBClusterMembers", []):
            if member.get("IsClusterWriter"):
                instance = self.client("rds").describe_db_instances(
                    DBInstanceIdentifier=member["DBInstanceIdentifier"])["DBInstances"][0]
                return str(instance["AvailabilityZone"])
        return None

    # -- observation ---------------------------------------------------------------------
    def roles(self) -> dict[str, str | None]:
        """Who leads now: the RDS writer, and each ElastiCache node group's primary."""
        roles: dict[str, str | None] = {"postgres": next(
            (m["DBInstanceIdentifier"] for m in self.cluster().get("DBClusterMembers", []) if m.get("IsClusterWriter")),
            None)}
        for group in self.replication_group().get("NodeGroups", []):
            roles[f"redis/{group['NodeGroupId']}"] = next(
                (m.get("CacheClusterId") for m in group.get("NodeGroupMembers", []) if m.get("CurrentRole") == "primary"),
                None)
        return roles

    def start_observing(self, poll_s: float = POLL_S) -> None:
        """Poll the writer and primaries (AWS offers no watch): a change is a `platform/failover` event."""
        if self.dry_run or self._observer is not None:
            return
        self._stop_observer.clear()
        self._observer = threading.Thread(target=self._observe, args=(poll_s,), name="aws-roles", daemon=True)
        self._observer.start()

    def stop_observing(self) -> None:
        self._stop_observer.set()
        if self._observer is not None:
            self._observer.join(timeout=30)

    def _observe(self, poll_s: float) -> None:
        last: dict[str, str | None] | None = None
        while not self._stop_observer.is_set():
            try:
                now = self.roles()
            except Exception as exc:  # noqa: BLE001 - reported, then retried
                self._observed.append(PlatformEvent(time.monotonic(), "platform", "observe-error", {"error": str(exc)}))
            else:
                at = time.monotonic()
                for key, holder in now.items():
                    before = (last or {}).get(key, holder)
                    if before != holder:
                        self._observed.append(PlatformEvent(at, "platform", "failover", {
                            "component": key.split("/")[0], "group": key, "from": before, "new_primary": holder}))
                last = now
                self.baseline_read.set()
            self._stop_observer.wait(poll_s)

    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        """RDS and ElastiCache events (failover start/complete) and CloudWatch connection counts."""
        start = to_wall(monotonic)
        events: list[PlatformEvent] = [e for e in self._observed if e.monotonic >= monotonic]
        sources = [("rds", "postgres", self.aws.rds_cluster, "db-cluster"),
                   ("elasticache", "redis", self.aws.elasticache_group, "replication-group")]
        for service, component, identifier, source_type in sources:
            try:
                found = self.client(service).describe_events(SourceIdentifier=identifier, SourceType=source_type,
                                                              StartTime=start)["Events"]
            except Exception as exc:  # observation is best effort (e.g. moto has no ElastiCache DescribeEvents)
                events.append(PlatformEvent(time.monotonic(), "platform", "events-unavailable",
                                            {"component": component, "error": str(exc)}))
                continue
            for event in found:
                message = str(event.get("Message", ""))
                op = "failover" if "failover" in message.lower() else f"{service}-event"
                events.append(PlatformEvent(to_monotonic(event["Date"]) or 0.0, "platform", op,
                                            {"component": component, "message": message,
                                             "source": event.get("SourceIdentifier")}))
        try:
            stats = self.client("cloudwatch").get_metric_statistics(
                Namespace="AWS/RDS", MetricName="DatabaseConnections",
                Dimensions=[{"Name": "DBClusterIdentifier", "Value": self.aws.rds_cluster}],
                StartTime=start, EndTime=datetime.now(timezone.utc), Period=60, Statistics=["Minimum", "Maximum"])
            for point in stats.get("Datapoints", []):
                events.append(PlatformEvent(to_monotonic(point["Timestamp"]) or 0.0, "platform", "metric", {
                    "component": "postgres", "metric": "AWS/RDS DatabaseConnections", "period_s": 60,
                    "minimum": point.get("Minimum"), "maximum": point.get("Maximum")}))
        except Exception as exc:  # best effort, as above
            events.append(PlatformEvent(time.monotonic(), "platform", "metrics-unavailable", {"error": str(exc)}))
        return sorted(events, key=lambda e: e.monotonic)

