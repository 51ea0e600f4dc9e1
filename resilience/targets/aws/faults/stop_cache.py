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

    def refusal(self, nemesis: AwsNemesis, call: FaultCall) -> str | None:
        if call.get("mode") != "failover":
            return (f"mode {call.get('mode')!r} is not available on ElastiCache; only 'failover' (TestFailover). "
                    f"A full outage would mean deleting the replication group.")
        return nemesis.allow_list_problem(("replication group", nemesis.aws.elasticache_group))

    def plan(self, nemesis: AwsNemesis, call: FaultCall) -> list[str]:
        return [f"stop_cache: elasticache:DescribeReplicationGroups(ReplicationGroupId="
                f"{nemesis.aws.elasticache_group!r}) -> the first NodeGroupId", f"stop_cache: {nemesis.cache_call_line()}",
                "rollback none: ElastiCache keeps the promoted primary"]

    def inject(self, nemesis: AwsNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        node_group = nemesis.services.replication_group()["NodeGroups"][0]["NodeGroupId"]
        nemesis.test_failover(node_group)
        return RollbackStep(ROLLBACK_NONE, {"node_group_id": node_group}, "ElastiCache keeps the promoted primary")

    # -- its effect (the run times the fault from it) -----------------------------------------------
    def effect(self, nemesis: AwsNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        return effects.cache_failover(nemesis, step.arguments["node_group_id"])

    def documented(self, nemesis: AwsNemesis, call: FaultCall) -> Documented | None:
        return effects.CACHE_FAILOVER
