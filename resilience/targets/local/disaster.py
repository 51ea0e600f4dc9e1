"""What the local disaster faults share (corrupt_orders, lose_database, lose_region, restore_database).

Their undo is one supervisor phase, "undo": the database cluster made whole again
(`restore.ensure`: wait for a running restore, put repo1 back, re-bootstrap from the latest
backup when there is no leader). The same runs in a heal (before processes are restarted:
a member whose data directory is gone must not be restarted into a DCS that still says
"initialized"), but only while a disaster of theirs is unresolved or repo1 is aside.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...errors import HarnessError
from ..base import RollbackStep
from . import db_members as db
from .faults import LocalFault, Phase
from .topology import POSTGRES

if TYPE_CHECKING:
    from .nemesis import LocalNemesis
    from .stack_parts import StackParts
    from .topology import ComponentId

BACKUP_WAIT_S = 300.0  # before the fault: how long to wait for a backup the restore can start from
UNDO_TIMEOUT_S = 1800.0  # an undo may wait for a running restore and then restore again
LOOK_TIMEOUT_S = 60.0
DISASTER_HEAL_ORDER = 40  # after lost zones come back (10), before processes are restarted (50)


class DisasterFault(LocalFault):
    """A local fault whose undo makes the database cluster whole again (see the module's docstring)."""

    heal_order = DISASTER_HEAL_ORDER

    needs_repo = 1  # the repository the experiment's restore reads: a backup must be there before the fault

    def await_backup(self, nemesis: "LocalNemesis") -> None:
        """Before injecting: until a backup the restore can start from is in the repository (bounded), else the
        fault is not injected and says why (the recovery could not be measured)."""
        nemesis.ask(self.fault, "backup_ready", timeout=BACKUP_WAIT_S + 30, repo=self.needs_repo,
                    wait_s=BACKUP_WAIT_S)

    def undo(self, nemesis: "LocalNemesis", step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo", timeout=UNDO_TIMEOUT_S, **step.arguments)

    def phases(self) -> dict[str, Phase]:
        return {"undo": self.make_whole, "backup_ready": backup_ready}

    def make_whole(self, parts: "StackParts", request: dict[str, Any]) -> dict[str, Any]:
        from .restore import ensure
        result = ensure(parts, f"{self.fault} undo")
        parts.event(self.fault, "undo", **{k: v for k, v in result.items() if not isinstance(v, (dict, list))})
        return result

    def heal_here(self, parts: "StackParts") -> None:
        if unresolved(parts) or db.repo1_lost(parts):
            self.make_whole(parts, {})

    def restores(self, parts: "StackParts", c: "ComponentId") -> bool:
        return c.kind == POSTGRES and unresolved(parts)


def backup_ready(parts: "StackParts", request: dict[str, Any]) -> dict[str, Any]:
    """Until the repository holds a backup that stopped at least 2 s ago (pgBackRest's whole seconds), bounded."""
    repo, wait_s = int(request.get("repo") or 1), float(request.get("wait_s") or BACKUP_WAIT_S)
    deadline = time.monotonic() + wait_s
    why = "no backup yet"
    while True:
        try:
            sets = [b for b in db.backups(parts, db.members(parts)[0], repo) if b.stop <= time.time() - 2]
            if sets:
                return {"repo": repo, "backup_label": sets[-1].label, "backup_age_s": round(time.time() - sets[-1].stop, 1)}
        except HarnessError as exc:
            why = str(exc)
        if time.monotonic() >= deadline:
            raise HarnessError(f"no backup in repo{repo} after {wait_s:.0f} s ({why}): a restore could not be "
                               f"measured, so the fault was not injected. The stack takes its first full backup in "
                               f"the background after `up` (`resilience status` shows it); is stack.backup.enabled on?")
        time.sleep(1.0)


def unresolved(parts: "StackParts") -> bool:
    """A disaster recorded and not yet restored from."""
    found = db.disaster(parts)
    return found is not None and not found.get("resolved")


def look(nemesis: "LocalNemesis", fault: str, **args: Any) -> dict[str, Any] | None:
    """Ask the supervisor's "look" phase whether the fault's effect is there (None while not); with the
    disaster's own time as `began_monotonic` (the injection first waits for a backup: the request's
    start is not when the disaster happened)."""
    reply = nemesis.ask(fault, "look", timeout=LOOK_TIMEOUT_S, **args)
    return reply.get("seen") or None
