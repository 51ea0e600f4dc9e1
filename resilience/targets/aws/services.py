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
from typing import Any, Callable, Iterator

from ...config import Settings
from ...errors import HarnessError, UserError
from ..base import Build, PlatformEvent, Services, StackStatus
from ..blast_radius import region_problem
from ..kubernetes.manifests import BackendEndpoints
from ..recovery_log import RecoveryLog
from .alarms import CloudWatchAlarms
from .clients import AwsClients
from .observer import POLL_S, AwsObserver
from .restore import posture_of

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



class AwsServices(Services):
    """RDS Multi-AZ DB cluster + ElastiCache replication group in an allowed account (faults: aws/nemesis.py)."""

    name = "aws"

    @classmethod
    def build(cls, parts: Build) -> "AwsServices":
        return cls(parts.settings, dry_run=parts.dry_run)

    def __init__(self, settings: Settings, dry_run: bool = False, session: Any | None = None) -> None:
        self.settings = settings
        self.aws = settings.aws
        self.dry_run = dry_run  # plans only: no session, no call
        # status and events are read from the observer's last round (observer.py)
        self.observer = AwsObserver(self.aws, self.client, self.cluster, self.replication_group)
        self.baseline_read = self.observer.baseline_read  # set once the loop knows who leads
        self.recovery = RecoveryLog()  # a restore's steps, for the history (aws/restore.py)
        self.alarms = CloudWatchAlarms(self.aws, self.client)  # aws.alarms: detection and stop alarms (alarms.py)
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
        self.clients = AwsClients(session, self.aws.region, self.aws.endpoint_url)
        self.account = self._check_account()

    # -- clients and the allow-list -----------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client (made once, shared by threads; clients.py), only ever for an allowed region (checked
        before every call)."""
        problem = region_problem(self.settings)
        if problem:
            raise UserError(problem)
        return self.clients.get(service)

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
        """The RDS instances and ElastiCache nodes as components (the observer's last round while observing)."""
        snapshot = self.observer.snapshot()
        cluster, group = snapshot.cluster, snapshot.group
        detail = {"account": self.account, "region": self.aws.region, "rds_cluster_status": cluster.get("Status"),
                  "elasticache_status": group.get("Status")}
        running = cluster.get("Status") == "available"
        detail["backups"] = posture_of(cluster, snapshot.instances).as_detail() if cluster else {}
        return StackStatus(self.name, running, None, None, snapshot.components(), detail)

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

    # -- observation (observer.py) -------------------------------------------------------
    def roles(self) -> dict[str, str | None]:
        """Who leads now: the RDS writer, and each ElastiCache node group's primary (read now)."""
        return self.observer.read().roles()

    def start_observing(self, poll_s: float = POLL_S) -> None:
        """Observe in a loop (AWS offers no watch): status and events read its last round."""
        if not self.dry_run:
            self.observer.start(poll_s)
            if self.alarms.enabled:
                self.alarms.start()

    def stop_observing(self) -> None:
        self.observer.stop()
        self.alarms.stop()

    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        """RDS and ElastiCache events (failover start/complete), writer/primary changes, CloudWatch connection
        counts; each once."""
        return (self.observer.events_since(monotonic) + self.recovery.since(monotonic)
                + self.alarms.feed.since(monotonic))
