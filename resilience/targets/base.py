"""The two protocols a target is made of, and the values they exchange.

A `Platform` is where the school-meal platform runs (deploy, stop, status, URL,
observations); a `Nemesis` is what can be broken there and how. A target
(targets/target.py) composes one platform with the nemeses that handle each
fault, e.g. the API on Kubernetes with its database and cache faults on AWS.
Every fault returns the `RollbackStep` that undoes it; the harness writes the
step to the run directory *before* calling the fault, so a crash can be undone.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from ..fault_registry import FaultCall

if TYPE_CHECKING:
    from ..config import Settings
    from .effect import Documented, Effect


@dataclass(frozen=True)
class Component:
    """One running part of the stack, as `resilience status` shows it."""

    name: str  # e.g. "api-3", "postgres-1", "redis-1", "sentinel-2", "etcd-1", "haproxy"
    kind: str  # api | postgres | redis | sentinel | etcd | haproxy | controller
    role: str  # primary | replica | master | member | leader | lb | ...
    zone: str | None
    pid: int | None
    address: str  # host:port
    healthy: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StackStatus:
    """What `resilience status --json` prints (schema documented in the README)."""

    target: str
    running: bool
    url: str | None
    zone_mode: str | None  # "netns" | "process" (local); None elsewhere
    components: list[Component] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.running and bool(self.components) and all(c.healthy for c in self.components)

    def zones(self) -> set[str]:
        return {c.zone for c in self.components if c.zone}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "target": self.target,
            "running": self.running,
            "healthy": self.healthy,
            "url": self.url,
            "zone_mode": self.zone_mode,
            "components": [c.to_json() for c in self.components],
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RollbackStep:
    """How to undo one fault: a capability name and its arguments (JSON-able), and which nemesis made it."""

    capability: str  # e.g. "restore_zone"; "none" when the platform heals by itself
    arguments: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    nemesis: str = ""  # the nemesis that injected the fault and undoes it ("" in files from before compositions)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RollbackStep":
        return cls(str(data["capability"]), dict(data.get("arguments") or {}), str(data.get("description", "")),
                   str(data.get("nemesis") or ""))


@dataclass(frozen=True)
class PlatformEvent:
    """Something the platform did on its own: a failover, a scale decision, a replica ready."""

    monotonic: float  # absolute CLOCK_MONOTONIC seconds
    source: str  # "controller" | "platform"
    op: str  # "scale", "replace", "ready", "failover", ...
    detail: dict[str, Any] = field(default_factory=dict)


Recorder = Callable[[RollbackStep], None]  # writes a rollback step to rollback.json before the fault acts


def no_record(step: RollbackStep) -> None:
    """The recorder when nobody keeps a rollback file (benchmarks, direct calls)."""


class FaultSession(Protocol):
    """What a fault does with the run once it is injected (`Nemesis.then`; `resilience.run.Run` gives it)."""

    @property
    def hold_s(self) -> float:
        """This fault's hold: its hold_s argument, or the experiment's durations.fault_s."""

    @property
    def fault_s(self) -> float:
        """The experiment's durations.fault_s."""

    def hold(self, seconds: float) -> None:
        """Let time pass under load, checking the stop condition."""

    def inject(self, fault: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Inject another fault as one more step of the run (its own rollback entry and history record)."""

    def release(self, fault: str) -> None:
        """Undo the pending steps of `fault` as a tidy-up (no history record, the phase unchanged)."""

    def undo(self, fault: str) -> None:
        """Roll back the pending steps of `fault` only (history records; the recovery phase starts)."""


@dataclass(frozen=True)
class Build:
    """What a target's parts are built from (`make_target`): each part's `build` takes what it needs."""

    settings: "Settings"
    context: str | None = None  # the kubeconfig context (targets that need one)
    dry_run: bool = False  # no client is created and nothing is sent; only plans work
    services: Mapping[str, "Services"] = field(default_factory=dict)  # built first, by name
    platform: "Platform | None" = None  # built before the nemeses


class Observed:
    """What the platform and the managed services beside it both offer: where the primary is, a plan, observing."""

    name: str = "abstract"

    def primary_zone(self) -> str | None:
        """The zone that holds the database primary, if known here."""
        return None

    def plan_up(self) -> list[str]:
        """The dry-run lines for deploying (and checking) this: what `up` would do, without doing it."""
        return []

    def start_observing(self) -> None:
        """Record what happens from now on, as it happens (e.g. watches); `events_since` returns it."""

    def stop_observing(self) -> None:
        """Stop what `start_observing` started (safe to call twice, or without a start)."""


class Platform(Observed, abc.ABC):
    """Where the platform runs: deploy it, stop it, observe it. Knows nothing of faults."""

    @classmethod
    def build(cls, parts: Build) -> "Platform":
        """This platform for a composition (make_target)."""
        raise NotImplementedError(f"{cls.__name__} has no build()")

    @abc.abstractmethod
    def up(self) -> StackStatus:
        """Deploy the platform and wait until it is ready; report an existing stack instead of a second one."""

    @abc.abstractmethod
    def down(self) -> None:
        """Remove everything this platform created."""

    @abc.abstractmethod
    def status(self) -> StackStatus:
        """Every component, its role, zone and health."""

    @abc.abstractmethod
    def url(self) -> str:
        """The platform's base URL (the load balancer)."""

    @abc.abstractmethod
    def ready_replicas(self) -> int:
        """API replicas currently ready to serve (in the load balancer)."""

    @abc.abstractmethod
    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        """Platform events at or after an absolute monotonic time."""


class Services(Observed, abc.ABC):
    """Managed services beside the platform (a database, a cache): observed, not deployed by us."""

    @classmethod
    def build(cls, parts: Build) -> "Services":
        """These services for a composition (make_target)."""
        raise NotImplementedError(f"{cls.__name__} has no build()")

    @abc.abstractmethod
    def components_status(self) -> StackStatus:
        """Their components (roles, zones, health), added to the platform's status."""

    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        return []


class Nemesis(abc.ABC):
    """What can be broken on one kind of infrastructure, and how (Jepsen's nemesis).

    `SUPPORT` names every fault of the registry that touches a target: None when
    this nemesis can inject it, otherwise why not (shown by `resilience faults`,
    and the error a run and its dry-run both give). `refusal()` adds what depends
    on the arguments or the settings (a mode it lacks, a zone that does not exist).
    """

    name: str = "abstract"
    SUPPORT: Mapping[str, str | None] = {}

    @classmethod
    def build(cls, parts: Build) -> "Nemesis":
        """This nemesis for a composition's platform and services (make_target)."""
        raise NotImplementedError(f"{cls.__name__} has no build()")

    @classmethod
    def support(cls) -> Mapping[str, str | None]:
        """Every fault of the registry that touches a target: None when supported, otherwise why not."""
        return cls.SUPPORT

    def refusal(self, call: FaultCall) -> str | None:
        """Why this nemesis would refuse `call`, or None when it would inject it."""
        support = self.support()
        if call.fault not in support:
            return f"the {self.name} nemesis does not know the fault {call.fault!r}"
        return support[call.fault] or self.argument_refusal(call)

    def argument_refusal(self, call: FaultCall) -> str | None:
        """Refusals that depend on the arguments (override)."""
        return None

    @abc.abstractmethod
    def plan(self, call: FaultCall) -> list[str]:
        """The dry-run lines: every call inject and its rollback would make, without making any."""

    @abc.abstractmethod
    def inject(self, call: FaultCall, seed: int | None = None, record: Recorder = no_record) -> RollbackStep:
        """Inject a fault this nemesis supports; return how to undo it.

        A fault that changes state it must later undo selectively (e.g. cordons only the
        nodes that were not cordoned already) calls `record(step)` with the undo step
        *before* acting, so a crash mid-fault still leaves an exact rollback.
        """

    @abc.abstractmethod
    def rollback(self, step: RollbackStep) -> None:
        """Undo a fault; must be safe to call twice."""

    def rollback_refusal(self, step: RollbackStep) -> str | None:
        """Why a step (e.g. read back from a forged rollback.json) lies outside what the operator allowed."""
        return None

    def then(self, call: FaultCall, session: FaultSession) -> None:
        """What the run does once `call` is injected: hold it (a composite fault does more)."""
        session.hold(session.hold_s)

    def effect(self, call: FaultCall, step: RollbackStep) -> "Effect | None":
        """The signal that shows `call` (undone by `step`) took effect; None: it acts within its call."""
        return None

    def documented(self, call: FaultCall) -> "Documented | None":
        """How long the documentation says `call` takes to take effect (None: at once)."""
        return None

    def heal(self) -> None:
        """Undo whatever faults this nemesis may have left (after a crash mid-inject). Default: nothing to do."""
