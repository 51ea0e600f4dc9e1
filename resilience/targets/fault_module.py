"""A fault module: one fault of the registry on one kind of infrastructure, in one file.

Each nemesis has a `faults` package (`targets/<target>/faults/`). Every module there
registers, under the registry's name (`resilience.fault_registry`), what that fault
is on this infrastructure: its dry-run lines (`plan`), its `inject`, the rollback
steps it makes (`steps`) and how each is undone (`undo`), what it re-checks in a
step read back from rollback.json (`undo_refusal`), what it heals after a crash,
when it refuses (`refusal`, argument- or settings-dependent), for a composite
fault, what the run does after the injection (`then`), and the signal that shows the
fault took effect (`effect`, with a deadline; `documented` says how long the platform's
documentation says that takes, which `--dry-run` compares with the profile). A fault a nemesis cannot
inject is declared there too, with the reason (`FaultTable.refuse`), which
`resilience faults` prints.

The nemesis is generic (`ModularNemesis`): it finds its modules by importing every
module of its `faults` package (pkgutil), and hands each rollback step to the module
that declared the step's name. Step names stay what earlier versions wrote into
rollback.json (`restore_zone`, `restore_db`, `wait_replicas`, ...).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Generic, Mapping, TypeVar

from ..errors import HarnessError
from ..fault_registry import FAULTS, ROLLBACK_NONE, FaultCall
from .base import FaultSession, Nemesis, Recorder, RollbackStep, no_record
from .effect import Documented, Effect

N = TypeVar("N", bound="ModularNemesis")


@dataclass(frozen=True)
class InjectContext:
    """What an injection gets besides its call: the run's seed, and where to hand its step before acting."""

    seed: int | None = None
    record: Recorder = no_record


class FaultModule(Generic[N]):
    """One registered fault on one nemesis. Subclass it in `targets/<target>/faults/<fault>.py` and register it."""

    fault: ClassVar[str] = ""  # the registry's name
    steps: ClassVar[tuple[str, ...]] = ()  # the rollback step names this module makes and undoes
    heal_order: ClassVar[int] = 50  # modules heal in this order, lower first (local: below 50, before processes)

    def plan(self, nemesis: N, call: FaultCall) -> list[str]:
        """The dry-run lines: `<fault>: ...` for each call the injection makes, `rollback <step>: ...` for its undo."""
        raise NotImplementedError

    def refusal(self, nemesis: N, call: FaultCall) -> str | None:
        """Why these arguments or settings cannot be honoured here, or None."""
        return None

    def inject(self, nemesis: N, call: FaultCall, context: InjectContext) -> RollbackStep:
        raise NotImplementedError

    def undo(self, nemesis: N, step: RollbackStep) -> None:
        """Undo one of this module's steps; must be safe to call twice."""

    def undo_refusal(self, nemesis: N, step: RollbackStep) -> str | None:
        """Why a step read back from rollback.json lies outside what the operator allowed, or None."""
        return None

    def heal(self, nemesis: N) -> None:
        """Undo whatever this fault may have left after a crash mid-inject (default: nothing)."""

    def then(self, session: FaultSession) -> None:
        """What the run does once the fault is injected: hold it (a composite fault does more)."""
        session.hold(session.hold_s)

    def effect(self, nemesis: N, call: FaultCall, step: RollbackStep) -> Effect | None:
        """The signal that shows this injection took effect (None: none to watch; it acts in its call)."""
        return None

    def documented(self, nemesis: N, call: FaultCall) -> Documented | None:
        """How long the documentation says the effect takes (None: at once), for the dry-run's profile check."""
        return None


