"""fail_over_database on RDS: a Multi-AZ DB cluster failover to its first reader (RDS keeps the new writer)."""

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
class FailOverDatabase(FaultModule["AwsNemesis"]):
    fault = "fail_over_database"
    steps = ("stop_fis_failover",)

    def refusal(self, nemesis: AwsNemesis, call: FaultCall) -> str | None:
        if call.get("mode") != "kill":
            return (f"mode {call.get('mode')!r} is not available on RDS; only 'kill' (an RDS cluster failover). "
                    f"For a partition use lose_zone.")
        return nemesis.allow_list_problem(("DB cluster", nemesis.aws.rds_cluster)) or nemesis.fis.refusal()

    def plan(self, nemesis: AwsNemesis, call: FaultCall) -> list[str]:
        if nemesis.fis.on:
            return nemesis.fis.plan("fail_over_database", "stop_fis_failover", ["aws:rds:failover-db-cluster"])
        return [f"fail_over_database: rds:DescribeDBClusters(DBClusterIdentifier={nemesis.aws.rds_cluster!r}) -> the "
                "first reader instance (by name)", f"fail_over_database: {nemesis.rds_call_line()}",
                "rollback none: RDS keeps the promoted writer"]

    def inject(self, nemesis: AwsNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        if nemesis.fis.on:
            return nemesis.fis_fail_over_database(context.record)
        return RollbackStep(ROLLBACK_NONE, nemesis.fail_over_rds(), "RDS keeps the promoted writer")

    def undo(self, nemesis: AwsNemesis, step: RollbackStep) -> None:
        nemesis.fis.stop(step)

    def undo_refusal(self, nemesis: AwsNemesis, step: RollbackStep) -> str | None:
        return nemesis.fis_undo_refusal(step)

    # -- its effect (the run times the fault from it) -----------------------------------------------
    def effect(self, nemesis: AwsNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        return effects.rds_failover(nemesis, step.arguments.get("writer_before"))

    def documented(self, nemesis: AwsNemesis, call: FaultCall) -> Documented | None:
        return effects.RDS_CLUSTER_FAILOVER
