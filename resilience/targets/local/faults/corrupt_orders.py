"""corrupt_orders on the local stack: a share of the orders deleted or rewritten on the primary at a recorded
time (a bad migration). It replicates to the standby, so failover cannot help: the recovery is a
point-in-time restore to just before it (`restore_database` with to=before-fault).

The time recorded is taken just before the statement: the restore's target (`--target-exclusive`)
keeps every transaction committed before it and drops the corruption. Every order it hit is in
the `corrupted` recovery record (the checker compares them after the restore). Its effect is
seen once the rows are gone (or rewritten) on the primary AND on the standby.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ....errors import HarnessError, UserError
from ....fault_registry import FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, InjectContext
from .. import db_members as db
from ..disaster import DisasterFault, look
from ..restore import RECOVERY
from . import EFFECT_DEADLINE_S, FAULTS, Phase

if TYPE_CHECKING:
    from ..stack_parts import StackParts
    from ..nemesis import LocalNemesis

HIT = ("SELECT order_id FROM orders ORDER BY random() "
       "LIMIT (SELECT ceil(count(*) * {fraction})::bigint FROM orders)")
DELETE = ("WITH hit AS ({hit}), pay AS (DELETE FROM payments WHERE order_id IN (SELECT order_id FROM hit)) "
          "DELETE FROM orders WHERE order_id IN (SELECT order_id FROM hit) RETURNING order_id, idempotency_key")
REWRITE = ("WITH hit AS ({hit}) UPDATE orders SET items = '[]'::jsonb, total_paise = 0 "
           "WHERE order_id IN (SELECT order_id FROM hit) RETURNING order_id, idempotency_key")


@FAULTS.register
class CorruptOrders(DisasterFault):
    fault = "corrupt_orders"
    steps = ("recover_corruption",)

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        return [f"corrupt_orders: {call.get('mode')} {call.get('fraction'):g} of the orders on the PostgreSQL primary "
                f"in one statement at a recorded time (it replicates to the standby)",
                "rollback recover_corruption: make sure the database cluster is whole (wait for a running restore; "
                "re-bootstrap from the latest backup if it has no leader)"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        step = RollbackStep("recover_corruption", {}, "make sure the database cluster is whole")
        self.await_backup(nemesis)
        context.record(step)
        nemesis.ask(self.fault, "inject", fraction=call.get("fraction"), mode=call.get("mode"))
        return step

    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        return Effect("the corrupted orders are gone (or rewritten) on the primary and on the standby",
                      EFFECT_DEADLINE_S, lambda: look(nemesis, self.fault), in_call=False)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {**super().phases(), "inject": self.corrupt, "look": self.seen}

    def corrupt(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        fraction, mode = float(request.get("fraction") or 0.3), request.get("mode", "delete")
        if mode not in ("delete", "rewrite") or not 0 < fraction <= 1:
            raise UserError(f"corrupt_orders: mode {mode!r} / fraction {fraction!r}: use delete|rewrite and 0 < f <= 1")
        leader = parts.leader()
        if leader is None:
            raise HarnessError("no PostgreSQL primary found (Patroni /cluster shows no running leader)")
        statement = (DELETE if mode == "delete" else REWRITE).format(hit=HIT.format(fraction=fraction))
        wall, monotonic = time.time(), time.monotonic()
        out = db.sql(parts, leader, statement, timeout=120)
        db.record_disaster(parts, self.fault, wall, monotonic)
        rows = [line.split("|") for line in out.splitlines() if "|" in line]
        ids, keys = [r[0] for r in rows], [r[1] for r in rows]
        rewritten = {i: {"items": [], "total_paise": 0} for i in ids} if mode == "rewrite" else {}
        with parts.lock:
            parts.state[self.fault] = {"ids": ids, "mode": mode}
        parts.events(RECOVERY, "corrupted", mode=mode, count=len(ids), order_ids=ids, idempotency_keys=keys,
                     rewritten=rewritten, member=leader.name)
        parts.event(self.fault, "inject", member=leader.name, mode=mode, count=len(ids))
        return {"member": leader.name, "count": len(ids), "mode": mode}

    def seen(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        """{"seen": ...} once every member shows the corruption (no hit row left; or all rewritten)."""
        with parts.lock:
            hit = dict(parts.state.get(self.fault) or {})
        ids = list(hit.get("ids", []))
        began = (db.disaster(parts) or {}).get("m")
        if not ids:
            return {"seen": {"count": 0, "members": [], "began_monotonic": began}}
        array = "'{" + ",".join(ids) + "}'::uuid[]"
        query = (f"SELECT count(*) FROM orders WHERE order_id = ANY({array})" if hit.get("mode") == "delete" else
                 f"SELECT count(*) FROM orders WHERE order_id = ANY({array}) AND total_paise = 0 AND items = '[]'")
        want = 0 if hit.get("mode") == "delete" else len(ids)
        counts = {}
        for c in db.members(parts):
            try:
                counts[c.name] = int(db.sql(parts, c, query, timeout=10))
            except (HarnessError, ValueError):
                return {"seen": None}
        if all(n == want for n in counts.values()):
            return {"seen": {"count": len(ids), "members": sorted(counts), "rows_left": json.dumps(counts),
                             "began_monotonic": began}}
        return {"seen": None}
