"""restore_database on the local stack: the restore runbook as code (targets/local/restore.py), in the supervisor.

It is an action of the experiment's method, after the fault: the call returns once the
cluster was restored from the requested repository (to just before the fault, or to the
latest archived WAL), re-formed, and serving; each step is a `recovery` record. Its rollback
makes sure the cluster is whole (a restore cut short by Ctrl-C goes on in the supervisor; the
rollback waits for it, and re-bootstraps from the latest backup if it failed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ....fault_registry import FaultCall
from ...base import FaultSession, RollbackStep
from ...fault_module import InjectContext
from ..disaster import DisasterFault
from . import FAULTS, Phase

if TYPE_CHECKING:
    from ..stack_parts import StackParts
    from ..nemesis import LocalNemesis

RESTORE_TIMEOUT_S = 2400.0  # the restore, the replay (each bounded at 900 s) and the re-forming
SETTLE_S = 6.0  # after the restore, under load: the steady-state probe after the method reads the last 5 s


@FAULTS.register
class RestoreDatabase(DisasterFault):
    fault = "restore_database"
    steps = ("ensure_restored",)

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        to = "to just before the fault's recorded time" if call.get("to") == "before-fault" else "to the latest WAL"
        return [f"restore_database: stop every database member, remove the cluster from etcd, wipe the data "
                f"directories, pgbackrest restore from repo{call.get('repo')} {to} into postgres-1, replay, Patroni "
                f"on it as leader, the other members cloned; wait until the API serves",
                "rollback ensure_restored: make sure the database cluster is whole (wait for a running restore; "
                "re-bootstrap from the latest backup if it has no leader)"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        step = RollbackStep("ensure_restored", {}, "make sure the database cluster is whole")
        context.record(step)
        nemesis.ask(self.fault, "restore", timeout=RESTORE_TIMEOUT_S, to=call.get("to"), repo=call.get("repo"))
        return step

    def then(self, session: FaultSession) -> None:
        """The restore is done when its call returns; hold a few seconds under load so the steady-state probe
        after the method (availability over its last 5 s) reads the restored platform, not the restore."""
        session.hold(SETTLE_S)

    def phases(self) -> dict[str, Phase]:
        return {**super().phases(), "restore": self.restore}

    def restore(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        from ..restore import restore
        result = restore(parts, str(request.get("to") or "before-fault"), int(request.get("repo") or 1))
        parts.event(self.fault, "done", **{k: v for k, v in result.items() if not isinstance(v, (dict, list))})
        return result
