"""What can be broken in the AWS managed services, and how: chaostoolkit-aws, and our own zone blackhole.

- database failover: `chaosaws.rds.actions.failover_db_cluster` (a reader is named: chaosaws passes
  TargetDBInstanceIdentifier even when it is None, which botocore rejects);
- cache failover: `chaosaws.elasticache.actions.test_failover`;
- zone outage: a new network ACL with no allow rules replaces the zone's subnet associations (chaosaws
  has no such action); the original associations go into the RollbackStep, and rollback restores them.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import HarnessError, UserError
from ..fault_registry import ROLLBACK_NONE, FaultCall
from .aws import AwsServices
from .base import Nemesis, RollbackStep
from .manifests import MANAGED_BY_LABEL, MANAGER

BLACKHOLE_TAG = "resilience:zone-blackhole"
ON_EKS = "API replicas are pods on EKS: the kubernetes nemesis handles them (target aws does)"


class AwsNemesis(Nemesis):
    name = "aws"
    SUPPORT = {
        "kill_replicas": ON_EKS,
        "lose_zone": None,
        "fail_over_database": None,
        "stop_cache": None,
        "pause_replicas": ON_EKS,
        "hold_replication": "RDS gives no hold on its replication: the local target only",
    }

    def __init__(self, services: AwsServices) -> None:
        self.services = services
        self.aws = services.aws

    def argument_refusal(self, call: FaultCall) -> str | None:
        if call.fault == "fail_over_database" and call.get("mode") != "kill":
            return (f"mode {call.get('mode')!r} is not available on RDS; only 'kill' (an RDS cluster failover). "
                    f"For a partition use lose_zone.")
        if call.fault == "stop_cache" and call.get("mode") != "failover":
            return (f"mode {call.get('mode')!r} is not available on ElastiCache; only 'failover' (TestFailover). "
                    f"A full outage would mean deleting the replication group.")
        return None

    # -- plans -----------------------------------------------------------------
    def plan(self, call: FaultCall) -> list[str]:
        a = self.aws
        capability = call.fault
        if capability == "lose_zone":
            zone = call.get("zone")
            if zone in (None, "primary"):
                zone = "<the RDS writer's zone, from rds:DescribeDBClusters + DescribeDBInstances>"
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
        raise HarnessError(f"the aws nemesis has no plan for {capability!r}")

    # -- faults -----------------------------------------------------------------------------
    def inject(self, call: FaultCall, seed: int | None = None) -> RollbackStep:
        injectors: dict[str, Callable[[FaultCall], RollbackStep]] = {
            "lose_zone": self._lose_zone, "fail_over_database": self._fail_over_database,
            "stop_cache": self._stop_cache}
        return injectors[call.fault](call)

    def _lose_zone(self, call: FaultCall) -> RollbackStep:
        """Blackhole every subnet of the zone in the database's VPC with a deny-all network ACL."""
        zone = call.get("zone")
        if zone in (None, "primary"):
            zone = self.services.primary_zone()
        if zone is None:
            raise UserError(f"lose_zone: RDS cluster {self.aws.rds_cluster!r} has no writer to take the zone from; "
                            f"pass the zone explicitly.")
        ec2 = self.services.client("ec2")
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
        group_name = self.services.cluster().get("DBSubnetGroup")
        if not group_name:
            raise UserError(f"lose_zone: RDS cluster {self.aws.rds_cluster!r} reports no DBSubnetGroup, so its VPC "
                            f"is unknown.")
        groups = self.services.client("rds").describe_db_subnet_groups(DBSubnetGroupName=group_name)["DBSubnetGroups"]
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

    def _fail_over_database(self, call: FaultCall) -> RollbackStep:
        from chaosaws.rds.actions import failover_db_cluster
        members = self.services.cluster().get("DBClusterMembers", [])
        readers = sorted(m["DBInstanceIdentifier"] for m in members if not m.get("IsClusterWriter"))
        writers = [m["DBInstanceIdentifier"] for m in members if m.get("IsClusterWriter")]
        if not readers:
            raise UserError(f"fail_over_database: RDS cluster {self.aws.rds_cluster!r} has no reader instance to "
                            f"promote; a Multi-AZ DB cluster needs at least one.")
        # chaosaws passes TargetDBInstanceIdentifier even when it is None, which botocore rejects: name one.
        self.services.chaos(failover_db_cluster, db_cluster_identifier=self.aws.rds_cluster,
                    target_db_instance_identifier=readers[0])
        return RollbackStep(ROLLBACK_NONE, {"writer_before": writers[0] if writers else None, "promoted": readers[0]},
                            "RDS keeps the promoted writer")

    def _stop_cache(self, call: FaultCall) -> RollbackStep:
        from chaosaws.elasticache.actions import test_failover
        node_group = self.services.replication_group()["NodeGroups"][0]["NodeGroupId"]
        self.services.chaos(test_failover, replication_group_id=self.aws.elasticache_group, node_group_id=node_group)
        return RollbackStep(ROLLBACK_NONE, {"node_group_id": node_group}, "ElastiCache keeps the promoted primary")

    def rollback(self, step: RollbackStep) -> None:
        if step.capability == ROLLBACK_NONE:
            return
        if step.capability != "restore_zone":
            raise UserError(f"rollback step {step.capability!r} does not belong to the aws target "
                            f"(known: none, restore_zone). Check rollback.json.")
        from botocore.exceptions import ClientError
        ec2 = self.services.client("ec2")
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
