"""stop_cache on ElastiCache: TestFailover of the first node group (ElastiCache keeps the promoted primary)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ....fault_registry import ROLLBACK_NONE, FaultCall
from ...base import RollbackStep
from ...fault_module import Documented, Effect, FaultModule, InjectContext
from .. import effects
from . import FAULTS

if TYPE_CHECKING:
    from ..nemesis import AwsNemesis


@FAULTS.register
class StopCache(FaultModule["AwsNemesis"]):
    fault = "stop_cache"
    steps = ("stop_fis_cache",)

    def refusal(self, nemesis: AwsNemesis, call: FaultCall) -> str | None:
        if call.get("mode") != "failover":
            return (f"mode {call.get('mode')!r} is not available on ElastiCache; only 'failover' (TestFailover). "
                    f"A full outage would mean deleting the replication group.")
        return nemesis.allow_list_problem(("replication group", nemesis.aws.elasticache_group)) or nemesis.fis.refusal()

    def plan(self, nemesis: AwsNemesis, call: FaultCall) -> list[str]:
        if nemesis.fis.on:
            return [f"stop_cache: elasticache:DescribeReplicationGroups(ReplicationGroupId="
                    f"{nemesis.aws.elasticache_group!r}) -> the zone of the first node group's primary",
                    *nemesis.fis.plan("stop_cache", "stop_fis_cache", ["aws:elasticache:replicationgroup-interrupt-az-power"])]
        return [f"stop_cache: elasticache:DescribeReplicationGroups(ReplicationGroupId="
                f"{nemesis.aws.elasticache_group!r}) -> the first NodeGroupId", f"stop_cache: {nemesis.cache_call_line()}",
                "rollback none: ElastiCache keeps the promoted primary"]

    def inject(self, nemesis: AwsNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        if nemesis.fis.on:
            return nemesis.fis_stop_cache(context.record)
        node_group = nemesis.services.replication_group()["NodeGroups"][0]["NodeGroupId"]
        nemesis.test_failover(node_group)
        return RollbackStep(ROLLBACK_NONE, {"node_group_id": node_group}, "ElastiCache keeps the promoted primary")

    def undo(self, nemesis: AwsNemesis, step: RollbackStep) -> None:
        nemesis.fis.stop(step)

    def undo_refusal(self, nemesis: AwsNemesis, step: RollbackStep) -> str | None:
        return nemesis.fis_undo_refusal(step)

    # -- its effect (the run times the fault from it) -----------------------------------------------
    def effect(self, nemesis: AwsNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        if "node_group_id" in step.arguments:  # chaosaws: TestFailover of one node group
            return effects.cache_failover(nemesis, step.arguments["node_group_id"])
        before = step.arguments.get("primaries_before") or {}  # FIS: the zone's power interrupted
        return Effect.all_of([effects.cache_failover(nemesis, group, primary) for group, primary in before.items()])

    def documented(self, nemesis: AwsNemesis, call: FaultCall) -> Documented | None:
        return effects.CACHE_FAILOVER
