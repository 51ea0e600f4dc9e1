"""The fault injector: the supervisor's side of every local fault, dispatched to the fault's module.

The control socket's one fault op, `{"op": "fault", "fault": <registry name>, "phase":
"inject" | "undo", ...arguments}`, lands here: the module registered under that name
(targets/local/faults/) does the phase with the supervisor parts it needs
(`StackParts`). Processes and replicas change through their owners, all under the
stack lock; what only faults change (the lost zones, a module's own state such as
the held WAL senders) lives in `StackParts`. `heal` (a crashed run's rollback of
last resort) asks every module to undo what it left, in `heal_order`, and brings
back any process still frozen or stopped (a module may claim one: `restores`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import UserError
from .stack_parts import StackParts
from .topology import Topology

if TYPE_CHECKING:
    from .faults import LocalFault, Phase

Request = dict[str, Any]
PROCESSES_HEAL_ORDER = 50  # in a heal, modules ordered below this heal before frozen/stopped processes come back


class FaultInjector:
    """Runs a fault module's supervisor-side phase; heals everything the modules may have left."""

    def __init__(self, parts: StackParts) -> None:
        self.parts = parts

    def lost(self) -> frozenset[str]:
        return self.parts.lost()

    @staticmethod
    def _modules() -> dict[str, "LocalFault"]:
        from .faults import FAULTS, LocalFault
        return {name: m for name, m in FAULTS.load().modules.items() if isinstance(m, LocalFault)}

    def phase(self, request: Request) -> tuple["LocalFault", "Phase"]:
        """The module and the phase function a `fault` request names, or a UserError saying what exists."""
        modules = self._modules()
        fault, phase = request.get("fault"), request.get("phase")
        module = modules.get(fault) if isinstance(fault, str) else None
        if module is None:
            raise UserError(f"the local stack has no fault {fault!r}; it has: {', '.join(sorted(modules))}")
        phases = module.phases()
        if not isinstance(phase, str) or phase not in phases:
            raise UserError(f"fault {fault}: no phase {phase!r}; its phases are: {', '.join(phases)}")
        return module, phases[phase]

    def heal(self) -> dict[str, Any]:
        """Undo every fault this supervisor knows of (a crashed run's rollback of last resort)."""
        parts = self.parts
        restored = sorted(parts.lost())
        modules = sorted(self._modules().values(), key=lambda m: m.heal_order)
        for module in modules:
            if module.heal_order < PROCESSES_HEAL_ORDER:
                module.heal_here(parts)
        with parts.lock:
            paused = sorted(parts.processes.paused, key=lambda c: c.name)
        for c in paused:
            if not any(m.restores(parts, c) for m in modules):
                parts.processes.thaw(c)
        with parts.lock:
            stopped = sorted(parts.processes.stopped, key=Topology.restart_order)
        for c in stopped:
            if not any(m.restores(parts, c) for m in modules) and not parts.processes.alive(c):
                parts.restart(c)
        with parts.lock:
            parts.processes.stopped.clear()
        for module in modules:
            if module.heal_order >= PROCESSES_HEAL_ORDER:
                module.heal_here(parts)
        parts.events("fault", "heal", zones=restored)
        return {"zones": restored}

