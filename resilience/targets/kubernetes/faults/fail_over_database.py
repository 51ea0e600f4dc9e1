"""fail_over_database on Kubernetes: kill an in-cluster CloudNativePG primary; the operator promotes a standby."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ....errors import UserError
from ....fault_registry import ROLLBACK_NONE, FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, FaultModule, InjectContext
from .. import plan
from . import FAULTS

if TYPE_CHECKING:
    from ..nemesis import KubernetesNemesis


@FAULTS.register
class FailOverDatabase(FaultModule["KubernetesNemesis"]):
    fault = "fail_over_database"

    def refusal(self, nemesis: KubernetesNemesis, call: FaultCall) -> str | None:
        settings = nemesis.platform.settings
        if call.get("mode") != "kill":
            return (f"mode {call.get('mode')!r} is not available on Kubernetes (only 'kill' of an in-cluster "
                    f"CloudNativePG primary); use --target aws for RDS, or the local target for 'freeze'.")
        if settings.kubernetes.database != "cloudnativepg":
            return (f"PostgreSQL is external (AWS RDS '{settings.aws.rds_cluster}'; setting kubernetes.database: "
                    f"{settings.kubernetes.database}): use --target aws, which fails RDS over through "
                    f"chaosaws.rds.actions.failover_db_cluster, or set kubernetes.database: cloudnativepg for an "
                    f"in-cluster CloudNativePG cluster.")
        return None

    def plan(self, nemesis: KubernetesNemesis, call: FaultCall) -> list[str]:
        chaos = plan.kill_database_primary_call(nemesis.namespace)
        return [f"fail_over_database: only with in-cluster CloudNativePG: GET /api/v1/namespaces/{nemesis.namespace}"
                f"/pods?labelSelector={plan.CNPG_PRIMARY_SELECTOR}; if none (RDS), refuse and point to --target aws",
                *(f"fail_over_database: {line}" for line in chaos.plan_lines()),
                "rollback none: the operator promotes a standby and recreates the pod"]

    def inject(self, nemesis: KubernetesNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        platform = nemesis.platform
        if not platform.pods(plan.CNPG_PRIMARY_SELECTOR):
            raise UserError(
                f"fail_over_database: no CloudNativePG primary pod ({plan.CNPG_PRIMARY_SELECTOR}) in namespace "
                f"{nemesis.namespace}: PostgreSQL is external (AWS RDS). Run the experiment with --target aws, which "
                f"uses chaosaws.rds.actions.failover_db_cluster on '{platform.settings.aws.rds_cluster}'.")
        killed = plan.kill_database_primary_call(nemesis.namespace).run(platform.chaos_secrets())
        return RollbackStep(ROLLBACK_NONE, {"killed": list(killed or [])}, "the operator promotes a standby")

    # -- its effect (the run times the fault from it) -----------------------------------------------
    def effect(self, nemesis: KubernetesNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        """The operator names another pod primary (the killed one acts within the call; this confirms it)."""
        killed = {str(k).rsplit("/", 1)[-1] for k in step.arguments.get("killed", [])}

        def look() -> dict[str, Any] | None:
            primaries = [p.metadata.name for p in nemesis.platform.pods(plan.CNPG_PRIMARY_SELECTOR)]
            new = [name for name in primaries if name not in killed]
            return {"primary": new[0], "was": sorted(killed)} if new else None
        return Effect(f"a CloudNativePG primary other than {', '.join(sorted(killed)) or 'the killed pod'}", 60.0,
                      look)
