"""restore_database on Kubernetes: a CloudNativePG point-in-time recovery into a new Cluster, the app moved to it.

kubernetes/cnpg.py does the work: refused when the API does not serve CloudNativePG's `clusters`
(CRDs absent) or when PostgreSQL is not in the cluster (kubernetes.database: external, i.e. RDS:
use --target aws). The rollback points the app back at the source Cluster and deletes the restored
one unless `kubernetes.keep_restored`. Orders written while the app used the restored Cluster stay
there (kept) or go with it (deleted): a drill, on the platform's own test cluster.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ....fault_registry import FaultCall
from ...base import FaultSession, RollbackStep
from ...fault_module import FaultModule, InjectContext
from ..cnpg import CnpgRestore, restored_name
from ..db_switch import SERVING_TIMEOUT_S, wait_rolled_out
from ..names import APP_NAME
from . import FAULTS

if TYPE_CHECKING:
    from ..nemesis import KubernetesNemesis

STEP = "undo_cnpg_restore"


def restorer(nemesis: KubernetesNemesis) -> CnpgRestore:
    return CnpgRestore(nemesis.platform, nemesis.platform.recovery)


@FAULTS.register
class RestoreDatabase(FaultModule["KubernetesNemesis"]):
    fault = "restore_database"
    steps = (STEP,)

    def refusal(self, nemesis: KubernetesNemesis, call: FaultCall) -> str | None:
        settings = nemesis.platform.settings
        if settings.kubernetes.database != "cloudnativepg":
            return (f"PostgreSQL is external (AWS RDS '{settings.aws.rds_cluster}'; kubernetes.database: "
                    f"{settings.kubernetes.database}): use --target aws, which restores RDS to a point in time")
        if int(call.get("repo") or 1) != 1:
            return ("repo 2: a CloudNativePG Cluster has one object store (spec.backup.barmanObjectStore); a second "
                    "region's copy is a replica cluster this target does not restore from (repo 1 only)")
        return None

    def plan(self, nemesis: KubernetesNemesis, call: FaultCall) -> list[str]:
        keep = nemesis.platform.settings.kubernetes.keep_restored
        name = restored_name()
        return [*restorer(nemesis).plan(str(call.get("to") or "latest")),
                f"rollback {STEP}: point the app back at the source Cluster; " +
                (f"keep {name} (kubernetes.keep_restored)" if keep else f"delete Cluster {name} (only with our label)")]

    def inject(self, nemesis: KubernetesNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        restore = restorer(nemesis)
        step = RollbackStep(STEP, {"restored_cluster": restore.name, "swapped": False},
                            f"point the app back at {restore.source}; delete {restore.name}", nemesis=nemesis.name)
        context.record(step)  # a crash mid-restore still deletes what was made
        facts = restore.run(str(call.get("to") or "latest"), nemesis.last_fault_utc)
        before = restore.point_app_at(restore.name)
        nemesis.platform.recovery.note("serving", ready_replicas=wait_rolled_out(
            nemesis.platform, APP_NAME, SERVING_TIMEOUT_S, 2.0, time.sleep))
        step = RollbackStep(STEP, {**facts, "swapped": True, "previous_cluster": before}, step.description,
                            nemesis=nemesis.name)
        context.record(step)
        return step

    def then(self, session: FaultSession) -> None:
        """Nothing to hold: the restore is done (and the app moved) when its call returns."""

    def undo(self, nemesis: KubernetesNemesis, step: RollbackStep) -> None:
        restore = restorer(nemesis)
        if step.arguments.get("swapped"):
            restore.point_app_at(restore.source)  # the source by name from the code, never from rollback.json
        if not nemesis.platform.settings.kubernetes.keep_restored and restore.delete():
            nemesis.platform.recovery.note("restored-deleted", deleted=[restore.name])

    def undo_refusal(self, nemesis: KubernetesNemesis, step: RollbackStep) -> str | None:
        if step.arguments.get("restored_cluster") != restored_name():
            return (f"rollback {STEP} names Cluster {step.arguments.get('restored_cluster')!r}, not the one this "
                    f"harness restores ({restored_name()!r}); check rollback.json")
        return None
