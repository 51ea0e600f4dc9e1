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

from datetime import datetime, timezone
from typing import Any

from ...errors import UserError
from ...fault_registry import FaultCall
from ..base import Build, Recorder, RollbackStep, no_record
from ..blast_radius import region_problem, resource_problem
from ..fault_module import ModularNemesis
from .blackhole import ZoneBlackhole
from .faults import FAULTS
from .fis import FisEngine, cache_power, network_cut, rds_failover
from .restore import RdsRestore
from .services import AwsServices
from ..kubernetes.db_switch import ExternalNameSwitch, HasCluster

RESTORE_FAULT = "restore_database"  # the recovery action (docs/recovery-records.md): not a fault whose time it restores to


class AwsNemesis(ModularNemesis):
    name = "aws"
    FAULTS = FAULTS

    @classmethod
    def build(cls, parts: Build) -> "AwsNemesis":
        aws = parts.services.get("aws")
        services = aws if isinstance(aws, AwsServices) else AwsServices(parts.settings, dry_run=parts.dry_run)
        platform = parts.platform
        return cls(services, ExternalNameSwitch(platform) if isinstance(platform, HasCluster) else None)

    def __init__(self, services: AwsServices, switch: ExternalNameSwitch | None = None) -> None:
        self.services = services
        self.aws = services.aws
        self.blackhole = ZoneBlackhole(services)
        self.fis = FisEngine(services)
        self.switch = switch  # how the app is pointed at a restored database (the aws composition: EKS)
        self.last_fault_utc: datetime | None = None  # when this nemesis last injected a fault (restore: before it)

    def inject(self, call: FaultCall, seed: int | None = None, record: Recorder = no_record) -> RollbackStep:
        if call.fault != RESTORE_FAULT:
            self.last_fault_utc = datetime.now(timezone.utc)
        return super().inject(call, seed, record)

    def restorer(self, **options: Any) -> RdsRestore:
        """The RDS point-in-time restore (aws/restore.py), recording into the services' recovery log."""
        return RdsRestore(self.services, self.services.recovery, **options)

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

    # -- the same faults as AWS FIS experiments (aws.injection: fis; fis.py) ----------------------
    def fis_fail_over_database(self, record: Recorder) -> RollbackStep:
        writers = [m["DBInstanceIdentifier"] for m in self.services.cluster().get("DBClusterMembers", [])
                   if m.get("IsClusterWriter")]
        return self.fis.start("stop_fis_failover", f"resilience: fail over RDS cluster {self.aws.rds_cluster}",
                              [rds_failover(self.fis.arn("rds", f"cluster:{self.aws.rds_cluster}"))], record,
                              {"writer_before": writers[0] if writers else None})

    def cache_zones(self) -> tuple[str | None, set[str]]:
        """(the zone of the first node group's primary, every zone holding a node of the replication group)."""
        groups = self.services.replication_group().get("NodeGroups", [])
        members = [m for g in groups for m in g.get("NodeGroupMembers", [])]
        primary = next((m.get("PreferredAvailabilityZone") for m in (groups[0].get("NodeGroupMembers", [])
                                                                   if groups else []) if m.get("CurrentRole") ==
                        "primary"), None)
        return primary, {str(m.get("PreferredAvailabilityZone")) for m in members}

    def fis_stop_cache(self, record: Recorder) -> RollbackStep:
        zone, _ = self.cache_zones()
        if zone is None:
            raise UserError(f"replication group {self.aws.elasticache_group!r} reports no primary (or no zone for "
                            f"it): there is no zone whose power to interrupt.")
        group = self.fis.arn("elasticache", f"replicationgroup:{self.aws.elasticache_group}")
        return self.fis.start("stop_fis_cache", f"resilience: cut power to {self.aws.elasticache_group} in {zone}",
                              [cache_power(group, zone, self.aws.fis_duration_s)], record,
                              {"zone": zone, "primaries_before": self.primaries_in(zone)})

    def primaries_in(self, zone: str) -> dict[str, str | None]:
        """Node group -> its primary, for the node groups whose primary is in `zone`: the ones a power
        interruption there fails over (read before FIS starts, so the effect knows what must change)."""
        out: dict[str, str | None] = {}
        for group in self.services.replication_group().get("NodeGroups", []):
            primary = next((m for m in group.get("NodeGroupMembers", []) if m.get("CurrentRole") == "primary"), None)
            if primary and primary.get("PreferredAvailabilityZone") == zone:
                out[str(group["NodeGroupId"])] = primary.get("CacheClusterId")
        return out

    def fis_lose_zone(self, zone: str, subnets: tuple[str, list[str]] | None, record: Recorder) -> RollbackStep:
        """The writer failed over when it is in `zone`, the cache's nodes there powered off, the subnets cut."""
        parts = []
        extra: dict[str, Any] = {"zone": zone}
        if self.services.primary_zone() == zone:
            parts.append(rds_failover(self.fis.arn("rds", f"cluster:{self.aws.rds_cluster}")))
            extra["writer_before"] = self.services.roles().get("postgres")
        if zone in self.cache_zones()[1]:
            group = self.fis.arn("elasticache", f"replicationgroup:{self.aws.elasticache_group}")
            parts.append(cache_power(group, zone, self.aws.fis_duration_s))
            extra["primaries_before"] = self.primaries_in(zone)
        if subnets is not None:
            vpc_id, cut = subnets
            parts.append(network_cut([self.fis.arn("ec2", f"subnet/{s}") for s in cut], self.aws.fis_duration_s))
            extra.update(vpc_id=vpc_id, subnets=[{"subnet_id": s} for s in cut])
        if not parts:
            raise UserError(f"lose_zone {zone}: neither the RDS writer nor an ElastiCache node is in {zone}, and "
                            f"aws.blackhole_subnets is off: the zone holds nothing to lose.")
        return self.fis.start("stop_fis_zone", f"resilience: lose zone {zone}", parts, record, extra)

    def fis_undo_refusal(self, step: RollbackStep) -> str | None:
        """A FIS step read back from rollback.json: an allowed region, and any subnets it names allowed."""
        return region_problem(self.services.settings) or (
            self.blackhole.refusal(step) if step.arguments.get("subnets") else None)
