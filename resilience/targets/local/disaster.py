"""What the local disaster faults share (corrupt_orders, lose_database, lose_region, restore_database).

Their undo is one supervisor phase, "undo": the database cluster made whole again
(`restore.ensure`: wait for a running restore, put repo1 back, re-bootstrap from the latest
backup when there is no leader). The same runs in a heal (before processes are restarted:
a member whose data directory is gone must not be restarted into a DCS that still says
"initialized"), but only while a disaster of theirs is unresolved or repo1 is aside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import RollbackStep
from . import db_members as db
from .faults import LocalFault, Phase
from .topology import POSTGRES

if TYPE_CHECKING:
    from .nemesis import LocalNemesis
    from .stack_parts import StackParts
    from .topology import ComponentId

UNDO_TIMEOUT_S = 1800.0  # an undo may wait for a running restore and then restore again
LOOK_TIMEOUT_S = 60.0
DISASTER_HEAL_ORDER = 40  # after lost zones come back (10), before processes are restarted (50)


class DisasterFault(LocalFault):
    """A local fault whose undo makes the database cluster whole again (see the module's docstring)."""

    heal_order = DISASTER_HEAL_ORDER

    def undo(self, nemesis: "LocalNemesis", step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo", timeout=UNDO_TIMEOUT_S, **step.arguments)

    def phases(self) -> dict[str, Phase]:
        return {"undo": self.make_whole}

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


def unresolved(parts: "StackParts") -> bool:
    """A disaster recorded and not yet restored from."""
    found = db.disaster(parts)
    return found is not None and not found.get("resolved")


def look(nemesis: "LocalNemesis", fault: str, **args: Any) -> dict[str, Any] | None:
    """Ask the supervisor's "look" phase whether the fault's effect is there (None while not)."""
    reply = nemesis.ask(fault, "look", timeout=LOOK_TIMEOUT_S, **args)
    return reply.get("seen") or None
