"""A zone's subnets cut off with a deny-all network ACL, and put back (our own action: chaosaws has none).

A new network ACL has no allow entries, so it denies all traffic; replacing a subnet's
association with it cuts the subnet. The original associations go into the rollback
step first; restoring re-associates them and deletes the blackhole, and only ever
touches an ACL that carries our tag and subnets the settings allow.
"""

from __future__ import annotations

from typing import Any

from ...errors import HarnessError, UserError
from .services import AwsServices
from ..base import Recorder, RollbackStep
from ..blast_radius import resource_problem
from ..kubernetes.manifests import MANAGED_BY_LABEL, MANAGER

BLACKHOLE_TAG = "resilience:zone-blackhole"


def plan_lines(rds_cluster: str, zone: str) -> list[str]:
    return [
        f"lose_zone: rds:DescribeDBClusters(DBClusterIdentifier={rds_cluster!r}) -> DBSubnetGroup; "
        f"rds:DescribeDBSubnetGroups -> VpcId (must be in aws.allowed_resources)",
        f"lose_zone: ec2:DescribeSubnets(Filters=[vpc-id=<vpc>, availability-zone={zone}]); only subnets listed in "
        f"aws.allowed_resources are cut",
        f"lose_zone: ec2:CreateNetworkAcl(VpcId=<vpc>) tagged {BLACKHOLE_TAG}: no allow entries, so it denies all "
        f"traffic (our own action; chaosaws has none); it and the original NetworkAclIds go into rollback.json first",
        "lose_zone: ec2:ReplaceNetworkAclAssociation(AssociationId=<association>, NetworkAclId=<blackhole>) for "
        "each subnet",
        "rollback restore_zone: ec2:ReplaceNetworkAclAssociation(AssociationId=<current>, NetworkAclId=<original>) "
        "for each subnet; ec2:DeleteNetworkAcl(NetworkAclId=<blackhole>)",
    ]


class ZoneBlackhole:
    def __init__(self, services: AwsServices) -> None:
        self.services = services
        self.settings = services.settings

    def target_subnets(self, zone: str) -> tuple[str, list[str]]:
        """(VPC, the zone's subnets the settings allow to cut); refused before anything is touched."""
        ec2 = self.services.client("ec2")
        vpc_id = self._vpc_id()
        subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets(Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "availability-zone", "Values": [zone]}])["Subnets"])
        allowed = [s for s in subnets if resource_problem(self.settings, "subnet", s) is None]
        if not allowed:
            raise UserError(f"lose_zone: none of the subnets of VPC {vpc_id} in {zone} ({', '.join(subnets) or 'none'}) "
                            f"is in aws.allowed_resources, so none may be cut. List them, or set "
                            f"aws.blackhole_subnets: false.")
        return vpc_id, allowed

    def cut(self, zone: str, vpc_id: str, allowed: list[str], record: Recorder, extra: dict[str, Any]) -> RollbackStep:
        """Cut the zone's allowed subnets (from `target_subnets`); `extra` goes into the step (e.g. failovers)."""
        ec2 = self.services.client("ec2")
        originals = [{"subnet_id": s, "original_acl_id": self._association(ec2, s)[1]} for s in allowed]
        blackhole = ec2.create_network_acl(VpcId=vpc_id, TagSpecifications=[{
            "ResourceType": "network-acl",
            "Tags": [{"Key": "Name", "Value": f"resilience-blackhole-{zone}"}, {"Key": BLACKHOLE_TAG, "Value": zone},
                     {"Key": MANAGED_BY_LABEL, "Value": MANAGER}]}])["NetworkAcl"]["NetworkAclId"]
        step = RollbackStep("restore_zone", {**extra, "zone": zone, "vpc_id": vpc_id, "blackhole_acl_id": blackhole,
                                             "subnets": originals},
                            f"re-associate the original network ACLs of {len(originals)} subnets in {zone}, "
                            f"delete {blackhole}")
        record(step)
        try:
            for subnet in allowed:
                association_id, _ = self._association(ec2, subnet)
                ec2.replace_network_acl_association(AssociationId=association_id, NetworkAclId=blackhole)
        except Exception as exc:
            self.restore(step)
            raise HarnessError(f"lose_zone {zone}: {exc}; the original network ACLs were restored.") from exc
        return step

    def refusal(self, step: RollbackStep) -> str | None:
        """A restore step read back from rollback.json touches only the allowed VPC and subnets."""
        args = step.arguments
        problems = [resource_problem(self.settings, "VPC", args.get("vpc_id"))]
        problems += [resource_problem(self.settings, "subnet", s.get("subnet_id") if isinstance(s, dict) else None)
                     for s in args.get("subnets", [])]
        return next((p for p in problems if p), None)

    def restore(self, step: RollbackStep) -> None:
        from botocore.exceptions import ClientError
        ec2 = self.services.client("ec2")
        for subnet in step.arguments.get("subnets", []):
            association_id, current = self._association(ec2, subnet["subnet_id"])
            if current != subnet["original_acl_id"]:
                ec2.replace_network_acl_association(AssociationId=association_id,
                                                    NetworkAclId=subnet["original_acl_id"])
        blackhole = step.arguments.get("blackhole_acl_id")
        if not blackhole:
            return
        try:
            acl = ec2.describe_network_acls(NetworkAclIds=[blackhole])["NetworkAcls"][0]
        except ClientError as exc:
            if "NotFound" in str(exc):
                return  # deleted already: restoring twice is safe
            raise
        if not any(t.get("Key") == BLACKHOLE_TAG for t in acl.get("Tags", [])):
            raise UserError(f"network ACL {blackhole} does not carry the tag {BLACKHOLE_TAG}: it is not one this tool "
                            f"made, so it is not deleted. Check rollback.json.")
        ec2.delete_network_acl(NetworkAclId=blackhole)

    def _vpc_id(self) -> str:
        group_name = self.services.cluster().get("DBSubnetGroup")
        if not group_name:
            raise UserError(f"lose_zone: RDS cluster {self.settings.aws.rds_cluster!r} reports no DBSubnetGroup, so "
                            f"its VPC is unknown.")
        groups = self.services.client("rds").describe_db_subnet_groups(DBSubnetGroupName=group_name)["DBSubnetGroups"]
        vpc_id = str(groups[0]["VpcId"])
        problem = resource_problem(self.settings, "VPC", vpc_id)
        if problem:
            raise UserError(f"lose_zone: {problem}")
        return vpc_id

    @staticmethod
    def _association(ec2: Any, subnet_id: str) -> tuple[str, str]:
        """(association id, network ACL id) of the ACL currently associated with a subnet."""
        acls = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])
        for acl in acls["NetworkAcls"]:
            for association in acl.get("Associations", []):
                if association.get("SubnetId") == subnet_id:
                    return str(association["NetworkAclAssociationId"]), str(acl["NetworkAclId"])
        raise HarnessError(f"subnet {subnet_id} has no network ACL association (every VPC subnet should have one).")
