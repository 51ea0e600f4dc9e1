"""What can be broken in the AWS managed services, and how: chaostoolkit-aws, and our own zone blackhole.

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

from typing import Any, Callable

from ...errors import HarnessError, UserError
from ...fault_registry import ROLLBACK_NONE, FaultCall
from .services import AwsServices
from .blackhole import ZoneBlackhole, plan_lines
from ..base import Nemesis, Recorder, RollbackStep, no_record
from ..blast_radius import region_problem, resource_problem

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
        self.blackhole = ZoneBlackhole(services)

    def argument_refusal(self, call: FaultCall) -> str | None:
        if call.fault == "fail_over_database" and call.get("mode") != "kill":
            return (f"mode {call.get('mode')!r} is not available on RDS; only 'kill' (an RDS cluster failover). "
                    f"For a partition use lose_zone.")
        if call.fault == "stop_cache" and call.get("mode") != "failover":
            return (f"mode {call.get('mode')!r} is not available on ElastiCache; only 'failover' (TestFailover). "
                    f"A full outage would mean deleting the replication group.")
        resources = {"fail_over_database": [("DB cluster", self.aws.rds_cluster)],
                     "stop_cache": [("replication group", self.aws.elasticache_group)],
                     "lose_zone": [("DB cluster", self.aws.rds_cluster),
                                   ("replication group", self.aws.elasticache_group)]}[call.fault]
        problems = [region_problem(self.services.settings)]
        problems += [resource_problem(self.services.settings, kind, ident) for kind, ident in resources]
        return next((p for p in problems if p), None)

    # -- plans -----------------------------------------------------------------
    def plan(self, call: FaultCall) -> list[str]:
        a = self.aws
        rds = (f"chaosaws.rds.actions.failover_db_cluster(db_cluster_identifier={a.rds_cluster!r}, "
               f"target_db_instance_identifier=<reader>, configuration={{'aws_region': {a.region!r}}})")
        cache = (f"chaosaws.elasticache.actions.test_failover(replication_group_id={a.elasticache_group!r}, "
                 f"node_group_id=<node group>, configuration={{'aws_region': {a.region!r}}})")
        if call.fault == "fail_over_database":
            return [f"fail_over_database: rds:DescribeDBClusters(DBClusterIdentifier={a.rds_cluster!r}) -> the first "
                    "reader instance (by name)", f"fail_over_database: {rds}",
                    "rollback none: RDS keeps the promoted writer"]
        if call.fault == "stop_cache":
            return [f"stop_cache: elasticache:DescribeReplicationGroups(ReplicationGroupId={a.elasticache_group!r}) "
                    "-> the first NodeGroupId", f"stop_cache: {cache}",
                    "rollback none: ElastiCache keeps the promoted primary"]
        zone = call.get("zone")
        if zone in (None, "primary"):
            zone = "<the RDS writer's zone, from rds:DescribeDBClusters + DescribeDBInstances>"
        lines = [f"lose_zone: rds:DescribeDBClusters + rds:DescribeDBInstances: if the writer is in {zone}, "
                 f"{rds} with a reader outside {zone}",
                 f"lose_zone: elasticache:DescribeReplicationGroups: for each node group whose primary is in {zone}, "
                 f"{cache}"]
        if a.blackhole_subnets:
            return lines + plan_lines(a.rds_cluster, zone)
        return lines + ["rollback none: RDS and ElastiCache keep the promoted writer and primary "
                        "(aws.blackhole_subnets is off: no subnet is cut)"]

    # -- faults -----------------------------------------------------------------------------
    def inject(self, call: FaultCall, seed: int | None = None, record: Recorder = no_record) -> RollbackStep:
        if call.fault == "lose_zone":
            return self._lose_zone(call, record)
        injectors: dict[str, Callable[[FaultCall], RollbackStep]] = {
            "fail_over_database": self._fail_over_database, "stop_cache": self._stop_cache}
        return injectors[call.fault](call)

    def _lose_zone(self, call: FaultCall, record: Recorder) -> RollbackStep:
        zone = call.get("zone")
        if zone in (None, "primary"):
            zone = self.services.primary_zone()
        if zone is None:
            raise UserError(f"lose_zone: RDS cluster {self.aws.rds_cluster!r} has no writer to take the zone from; "
                            f"pass the zone explicitly.")
        subnets = self.blackhole.target_subnets(zone) if self.aws.blackhole_subnets else None  # refuse first
        failed_over: dict[str, Any] = {"rds": None, "elasticache": []}
        if self.services.primary_zone() == zone:
            failed_over["rds"] = self._fail_over_rds(avoid_zone=zone)
        for node_group in self.services.replication_group().get("NodeGroups", []):
            primary = next((m for m in node_group.get("NodeGroupMembers", []) if m.get("CurrentRole") == "primary"),
                           None)
            if primary and primary.get("PreferredAvailabilityZone") == zone:
                self._test_failover(node_group["NodeGroupId"])
                failed_over["elasticache"].append(node_group["NodeGroupId"])
        if subnets is not None:
            return self.blackhole.cut(zone, *subnets, record, {"failed_over": failed_over})
        return RollbackStep(ROLLBACK_NONE, {"zone": zone, "failed_over": failed_over},
                            "RDS and ElastiCache keep the promoted writer and primary")

    def _fail_over_rds(self, avoid_zone: str | None = None) -> dict[str, Any]:
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

    def _test_failover(self, node_group: str) -> None:
        from chaosaws.elasticache.actions import test_failover
        self.services.chaos(test_failover, replication_group_id=self.aws.elasticache_group, node_group_id=node_group)

    def _fail_over_database(self, call: FaultCall) -> RollbackStep:
        return RollbackStep(ROLLBACK_NONE, self._fail_over_rds(), "RDS keeps the promoted writer")

    def _stop_cache(self, call: FaultCall) -> RollbackStep:
        node_group = self.services.replication_group()["NodeGroups"][0]["NodeGroupId"]
        self._test_failover(node_group)
        return RollbackStep(ROLLBACK_NONE, {"node_group_id": node_group}, "ElastiCache keeps the promoted primary")

    # -- undoing -----------------------------------------------------------------------------
    def rollback_refusal(self, step: RollbackStep) -> str | None:
        if step.capability == ROLLBACK_NONE:
            return None
        if step.capability != "restore_zone":
            return f"the aws nemesis has no rollback {step.capability!r} (known: none, restore_zone)"
        return region_problem(self.services.settings) or self.blackhole.refusal(step)

    def rollback(self, step: RollbackStep) -> None:
        if step.capability == ROLLBACK_NONE:
            return
        if step.capability != "restore_zone":
            raise HarnessError(f"rollback step {step.capability!r} does not belong to the aws nemesis "
                               f"(known: none, restore_zone). Check rollback.json.")
        self.blackhole.restore(step)
