"""The AWS target: the platform's data layer on RDS and ElastiCache, faults via chaostoolkit-aws.

The account is checked first: the constructor asks STS who we are and refuses
any account not in `aws.allowed_accounts` before any other call. This target
does not create infrastructure (EKS, RDS and ElastiCache come from the
platform's own provisioning); `up()` checks that it is there. Faults:

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
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from ..config import Settings
from ..errors import HarnessError, UserError
from .base import Component, PlatformEvent, RollbackStep, StackStatus, Target
from .manifests import MANAGED_BY_LABEL, MANAGER, BackendEndpoints

BLACKHOLE_TAG = "resilience:zone-blackhole"


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


def _wall_to_monotonic(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return time.monotonic() - (time.time() - moment.timestamp())


def _monotonic_to_wall(monotonic: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(seconds=time.monotonic() - monotonic)


class AwsTarget(Target):
    """RDS Multi-AZ DB cluster + ElastiCache replication group in an allowed account."""

    name = "aws"

    def __init__(self, settings: Settings, dry_run: bool = False, session: Any | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.aws = settings.aws
        self.dry_run = dry_run
        self.planned: list[str] = []
        self._echo = echo or (lambda line: print(line, file=sys.stdout))
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
    def _client(self, service: str) -> Any:
        return self._session.client(service, region_name=self.aws.region, endpoint_url=self.aws.endpoint_url)

    def _check_account(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            account = str(self._client("sts").get_caller_identity()["Account"])
        except (BotoCoreError, ClientError) as exc:
            raise UserError(f"AWS: cannot tell which account these credentials belong to "
                            f"(sts:GetCallerIdentity failed: {exc}). Check AWS_PROFILE / credentials.") from None
        if account not in self.aws.allowed_accounts:
            raise UserError(
                f"{self.settings.source}: AWS account {account} is not in 'aws.allowed_accounts' "
                f"({', '.join(self.aws.allowed_accounts)}). Nothing else was called. If this account is meant "
                f"for chaos experiments, add '{account}' to aws.allowed_accounts; otherwise switch credentials.")
        return account

    def _chaos(self, function: Callable[..., Any], **arguments: Any) -> Any:
        """Call a chaosaws function with this session's region, credentials and endpoint."""
        creds = self._session.get_credentials()
        frozen = creds.get_frozen_credentials() if creds is not None else None
        secrets = {} if frozen is None else {"aws_access_key_id": frozen.access_key,
                                             "aws_secret_access_key": frozen.secret_key,
                                             "aws_session_token": frozen.token}
        from chaoslib.exceptions import ChaosException
        with endpoint_env(self.aws.endpoint_url):
            try:
                return function(**arguments, configuration={"aws_region": self.aws.region}, secrets=secrets)
            except ChaosException as exc:
                raise HarnessError(f"{function.__module__}.{function.__name__}({arguments}) failed: {exc}") from exc

    def _would(self, lines: list[str]) -> None:
        for line in lines:
            self.planned.append(line)
            self._echo(f"[dry-run] {line}")

    # -- plans -----------------------------------------------------------------------
    def check_plan(self) -> list[str]:
        return [f"check: sts:GetCallerIdentity; the account must be in aws.allowed_accounts "
                f"({', '.join(self.aws.allowed_accounts)}) before any other call"]

    def capability_plan(self, capability: str, arguments: dict[str, Any]) -> list[str]:
        a = self.aws
        if capability == "lose_zone":
            zone = arguments.get("zone") or "<the RDS writer's zone, from rds:DescribeDBClusters + DescribeDBInstances>"
            return [
                f"lose_zone: rds:DescribeDBClusters(DBClusterIdentifier={a.rds_cluster!r}) -> DBSubnetGroup; "
                f"rds:DescribeDBSubnetGroups -> VpcId",
                f"lose_zone: ec2:DescribeSubnets(Filters=[vpc-id=<vpc>, availability-zone={zone}])",
                "lose_zone: ec2:CreateNetworkAcl(VpcId=<vpc>) tagged "
                f"{BLACKHOLE_TAG}: no allow entries, so it denies all traffic (our own action; chaosaws has none)",
                "lose_zone: ec2:DescribeNetworkAcls(Filters=[association.subnet-id=<subnet>]) for each subnet; "
                "the original NetworkAclId goes into the rollback step",
                "lose_zone: ec2:ReplaceNetworkAclAssociation(AssociationId=<association>, "
                "NetworkAclId=<blackhole>) for each subnet",
                "rollback restore_zone: ec2:ReplaceNetworkAclAssociation(AssociationId=<current>, "
                "NetworkAclId=<original>) for each subnet; ec2:DeleteNetworkAcl(NetworkAclId=<blackhole>)",
            ]
        if capability == "fail_over_database":
            return [f"fail_over_database: rds:DescribeDBClusters(DBClusterIdentifier={a.rds_cluster!r}) -> the first "
                    "reader instance (by name)",
                    f"fail_over_database: chaosaws.rds.actions.failover_db_cluster("
                    f"db_cluster_identifier={a.rds_cluster!r}, target_db_instance_identifier=<reader>, "
                    f"configuration={{'aws_region': {a.region!r}}})",
                    "rollback none: RDS keeps the promoted writer"]
        if capability == "stop_cache":
            return [f"stop_cache: elasticache:DescribeReplicationGroups(ReplicationGroupId={a.elasticache_group!r}) "
                    "-> the first NodeGroupId",
                    f"stop_cache: chaosaws.elasticache.actions.test_failover(replication_group_id="
                    f"{a.elasticache_group!r}, node_group_id=<node group>, configuration={{'aws_region': {a.region!r}}})",
                    "rollback none: ElastiCache keeps the promoted primary"]
        if capability == "kill_replicas":
            return ["kill_replicas: refused on the aws target (API replicas run on EKS): use --target kubernetes"]
        raise UserError(f"capability {capability!r} is not one the aws target offers; known: lose_zone, "
                        f"fail_over_database, stop_cache.")

    def plan_experiment(self, capabilities: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Every call a run would make, without making any."""
        lines = self.check_plan() + self.up_plan()
        for capability, arguments in capabilities:
            lines += self.capability_plan(capability, arguments)
        return lines

    def up_plan(self) -> list[str]:
        return [f"up: rds:DescribeDBClusters(DBClusterIdentifier={self.aws.rds_cluster!r}) and "
                f"rds:DescribeDBInstances for each member; elasticache:DescribeReplicationGroups("
                f"ReplicationGroupId={self.aws.elasticache_group!r}) (nothing is created)"]

    # -- lifecycle ---------------------------------------------------------------------
    def up(self) -> StackStatus:
        """Check that the RDS cluster and the ElastiCache group exist and report them (creates nothing)."""
        if self.dry_run:
            self._would(self.check_plan() + self.up_plan())
            return StackStatus(self.name, False, None, None, detail={"dry_run": True, "plan": list(self.planned)})
        return self.status()

    def down(self) -> None:
        """Nothing to remove: this target only adds blackhole NACLs, and rollback deletes those."""
        if self.dry_run:
            self._would(["down: nothing to delete (the aws target creates no infrastructure)"])

    def _cluster(self) -> dict[str, Any]:
        from botocore.exceptions import ClientError
        try:
            clusters = self._client("rds").describe_db_clusters(DBClusterIdentifier=self.aws.rds_cluster)["DBClusters"]
        except ClientError as exc:
            raise UserError(f"aws.rds_cluster: RDS DB cluster {self.aws.rds_cluster!r} in {self.aws.region} "
                            f"cannot be read ({exc}). Fix the setting or the region.") from None
        return dict(clusters[0])

    def _replication_group(self) -> dict[str, Any]:
        from botocore.exceptions import ClientError
        try:
            groups = self._client("elasticache").describe_replication_groups(
                ReplicationGroupId=self.aws.elasticache_group)["ReplicationGroups"]
        except ClientError as exc:
            raise UserError(f"aws.elasticache_group: replication group {self.aws.elasticache_group!r} in "
                            f"{self.aws.region} cannot be read ({exc}). Fix the setting or the region.") from None
        return dict(groups[0])

    def status(self) -> StackStatus:
        if self.dry_run:
            self._would(self.up_plan())
            return StackStatus(self.name, False, None, None, detail={"dry_run": True})
        cluster = self._cluster()
        rds = self._client("rds")
        components = []
        for member in cluster.get("DBClusterMembers", []):
            instance = rds.describe_db_instances(DBInstanceIdentifier=member["DBInstanceIdentifier"])["DBInstances"][0]
            components.append(Component(
                name=member["DBInstanceIdentifier"], kind="postgres",
                role="primary" if member.get("IsClusterWriter") else "replica",
                zone=instance.get("AvailabilityZone"), pid=None,
                address=f"{instance.get('Endpoint', {}).get('Address', '')}:{instance.get('Endpoint', {}).get('Port', '')}",
                healthy=instance.get("DBInstanceStatus") == "available"))
        group = self._replication_group()
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

    def url(self) -> str:
        raise UserError("the aws target has no URL of its own: the API runs on EKS. Use the kubernetes "
                        "target's URL (resilience status --target kubernetes) for load.")

    def backend_endpoints(self) -> BackendEndpoints:
        """The RDS writer endpoint and the ElastiCache primary endpoint, for the kubernetes target's manifests."""
        if self.dry_run:
            raise UserError("backend_endpoints() needs real AWS calls; it is not available in a dry run.")
        cluster = self._cluster()
        group = self._replication_group()
        primary = group.get("ConfigurationEndpoint") or group["NodeGroups"][0]["PrimaryEndpoint"]
        return BackendEndpoints(postgres_host=cluster["Endpoint"], postgres_port=int(cluster.get("Port") or 5432),
                                redis_host=primary["Address"], redis_port=int(primary.get("Port") or 6379))

    def primary_zone(self) -> str | None:
        """The zone of the RDS writer instance."""
        if self.dry_run:
            return None
        for member in self._cluster().get("DBClusterMembers", []):
            if member.get("IsClusterWriter"):
                instance = self._client("rds").describe_db_instances(
                    DBInstanceIdentifier=member["DBInstanceIdentifier"])["DBInstances"][0]
                return str(instance["AvailabilityZone"])
        return None

    # -- observation ---------------------------------------------------------------------
    def ready_replicas(self) -> int:
        raise UserError("the aws target does not run API replicas (they are pods on EKS): count them with the "
                        "kubernetes target.")

    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        """RDS and ElastiCache events (failover start/complete) and CloudWatch connection counts."""
        if self.dry_run:
            self._would([f"rds:DescribeEvents(SourceIdentifier={self.aws.rds_cluster!r}, SourceType='db-cluster')",
                         f"elasticache:DescribeEvents(SourceIdentifier={self.aws.elasticache_group!r}, "
                         "SourceType='replication-group')",
                         "cloudwatch:GetMetricStatistics(AWS/RDS DatabaseConnections by DBClusterIdentifier, "
                         "Period=60)"])
            return []
        start = _monotonic_to_wall(monotonic)
        events: list[PlatformEvent] = []
        sources = [("rds", "postgres", self.aws.rds_cluster, "db-cluster"),
                   ("elasticache", "redis", self.aws.elasticache_group, "replication-group")]
        for service, component, identifier, source_type in sources:
            try:
                found = self._client(service).describe_events(SourceIdentifier=identifier, SourceType=source_type,
                                                              StartTime=start)["Events"]
            except Exception as exc:  # observation is best effort (e.g. moto has no ElastiCache DescribeEvents)
                events.append(PlatformEvent(time.monotonic(), "platform", "events-unavailable",
                                            {"component": component, "error": str(exc)}))
                continue
            for event in found:
                message = str(event.get("Message", ""))
                op = "failover" if "failover" in message.lower() else f"{service}-event"
                events.append(PlatformEvent(_wall_to_monotonic(event["Date"]), "platform", op,
                                            {"component": component, "message": message,
                                             "source": event.get("SourceIdentifier")}))
        try:
            stats = self._client("cloudwatch").get_metric_statistics(
                Namespace="AWS/RDS", MetricName="DatabaseConnections",
                Dimensions=[{"Name": "DBClusterIdentifier", "Value": self.aws.rds_cluster}],
                StartTime=start, EndTime=datetime.now(timezone.utc), Period=60, Statistics=["Minimum", "Maximum"])
            for point in stats.get("Datapoints", []):
                events.append(PlatformEvent(_wall_to_monotonic(point["Timestamp"]), "platform", "metric", {
                    "component": "postgres", "metric": "AWS/RDS DatabaseConnections", "period_s": 60,
                    "minimum": point.get("Minimum"), "maximum": point.get("Maximum")}))
        except Exception as exc:  # best effort, as above
            events.append(PlatformEvent(time.monotonic(), "platform", "metrics-unavailable", {"error": str(exc)}))
        return sorted(events, key=lambda e: e.monotonic)

    # -- faults -----------------------------------------------------------------------------
    def kill_replicas(self, count: int | None = None, percent: float | None = None,
                      seed: int | None = None) -> RollbackStep:
        raise UserError("kill_replicas is not available on the aws target: API replicas are pods on EKS. "
                        "Use --target kubernetes (chaosk8s.pod.actions.terminate_pods).")

    def lose_zone(self, zone: str | None = None) -> RollbackStep:
        """Blackhole every subnet of `zone` in the database's VPC with a deny-all network ACL."""
        if self.dry_run:
            self._would(self.capability_plan("lose_zone", {"zone": zone}))
            return RollbackStep("restore_zone", {"zone": zone or "<zone>"}, "re-associate the original NACLs")
        zone = zone or self.primary_zone()
        if zone is None:
            raise UserError(f"lose_zone: RDS cluster {self.aws.rds_cluster!r} has no writer to take the zone from; "
                            f"pass the zone explicitly.")
        ec2 = self._client("ec2")
        vpc_id = self._vpc_id()
        subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "availability-zone", "Values": [zone]}])["Subnets"]]
        if not subnets:
            raise UserError(f"lose_zone: VPC {vpc_id} has no subnet in availability zone {zone!r}.")
        originals = [{"subnet_id": s, "original_acl_id": self._association(ec2, s)[1]} for s in sorted(subnets)]
        blackhole = ec2.create_network_acl(VpcId=vpc_id, TagSpecifications=[{
            "ResourceType": "network-acl",
            "Tags": [{"Key": "Name", "Value": f"resilience-blackhole-{zone}"}, {"Key": BLACKHOLE_TAG, "Value": zone},
                     {"Key": MANAGED_BY_LABEL, "Value": MANAGER}]}])["NetworkAcl"]["NetworkAclId"]
        step = RollbackStep("restore_zone", {"zone": zone, "vpc_id": vpc_id, "blackhole_acl_id": blackhole,
                                             "subnets": originals},
                            f"re-associate the original network ACLs of {len(originals)} subnets in {zone}, "
                            f"delete {blackhole}")
        try:
            for subnet in subnets:
                association_id, _ = self._association(ec2, subnet)
                ec2.replace_network_acl_association(AssociationId=association_id, NetworkAclId=blackhole)
        except Exception as exc:
            self.rollback(step)
            raise HarnessError(f"lose_zone {zone}: {exc}; the original network ACLs were restored.") from exc
        return step

    def _vpc_id(self) -> str:
        group_name = self._cluster().get("DBSubnetGroup")
        if not group_name:
            raise UserError(f"lose_zone: RDS cluster {self.aws.rds_cluster!r} reports no DBSubnetGroup, so its VPC "
                            f"is unknown.")
        groups = self._client("rds").describe_db_subnet_groups(DBSubnetGroupName=group_name)["DBSubnetGroups"]
        return str(groups[0]["VpcId"])

    @staticmethod
    def _association(ec2: Any, subnet_id: str) -> tuple[str, str]:
        """(association id, network ACL id) of the ACL currently associated with a subnet."""
        acls = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])
        for acl in acls["NetworkAcls"]:
            for association in acl.get("Associations", []):
                if association.get("SubnetId") == subnet_id:
                    return str(association["NetworkAclAssociationId"]), str(acl["NetworkAclId"])
        raise HarnessError(f"subnet {subnet_id} has no network ACL association (every VPC subnet should have one).")

    def fail_over_database(self, mode: str = "kill") -> RollbackStep:
        if self.dry_run:
            self._would(self.capability_plan("fail_over_database", {"mode": mode}))
            return RollbackStep("none", {}, "RDS keeps the promoted writer")
        if mode != "kill":
            raise UserError(f"fail_over_database mode {mode!r} is not available on the aws target; only 'kill' "
                            f"(an RDS cluster failover). For a partition use lose_zone.")
        from chaosaws.rds.actions import failover_db_cluster
        members = self._cluster().get("DBClusterMembers", [])
        readers = sorted(m["DBInstanceIdentifier"] for m in members if not m.get("IsClusterWriter"))
        writers = [m["DBInstanceIdentifier"] for m in members if m.get("IsClusterWriter")]
        if not readers:
            raise UserError(f"fail_over_database: RDS cluster {self.aws.rds_cluster!r} has no reader instance to "
                            f"promote; a Multi-AZ DB cluster needs at least one.")
        # chaosaws passes TargetDBInstanceIdentifier even when it is None, which botocore rejects: name one.
        self._chaos(failover_db_cluster, db_cluster_identifier=self.aws.rds_cluster,
                    target_db_instance_identifier=readers[0])
        return RollbackStep("none", {"writer_before": writers[0] if writers else None, "promoted": readers[0]},
                            "RDS keeps the promoted writer")

    def stop_cache(self, mode: str = "failover") -> RollbackStep:
        if self.dry_run:
            self._would(self.capability_plan("stop_cache", {"mode": mode}))
            return RollbackStep("none", {}, "ElastiCache keeps the promoted primary")
        if mode != "failover":
            raise UserError(f"stop_cache mode {mode!r} is not available on the aws target; only 'failover' "
                            f"(ElastiCache TestFailover). A full outage would mean deleting the group.")
        from chaosaws.elasticache.actions import test_failover
        node_group = self._replication_group()["NodeGroups"][0]["NodeGroupId"]
        self._chaos(test_failover, replication_group_id=self.aws.elasticache_group, node_group_id=node_group)
        return RollbackStep("none", {"node_group_id": node_group}, "ElastiCache keeps the promoted primary")

    def rollback(self, step: RollbackStep) -> None:
        if step.capability == "none":
            return
        if step.capability != "restore_zone":
            raise UserError(f"rollback step {step.capability!r} does not belong to the aws target "
                            f"(known: none, restore_zone). Check rollback.json.")
        if self.dry_run:
            self._would(self.capability_plan("lose_zone", {"zone": step.arguments.get("zone")})[-1:])
            return
        from botocore.exceptions import ClientError
        ec2 = self._client("ec2")
        for subnet in step.arguments.get("subnets", []):
            association_id, current = self._association(ec2, subnet["subnet_id"])
            if current != subnet["original_acl_id"]:
                ec2.replace_network_acl_association(AssociationId=association_id,
                                                    NetworkAclId=subnet["original_acl_id"])
        blackhole = step.arguments.get("blackhole_acl_id")
        if blackhole:
            try:
                ec2.delete_network_acl(NetworkAclId=blackhole)
            except ClientError as exc:
                if "NotFound" not in str(exc):
                    raise
