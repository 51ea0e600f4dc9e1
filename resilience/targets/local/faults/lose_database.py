"""lose_database on the local stack: every database member and its data directory lost at once.

Patroni and PostgreSQL of every member are killed (they stay down) and the data directories
removed: only the backups are left. The recovery is `restore_database` (to=latest, repo=1).
Its effect is seen once no member runs and no data directory is left.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ....fault_registry import FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, InjectContext
from .. import db_members as db
from ..disaster import DisasterFault, look
from . import FREEZE_DEADLINE_S, FAULTS, Phase

if TYPE_CHECKING:
    from ..stack_parts import StackParts
    from ..nemesis import LocalNemesis


@FAULTS.register
class LoseDatabase(DisasterFault):
    fault = "lose_database"
    steps = ("restore_lost_database",)
    region = False  # lose_region also makes repo1 unreadable

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        extra = " and move the in-region repository (repo1) aside" if self.region else ""
        return [f"{self.fault}: kill Patroni and PostgreSQL of every database member, remove their data "
                f"directories{extra}",
                f"rollback {self.steps[0]}: {'put repo1 back; ' if self.region else ''}make sure the database "
                f"cluster is whole (re-bootstrap from the latest backup unless a restore did)"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        step = RollbackStep(self.steps[0], {}, "make sure the database cluster is whole")
        self.await_backup(nemesis)
        context.record(step)
        nemesis.ask(self.fault, "inject")
        return step

    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        what = "no database member runs and their data directories are gone"
        return Effect(what + (", and repo1 is unreadable" if self.region else ""), FREEZE_DEADLINE_S,
                      lambda: look(nemesis, self.fault), in_call=False)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {**super().phases(), "inject": self.lose, "look": self.seen}

    def lose(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        wall, monotonic = time.time(), time.monotonic()
        db.record_disaster(parts, self.fault, wall, monotonic)
        names = db.stop_all(parts)
        db.wipe(parts)
        if self.region:
            db.lose_repo1(parts)
        parts.event(self.fault, "inject", members=names, repo1_lost=self.region)
        return {"members": names}

    def seen(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        ms = db.members(parts)
        down = all(not parts.processes.alive(c) for c in ms)
        gone = all(not (db.data_dir(parts, c) / "PG_VERSION").exists() for c in ms)
        repo_gone = db.repo1_lost(parts) if self.region else True
        if down and gone and repo_gone:
            return {"seen": {"members": [c.name for c in ms], "data_dirs": "gone",
                             "began_monotonic": (db.disaster(parts) or {}).get("m"),
                             **({"repo1": "unreadable"} if self.region else {})}}
        return {"seen": None}