class FaultTable:
    """A nemesis' fault modules, found in its `faults` package, and the faults it refuses (with the reason)."""

    def __init__(self, nemesis: str, package: str) -> None:
        self.nemesis = nemesis
        self.package = package
        self.modules: dict[str, FaultModule[Any]] = {}
        self.refused: dict[str, str] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def register(self, cls: type[FaultModule[Any]]) -> type[FaultModule[Any]]:
        """Class decorator: this module injects `cls.fault` on this nemesis."""
        if cls.fault in self.modules or cls.fault in self.refused:
            raise HarnessError(f"the {self.nemesis} nemesis has the fault {cls.fault!r} twice ({cls.__module__})")
        self.modules[cls.fault] = cls()
        return cls

    def refuse(self, fault: str, why: str) -> None:
        """This nemesis cannot inject `fault`: `why` is what `resilience faults` and a refused run say."""
        if fault in self.modules or fault in self.refused:
            raise HarnessError(f"the {self.nemesis} nemesis has the fault {fault!r} twice")
        self.refused[fault] = why

    def unregister(self, fault: str) -> None:
        self.modules.pop(fault, None)
        self.refused.pop(fault, None)

    def load(self) -> "FaultTable":
        """Import every module of the package once (each registers itself)."""
        with self._lock:
            if not self._loaded:
                package = importlib.import_module(self.package)
                for info in pkgutil.iter_modules(package.__path__):
                    importlib.import_module(f"{self.package}.{info.name}")
                self._loaded = True
        return self

    def module(self, fault: str) -> FaultModule[Any] | None:
        return self.load().modules.get(fault)

    def support(self) -> dict[str, str | None]:
        """Every registered fault that touches a target: None when a module injects it, otherwise why not."""
        self.load()
        return {name: (None if name in self.modules else
                       self.refused.get(name, f"the {self.nemesis} nemesis does not know this fault"))
                for name, fault in FAULTS.items() if fault.touches_target}

    def step_owners(self) -> dict[str, FaultModule[Any]]:
        """Each rollback step name and the module that undoes it (two modules claiming one name is an error)."""
        owners: dict[str, FaultModule[Any]] = {}
        for module in self.load().modules.values():
            for step in module.steps:
                if step in owners or step == ROLLBACK_NONE:
                    raise HarnessError(f"the {self.nemesis} nemesis: rollback step {step!r} is claimed by both "
                                       f"{type(owners.get(step)).__name__} and {type(module).__name__}")
                owners[step] = module
        return owners


class ModularNemesis(Nemesis):
    """A nemesis made of fault modules: every fault call goes to the module registered under its name."""

    FAULTS: ClassVar[FaultTable]

    @classmethod
    def support(cls) -> Mapping[str, str | None]:
        return cls.FAULTS.support()

    def _module(self, fault: str) -> FaultModule[Any]:
        module = self.FAULTS.module(fault)
        if module is None:
            raise HarnessError(f"the {self.name} nemesis has no module for the fault {fault!r}")
        return module

    def argument_refusal(self, call: FaultCall) -> str | None:
        return self._module(call.fault).refusal(self, call) or self.common_refusal(call)

    def common_refusal(self, call: FaultCall) -> str | None:
        """A refusal every fault of this nemesis shares (e.g. a namespace outside the allow-list)."""
        return None

    def plan(self, call: FaultCall) -> list[str]:
        return self._module(call.fault).plan(self, call)

    def inject(self, call: FaultCall, seed: int | None = None, record: Recorder = no_record) -> RollbackStep:
        return self._module(call.fault).inject(self, call, InjectContext(seed, record))

    def then(self, call: FaultCall, session: FaultSession) -> None:
        self._module(call.fault).then(session)

    def effect(self, call: FaultCall, step: RollbackStep) -> Effect | None:
        return self._module(call.fault).effect(self, call, step)

    def documented(self, call: FaultCall) -> Documented | None:
        return self._module(call.fault).documented(self, call)

    def known_steps(self) -> list[str]:
        return [ROLLBACK_NONE, *self.FAULTS.step_owners()]

    def rollback_refusal(self, step: RollbackStep) -> str | None:
        if step.capability == ROLLBACK_NONE:
            return None
        owner = self.FAULTS.step_owners().get(step.capability)
        if owner is None:
            return f"the {self.name} nemesis has no rollback {step.capability!r} (known: {', '.join(self.known_steps())})"
        return owner.undo_refusal(self, step)

    def rollback(self, step: RollbackStep) -> None:
        if step.capability == ROLLBACK_NONE:
            return
        owner = self.FAULTS.step_owners().get(step.capability)
        if owner is None:
            raise HarnessError(f"rollback step {step.capability!r} does not belong to the {self.name} nemesis "
                               f"(known: {', '.join(self.known_steps())}). Check rollback.json.")
        owner.undo(self, step)

    def heal(self) -> None:
        for module in sorted(self.FAULTS.load().modules.values(), key=lambda m: m.heal_order):
            module.heal(self)
