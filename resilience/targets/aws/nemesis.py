"""What can be broken in the AWS managed services: the fault modules in aws/faults/.

- database failover: `chaosaws.rds.actions.failover_db_cluster` (a reader is named: chaosaws passes
  TargetDBInstanceIdentifier even when it is None, which botocore rejects);
- cache failover: `chaosaws.elasticache.actions.test_failover`;
- zone loss, as AWS FIS's "AZ Availability: Power Interruption" scenario frames it: the RDS writer
  failed over when it is in the zone, each ElastiCache node group whose primary is there failed
  over, and, when `aws.blackhole_subnets` is on, the zone's allowed subnets cut with a deny-all
  network ACL (aws/blackhole.py). On the `aws` target the kubernetes nemesis has already evicted
  the zone's app pods and cordoned its nodes.

Every call is for an allowed region (AwsServices.client), and every resource a fault or a
rollback acts on is in `aws.allowed_resources` (blast_radius.py).
"""

from __future__ import annotations

from typing import Any

from ...errors import UserError
from ..base import Build
from ..blast_radius import region_problem, resource_problem
from ..fault_module import ModularNemesis
from .blackhole import ZoneBlackhole
from .faults import FAULTS
from .services import AwsServices


class AwsNemesis(ModularNemesis):
    name = "aws"
    FAULTS = FAULTS

    @classmethod
    def build(cls, parts: Build) -> "AwsNemesis":
        aws = parts.services.get("aws")
        return cls(aws if isinstance(aws, AwsServices) else AwsServices(parts.settings, dry_run=parts.dry_run))

    def __init__(self, services: AwsServices) -> None:
        self.services = services
        self.aws = services.aws
        self.blackhole = ZoneBlackhole(services)

    def allow_list_problem(self, *resources: tuple[str, str]) -> str | None:
        """The region outside aws.allowed_regions, or the first (kind, id) outside aws.allowed_resources."""
        problems = [region_problem(self.services.settings)]
        problems += [resource_problem(self.services.settings, kind, ident) for kind, ident in resources]
        return next((p for p in problems if p), None)

    # -- the calls several faults make -----------------------------------------------------------
    def rds_call_line(self) -> str:
        a = self.aws
        return (f"chaosaws.rds.actions.failover_db_cluster(db_cluster_identifier={a.rds_cluster!r}, "
                f"target_db_instance_identifier=<reader>, configuration={{'aws_region': {a.region!r}}})")

    def cache_call_line(self) -> str:
        a = self.aws
        return (f"chaosaws.elasticache.actions.test_failover(replication_group_id={a.elasticache_group!r}, "
                f"node_group_id=<node group>, configuration={{'aws_region': {a.region!r}}})")

    def fail_over_rds(self, avoid_zone: str | None = None) -> dict[str, Any]:
        from chaosaws.rds.actions import failover_db_cluster
        members = self.services.cluster().get("DBClusterMembers", [])
        readers = sorted(m["DBInstanceIdentifier"] for m in members if not m.get("IsClusterWriter"))
        writers = [m["DBInstanceIdentifier"] for m in members if m.get("IsClusterWriter")]
        if avoid_zone:
            readers = [r for r in readers if self.services.instance_zone(r) != avoid_zone]
        if not readers:
            where = f" outside {avoid_zone}" if avoid_zone else ""
            raise UserError(f"RDS cluster {self.aws.rds_cluster!r} has no reader instance{where} to promote; a "
                            f"Multi-AZ DB cluster has one in each of two other zones.")
        self.services.chaos(failover_db_cluster, db_cluster_identifier=self.aws.rds_cluster,
                            target_db_instance_identifier=readers[0])
        return {"writer_before": writers[0] if writers else None, "promoted": readers[0]}

    def test_failover(self, node_group: str) -> None:
        from chaosaws.elasticache.actions import test_failover
        self.services.chaos(test_failover, replication_group_id=self.aws.elasticache_group, node_group_id=node_group)
