"""lose_zone on AWS, as FIS's "AZ Availability: Power Interruption" frames it.

The RDS writer failed over to a reader outside the zone when it is there; each
ElastiCache node group whose primary is there failed over; with aws.blackhole_subnets
the zone's allowed subnets cut with a deny-all network ACL (aws/blackhole.py), which
the rollback undoes. RDS and ElastiCache keep what they promoted.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ....errors import UserError
from ....fault_registry import ROLLBACK_NONE, FaultCall
from ...base import RollbackStep
from ...blast_radius import region_problem
from ...fault_module import Documented, Effect, FaultModule, InjectContext
from .. import effects
from ..blackhole import plan_lines
from . import FAULTS

if TYPE_CHECKING:
    from ..nemesis import AwsNemesis


@FAULTS.register
class LoseZone(FaultModule["AwsNemesis"]):
    fault = "lose_zone"
    steps = ("restore_zone", "stop_fis_zone")

    def refusal(self, nemesis: AwsNemesis, call: FaultCall) -> str | None:
        return nemesis.allow_list_problem(("DB cluster", nemesis.aws.rds_cluster),
                                          ("replication group", nemesis.aws.elasticache_group)) or nemesis.fis.refusal()

    def plan(self, nemesis: AwsNemesis, call: FaultCall) -> list[str]:
        a = nemesis.aws
        rds, cache = nemesis.rds_call_line(), nemesis.cache_call_line()
        zone = call.get("zone")
        if zone in (None, "primary"):
            zone = "<the RDS writer's zone, from rds:DescribeDBClusters + DescribeDBInstances>"
        lines = [f"lose_zone: rds:DescribeDBClusters + rds:DescribeDBInstances: if the writer is in {zone}, "
                 f"{rds} with a reader outside {zone}",
                 f"lose_zone: elasticache:DescribeReplicationGroups: for each node group whose primary is in {zone}, "
                 f"{cache}"]
        if nemesis.fis.on:
            return [f"lose_zone: rds:DescribeDBClusters + rds:DescribeDBInstances, elasticache:DescribeReplicationGroups"
                    f": the writer's and the cache nodes' zones" + (
                        "; the zone's allowed subnets as below, none holding the harness's way to AWS"
                        if a.blackhole_subnets else ""), *(plan_lines(a.rds_cluster, zone)[:3] if a.blackhole_subnets
                                                           else []),
                    *nemesis.fis.plan("lose_zone", "stop_fis_zone", ["aws:rds:failover-db-cluster (writer in the zone)",
                                                    "aws:elasticache:replicationgroup-interrupt-az-power (the zone)"] + (
                        ["aws:network:disrupt-connectivity (the subnets)"] if a.blackhole_subnets else []))]
        if a.blackhole_subnets:
            return lines + plan_lines(a.rds_cluster, zone)
        return lines + ["rollback none: RDS and ElastiCache keep the promoted writer and primary "
                        "(aws.blackhole_subnets is off: no subnet is cut)"]

    def inject(self, nemesis: AwsNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        services = nemesis.services
        zone = call.get("zone")
        if zone in (None, "primary"):
            zone = services.primary_zone()
        if zone is None:
            raise UserError(f"lose_zone: RDS cluster {nemesis.aws.rds_cluster!r} has no writer to take the zone "
                            f"from; pass the zone explicitly.")
        subnets = nemesis.blackhole.target_subnets(zone) if nemesis.aws.blackhole_subnets else None  # refuse first
        if nemesis.fis.on:
            return nemesis.fis_lose_zone(zone, subnets, context.record)
        failed_over: dict[str, Any] = {"rds": None, "elasticache": []}
        if services.primary_zone() == zone:
            failed_over["rds"] = nemesis.fail_over_rds(avoid_zone=zone)
        for node_group in services.replication_group().get("NodeGroups", []):
            primary = next((m for m in node_group.get("NodeGroupMembers", []) if m.get("CurrentRole") == "primary"),
                           None)
            if primary and primary.get("PreferredAvailabilityZone") == zone:
                nemesis.test_failover(node_group["NodeGroupId"])
                failed_over["elasticache"].append(node_group["NodeGroupId"])
        if subnets is not None:
            return nemesis.blackhole.cut(zone, *subnets, context.record, {"failed_over": failed_over})
        return RollbackStep(ROLLBACK_NONE, {"zone": zone, "failed_over": failed_over},
                            "RDS and ElastiCache keep the promoted writer and primary")

    def undo(self, nemesis: AwsNemesis, step: RollbackStep) -> None:
        if step.capability == "stop_fis_zone":
            nemesis.fis.stop(step)
        else:
            nemesis.blackhole.restore(step)

    def undo_refusal(self, nemesis: AwsNemesis, step: RollbackStep) -> str | None:
        if step.capability == "stop_fis_zone":
            return nemesis.fis_undo_refusal(step)
        return region_problem(nemesis.services.settings) or nemesis.blackhole.refusal(step)

    # -- its effect (the run times the fault from it) -----------------------------------------------
    def effect(self, nemesis: AwsNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        """The failovers the zone loss made (the cut subnets act within the call)."""
        failed_over = step.arguments.get("failed_over") or {}  # chaosaws: the failovers made in the call
        found = [effects.cache_failover(nemesis, group) for group in failed_over.get("elasticache", [])]
        if failed_over.get("rds"):
            found.insert(0, effects.rds_failover(nemesis, failed_over["rds"].get("writer_before")))
        # FIS: what was in the zone when the experiment started, read before it started
        found += [effects.cache_failover(nemesis, group, primary)
                  for group, primary in (step.arguments.get("primaries_before") or {}).items()]
        if "writer_before" in step.arguments:
            found.insert(0, effects.rds_failover(nemesis, step.arguments["writer_before"]))
        combined = Effect.all_of(found)
        return combined if combined is None else dataclasses.replace(combined, in_call=True)

    def documented(self, nemesis: AwsNemesis, call: FaultCall) -> Documented | None:
        return effects.RDS_CLUSTER_FAILOVER  # when the writer is in the zone; the cache's is shorter
