"""What can be broken in the local stack: the fault modules in local/faults/, through the supervisor.

The supervisor does the breaking (it owns the processes); this side asks for a
fault's phase (`ask`), records how to undo it, and for every restoring step waits
until the supervisor reports the restored components whole again (or raises, naming them).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from ...errors import HarnessError
from ..base import Build
from ..fault_module import FaultTable, ModularNemesis

# the modules of local/faults/ register themselves here (that package imports this one, never the reverse)
FAULTS = FaultTable("local", "resilience.targets.local.faults")


@runtime_checkable
class SupervisorAccess(Protocol):
    """What the local nemesis and its fault modules use of the local platform (LocalPlatform gives it)."""

    def request(self, op: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]: ...
    def primary_zone(self) -> str | None: ...
    def ready_replicas(self) -> int: ...
    def heal_wait_s(self) -> float: ...
    def zone_names(self) -> Sequence[str]: ...


class LocalNemesis(ModularNemesis):
    name = "local"
    FAULTS = FAULTS

    @classmethod
    def build(cls, parts: Build) -> "LocalNemesis":
        if not isinstance(parts.platform, SupervisorAccess):
            raise HarnessError(f"the local nemesis needs the local platform, not {parts.platform!r}")
        return cls(parts.platform)

    def __init__(self, platform: SupervisorAccess) -> None:
        self.platform = platform
        self.zones = tuple(platform.zone_names())

    def ask(self, fault: str, phase: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
        """One phase of a fault, done by the supervisor (the control socket's `fault` op)."""
        return self.platform.request("fault", timeout=timeout, fault=fault, phase=phase, **args)

    def heal(self) -> None:
        """Undo every fault the stack knows of (rollback of last resort after a crash), and wait until it is whole."""
        self.platform.request("heal", timeout=self.platform.heal_wait_s())
