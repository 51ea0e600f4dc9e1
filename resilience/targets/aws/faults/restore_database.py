"""restore_database on RDS: a point-in-time restore into a new DB cluster, the app swapped onto it.

The runbook as code (aws/restore.py): the restore target (`to`: latest, or a second before the
last fault this nemesis injected), RestoreDBClusterToPointInTime into `resilience-<cluster>-restored`
(tagged, in aws.allowed_resources), its writer created and available, then the app's ExternalName
Service pointed at the new endpoint and the app restarted (kubernetes/db_switch.py). Each step is a
`recovery` history record. The rollback points the app back at `aws.rds_cluster` (the endpoint read
from RDS, never from rollback.json) and deletes the restored cluster unless `aws.keep_restored`.
Orders written while the app was on the restored cluster stay there: kept with aws.keep_restored,
gone with it otherwise (this is a drill against the platform's own test account).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ....fault_registry import FaultCall
from ...base import FaultSession, RollbackStep
from ...blast_radius import region_problem, resource_problem
from ...fault_module import FaultModule, InjectContext
from ..restore import restored_name
from . import FAULTS

if TYPE_CHECKING:
    from ..nemesis import AwsNemesis

STEP = "undo_restore"


@FAULTS.register
class RestoreDatabase(FaultModule["AwsNemesis"]):
    fault = "restore_database"
    steps = (STEP,)

    def refusal(self, nemesis: AwsNemesis, call: FaultCall) -> str | None:
        if nemesis.switch is None:
            return ("the restored cluster has a new endpoint the app must be pointed at: that needs the app on "
                    "EKS (the aws target), through its ExternalName Service")
        return (nemesis.allow_list_problem(("DB cluster", nemesis.aws.rds_cluster))
                or nemesis.restorer().refusal(int(call.get("repo") or 1)))

    def plan(self, nemesis: AwsNemesis, call: FaultCall) -> list[str]:
        restorer = nemesis.restorer()
        swap = nemesis.switch.plan("<the restored cluster's endpoint>") if nemesis.switch else []
        keep = nemesis.aws.keep_restored
        return [*restorer.plan(str(call.get("to") or "latest")), *(f"restore_database: {line}" for line in swap),
                f"rollback {STEP}: point the app back at {nemesis.aws.rds_cluster}'s endpoint (read from RDS) and "
                f"restart it; " + (f"keep {restorer.name} (aws.keep_restored)" if keep else
                                   f"rds:DeleteDBInstance + rds:DeleteDBCluster({restorer.name!r}, "
                                   f"SkipFinalSnapshot=True), only if it carries our tag")]

    def inject(self, nemesis: AwsNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        restorer = nemesis.restorer()
        step = RollbackStep(STEP, {"restored_cluster": restorer.name, "swapped": False},
                            f"point the app back at {nemesis.aws.rds_cluster}; delete {restorer.name}")
        context.record(step)  # a crash mid-restore still deletes what was made
        facts = restorer.run(str(call.get("to") or "latest"), nemesis.last_fault_utc, int(call.get("repo") or 1))
        assert nemesis.switch is not None  # refused otherwise
        before = nemesis.switch.point_at(str(facts["endpoint"]))
        nemesis.services.recovery.note("swap", service=nemesis.switch.service, to=facts["endpoint"], previous=before,
                                       restored_cluster=restorer.name)
        nemesis.services.recovery.note("serving", ready_replicas=nemesis.switch.wait_serving())
        step = RollbackStep(STEP, {**facts, "swapped": True, "previous_host": before}, step.description)
        context.record(step)
        return step

    def then(self, session: FaultSession) -> None:
        """Nothing to hold: the restore is done (and the app moved) when its call returns."""

    def undo(self, nemesis: AwsNemesis, step: RollbackStep) -> None:
        name = str(step.arguments.get("restored_cluster"))
        if step.arguments.get("swapped") and nemesis.switch is not None:
            original = str(nemesis.services.cluster()["Endpoint"])
            if nemesis.switch.current_host() != original:
                nemesis.switch.point_at(original)
                nemesis.services.recovery.note("swap", service=nemesis.switch.service, to=original,
                                               restored_cluster=name, rollback=True)
        if not nemesis.aws.keep_restored:
            deleted = nemesis.restorer().delete(name)
            nemesis.services.recovery.note("restored-deleted", deleted=deleted)

    def undo_refusal(self, nemesis: AwsNemesis, step: RollbackStep) -> str | None:
        name = step.arguments.get("restored_cluster")
        if name != restored_name(nemesis.aws.rds_cluster):
            return (f"rollback {STEP} names DB cluster {name!r}, not the one this harness restores "
                    f"({restored_name(nemesis.aws.rds_cluster)!r}); check rollback.json")
        return region_problem(nemesis.services.settings) or resource_problem(nemesis.services.settings,
                                                                             "restored DB cluster", str(name))
