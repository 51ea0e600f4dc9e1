"""A zone's subnets cut off with a deny-all network ACL, and put back (our own action: chaosaws has none).

A new network ACL has no allow entries, so it denies all traffic; replacing a subnet's
association with it cuts the subnet. The original associations go into the rollback
step first; restoring re-associates them and deletes the blackhole, and only ever
touches an ACL that carries our tag and subnets the settings allow.

Two things keep a cut from breaking what it cannot undo:
- the harness's own way to AWS is never cut: a subnet in `aws.harness_subnets` (where the harness
  runs), or holding a NAT gateway or an interface VPC endpoint of the VPC, makes the zone loss refuse
  before anything is touched (cut, the harness could not reach EC2 to restore the ACLs);
- the blackhole ACL carries, per subnet, a tag naming the ACL the subnet had (`resilience:original-acl/
  <subnet>`); restoring re-associates only that ACL, so a rollback.json whose step names another ACL is
  refused, and a subnet someone else has moved to a third ACL is left alone (refused, named).
"""

from __future__ import annotations

from typing import Any

from ...errors import HarnessError, UserError
from .services import AwsServices
from ..base import Recorder, RollbackStep
from ..blast_radius import resource_problem
from ..kubernetes.manifests import MANAGED_BY_LABEL, MANAGER

BLACKHOLE_TAG = "resilience:zone-blackhole"
ORIGINAL_TAG = "resilience:original-acl/"  # + subnet id: the ACL the subnet had before the cut


