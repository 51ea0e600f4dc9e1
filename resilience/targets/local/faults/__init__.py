"""The local nemesis' faults: one module per fault of the registry, each registering itself in `FAULTS`.

A local fault lives on both sides of the control socket, in one module: the harness
side (`plan`, `inject`, `undo`: requests through `LocalNemesis.ask`) and the
supervisor side (`phases`: what `{"op": "fault", "fault": ..., "phase": ...}` runs
there, with the supervisor's `StackParts`; `heal_here` and `restores` for a heal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ...fault_module import FaultModule
from ..nemesis import FAULTS, LocalNemesis

if TYPE_CHECKING:
    from ..stack_parts import StackParts
    from ..topology import ComponentId

__all__ = ["FAULTS", "LocalFault", "Phase"]
EFFECT_DEADLINE_S = 60.0  # Patroni's TTL (30 s) and loop wait, or Sentinel's down-after and failover, with margin
FREEZE_DEADLINE_S = 20.0  # a frozen or killed process is seen unhealthy within a few health checks


def stack_status(nemesis: "LocalNemesis") -> dict[str, Any]:
    """The supervisor's status reply (roles, health, lost zones): what a fault's effect is looked for in."""
    return nemesis.platform.request("status", timeout=10)


def components(status: dict[str, Any], kind: str, zone: str | None = None) -> list[dict[str, Any]]:
    return [c for c in status.get("components", [])
            if c.get("kind") == kind and (zone is None or c.get("zone") == zone)]


Phase = Callable[["StackParts", dict[str, Any]], dict[str, Any]]  # a supervisor-side phase: (parts, request) -> reply


class LocalFault(FaultModule[LocalNemesis]):
    """A fault of the local stack: the harness side (FaultModule) and the supervisor side (below)."""

    def phases(self) -> dict[str, Phase]:
        """The supervisor-side phases, by name ("inject", "undo", ...)."""
        return {}

    def rejoins(self, phase: str, request: dict[str, Any], result: dict[str, Any]) -> list[str] | None:
        """The components a phase brought back: the supervisor answers once they have rejoined (None: no wait)."""
        return None

    def heal_here(self, parts: "StackParts") -> None:
        """In a heal: undo what this fault may have left in the stack (default: nothing)."""

    def restores(self, parts: "StackParts", c: "ComponentId") -> bool:
        """In a heal: bring back `c`, left frozen or stopped, this fault's way; False leaves it to the heal."""
        return False