def plan_lines(rds_cluster: str, zone: str) -> list[str]:
    return [
        f"lose_zone: rds:DescribeDBClusters(DBClusterIdentifier={rds_cluster!r}) -> DBSubnetGroup; "
        f"rds:DescribeDBSubnetGroups -> VpcId (must be in aws.allowed_resources)",
        f"lose_zone: ec2:DescribeSubnets(Filters=[vpc-id=<vpc>, availability-zone={zone}]); only subnets listed in "
        f"aws.allowed_resources are cut",
        "lose_zone: ec2:DescribeNatGateways + ec2:DescribeVpcEndpoints(Filters=[vpc-id=<vpc>]): refused if a subnet to "
        "cut holds a NAT gateway or an interface endpoint, or is in aws.harness_subnets (the harness's way to AWS)",
        f"lose_zone: ec2:CreateNetworkAcl(VpcId=<vpc>) tagged {BLACKHOLE_TAG}: no allow entries, so it denies all "
        f"traffic (our own action; chaosaws has none), with a tag naming each subnet's original ACL; it and the original "
        f"NetworkAclIds go into rollback.json first",
        "lose_zone: ec2:ReplaceNetworkAclAssociation(AssociationId=<association>, NetworkAclId=<blackhole>) for "
        "each subnet",
        "rollback restore_zone: ec2:ReplaceNetworkAclAssociation(AssociationId=<current>, NetworkAclId=<original>) "
        "for each subnet, only to the ACL the blackhole's tag recorded; ec2:DeleteNetworkAcl(NetworkAclId=<blackhole>)",
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
        carriers = self.harness_routes(vpc_id)
        cut_off = [f"{s} ({carriers[s]})" for s in allowed if s in carriers]
        if cut_off:
            raise UserError(f"lose_zone: cutting {', '.join(cut_off)} would cut the harness's own way to AWS, and it "
                            f"could not restore the network ACLs. Nothing was touched. Run the harness from another "
                            f"zone, or leave the subnet out of aws.allowed_resources.")
        return vpc_id, allowed

    def harness_routes(self, vpc_id: str) -> dict[str, str]:
        """Subnet -> why the harness reaches AWS through it: aws.harness_subnets, NAT gateways, interface endpoints."""
        ec2 = self.services.client("ec2")
        found = {s: "aws.harness_subnets" for s in self.settings.aws.harness_subnets}
        vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
        for gateway in ec2.describe_nat_gateways(Filters=vpc).get("NatGateways", []):
            if gateway.get("State") not in ("deleted", "deleting", "failed") and gateway.get("SubnetId"):
                found.setdefault(gateway["SubnetId"], f"NAT gateway {gateway.get('NatGatewayId')}")
        for endpoint in ec2.describe_vpc_endpoints(Filters=vpc).get("VpcEndpoints", []):
            for subnet in endpoint.get("SubnetIds", []):
                found.setdefault(subnet, f"VPC endpoint {endpoint.get('VpcEndpointId')} "
                                         f"({endpoint.get('ServiceName', '')})")
        return found

    def cut(self, zone: str, vpc_id: str, allowed: list[str], record: Recorder, extra: dict[str, Any]) -> RollbackStep:
        """Cut the zone's allowed subnets (from `target_subnets`); `extra` goes into the step (e.g. failovers)."""
        ec2 = self.services.client("ec2")
        originals = [{"subnet_id": s, "original_acl_id": self._association(ec2, s)[1]} for s in allowed]
        blackhole = ec2.create_network_acl(VpcId=vpc_id, TagSpecifications=[{
            "ResourceType": "network-acl",
            "Tags": [{"Key": "Name", "Value": f"resilience-blackhole-{zone}"}, {"Key": BLACKHOLE_TAG, "Value": zone},
                     {"Key": MANAGED_BY_LABEL, "Value": MANAGER},
                     *({"Key": ORIGINAL_TAG + o["subnet_id"], "Value": o["original_acl_id"]} for o in originals)]
        }])["NetworkAcl"]["NetworkAclId"]
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
        """Put each subnet back on the ACL the blackhole's tags say it had, then delete the blackhole.

        Everything is checked before anything changes: a step naming an ACL the blackhole did not record,
        or a subnet now on a third ACL, is refused (UserError) and nothing is touched.
        """
        ec2 = self.services.client("ec2")
        blackhole = step.arguments.get("blackhole_acl_id")
        acl = self._blackhole(ec2, blackhole) if blackhole else None
        moves = []
        for subnet in step.arguments.get("subnets", []):
            subnet_id, original = subnet["subnet_id"], subnet["original_acl_id"]
            association_id, current = self._association(ec2, subnet_id)
            if current == original:
                continue  # restored already
            recorded = _tags(acl).get(ORIGINAL_TAG + subnet_id) if acl is not None and current == blackhole else None
            if recorded != original:
                found = (f"the blackhole {blackhole} recorded {recorded}" if recorded else
                         f"the subnet is on {current}, not on the blackhole {blackhole}")
                raise UserError(f"restore_zone: rollback.json names {original} as the network ACL of {subnet_id}, but "
                                f"{found}. Nothing was restored: check rollback.json and the subnet's ACL by hand.")
            moves.append((association_id, original))
        for association_id, original in moves:
            ec2.replace_network_acl_association(AssociationId=association_id, NetworkAclId=original)
        if acl is not None:
            ec2.delete_network_acl(NetworkAclId=blackhole)

    def _blackhole(self, ec2: Any, acl_id: str) -> dict[str, Any] | None:
        """The blackhole ACL, or None once deleted (restoring twice is safe); UserError if it is not ours."""
        from botocore.exceptions import ClientError
        try:
            acl = dict(ec2.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"][0])
        except ClientError as exc:
            if "NotFound" in str(exc):
                return None
            raise
        if BLACKHOLE_TAG not in _tags(acl):
            raise UserError(f"network ACL {acl_id} does not carry the tag {BLACKHOLE_TAG}: it is not one this tool "
                            f"made, so it is not touched. Check rollback.json.")
        return acl

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


def _tags(resource: dict[str, Any] | None) -> dict[str, str]:
    return {str(t.get("Key")): str(t.get("Value")) for t in (resource or {}).get("Tags", [])}
