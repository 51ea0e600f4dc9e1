"""A target: one platform, the managed services beside it, and a nemesis for each fault.

The run, the CLI and `resilience rollback` talk to a `Target` only. It passes
deploy/status/URL/observations to its `Platform`, adds the components and events
of its managed services (e.g. RDS and ElastiCache for the API on EKS), and hands
each fault to the nemesis the composition names for it. A fault no nemesis of
the target can inject is refused with the nemesis' reason, in the run and in its
dry-run alike (`check`). Which pieces make which target is data
(`COMPOSITIONS`), so a new home for the platform is one more entry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from ..errors import HarnessError, UserError
from ..fault_registry import FAULTS, ROLLBACK_NONE, FaultCall
from .base import (FaultSession, Nemesis, Platform, PlatformEvent, Recorder, RollbackStep, Services, StackStatus,
                   no_record)

if TYPE_CHECKING:
    from .fault_module import Documented, Effect

STEPS = "steps"  # a rollback step made of the steps of several nemeses


@dataclass(frozen=True)
class Composition:
    """Which platform, which managed services, and which nemesis injects each fault (default: the platform's)."""

    name: str
    description: str
    platform: str  # local | kubernetes
    services: tuple[str, ...] = ()  # e.g. ("aws",): RDS + ElastiCache
    # fault -> the nemeses that inject it, in order, where not the platform's own
    faults: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    needs_context: bool = False  # a kubeconfig context (--context) names where it is
    needs_consent: bool = True  # shared infrastructure: an operator types "yes" or passes --yes (consent.py)
    on_this_machine: bool = False  # the platform runs here: it keeps cores the load's default workers leave

    def nemesis_names(self, fault: str) -> tuple[str, ...]:
        return self.faults.get(fault, (self.platform,))


COMPOSITIONS: dict[str, Composition] = {c.name: c for c in (
    Composition("local", "the whole stack as processes on this machine (zones as network namespaces)", "local",
                needs_consent=False, on_this_machine=True),
    Composition("kubernetes", "the API on a Kubernetes cluster; faults through chaostoolkit-kubernetes "
                              "(database faults only with an in-cluster CloudNativePG)", "kubernetes",
                needs_context=True),
    Composition("aws", "the platform's home: the API on EKS, PostgreSQL on RDS, Redis on ElastiCache; pod and node "
                       "faults through chaostoolkit-kubernetes, database and cache faults through chaostoolkit-aws",
                "kubernetes", services=("aws",),
                faults={"fail_over_database": ("aws",), "stop_cache": ("aws",),
                        # a lost zone: its app pods evicted and nodes cordoned, then the RDS writer and the
                        # ElastiCache primary failed over when they are there (and its subnets cut, if allowed)
                        "lose_zone": ("kubernetes", "aws"),
                        # issue 19: the database is RDS (restore_database: a point-in-time restore, the app swapped)
                        "corrupt_orders": ("aws",), "lose_database": ("aws",), "lose_region": ("aws",),
                        "restore_database": ("aws",),
                        # issue 21: network faults on the API pods through AWS FIS (aws/fis_network.py)
                        "delay_network": ("aws",), "drop_packets": ("aws",), "blackhole_network": ("aws",),
                        "reject_network": ("aws",)},
                needs_context=True),
)}


class Target:
    """A composition, ready to use: what `make_target` returns."""

    def __init__(self, composition: Composition, platform: Platform, nemeses: Mapping[str, Nemesis],
                 services: Sequence[Services] = ()) -> None:
        self.composition = composition
        self.name = composition.name
        self.platform = platform
        self.services = tuple(services)
        self.nemeses = dict(nemeses)  # by nemesis name
        missing = {n for f in FAULTS if FAULTS[f].touches_target for n in composition.nemesis_names(f)} - set(
            self.nemeses)
        if missing:
            raise HarnessError(f"target {self.name}: no nemesis {sorted(missing)} was built for its composition")

    # -- the platform ------------------------------------------------------------
    def up(self) -> StackStatus:
        status = self.platform.up()
        return self._with_services(status)

    def down(self) -> None:
        self.platform.down()

    def status(self) -> StackStatus:
        return self._with_services(self.platform.status())

    def _with_services(self, status: StackStatus) -> StackStatus:
        if not self.services or not status.running:
            return status
        components, detail = list(status.components), dict(status.detail)
        for service in self.services:
            extra = service.components_status()
            components += extra.components
            detail[service.name] = extra.detail
        return dataclasses.replace(status, target=self.name, components=components, detail=detail)

    def url(self) -> str:
        return self.platform.url()

    def ready_replicas(self) -> int:
        return self.platform.ready_replicas()

    def start_observing(self) -> None:
        """Start the platform's and the services' observers (a run calls this before the load starts)."""
        self.platform.start_observing()
        for service in self.services:
            service.start_observing()

    def stop_observing(self) -> None:
        self.platform.stop_observing()
        for service in self.services:
            service.stop_observing()

    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        events = self.platform.events_since(monotonic)
        for service in self.services:
            events += service.events_since(monotonic)
        return sorted(events, key=lambda e: e.monotonic)

    def primary_zone(self) -> str | None:
        """The database primary's zone: from the managed database when there is one."""
        for service in self.services:
            zone = service.primary_zone()
            if zone:
                return zone
        return self.platform.primary_zone()

    # -- faults --------------------------------------------------------------------
    def nemeses_for(self, call: FaultCall) -> list[Nemesis]:
        """The nemeses that inject `call`, or a UserError saying why this target cannot."""
        chosen = [self.nemeses[name] for name in self.composition.nemesis_names(call.fault)]
        for nemesis in chosen:
            why = nemesis.refusal(call)
            if why:
                raise UserError(f"{call.fault} cannot run on the {self.name} target: {why}")
        return chosen

    def check(self, calls: Sequence[FaultCall]) -> None:
        """Refuse, before anything runs, a fault this target would refuse when it came to it."""
        for call in calls:
            if FAULTS[call.fault].touches_target:
                self.nemeses_for(call)

    def inject(self, call: FaultCall, seed: int | None = None, record: Recorder = no_record) -> RollbackStep:
        """Inject through the composition's nemeses, in order; zone 'primary' becomes the database primary's zone.

        With several nemeses the rollback is one `steps` step holding each one's step; if a later
        nemesis fails, the earlier ones are undone before the error goes up.
        """
        chosen = self.nemeses_for(call)
        if call.get("zone") == "primary":
            zone = self.primary_zone()
            if zone:
                call = dataclasses.replace(call, arguments={**call.arguments, "zone": zone})
        done: list[RollbackStep] = []
        for nemesis in chosen:
            def record_this(step: RollbackStep, nemesis: Nemesis = nemesis) -> None:
                record(combined([*done, dataclasses.replace(step, nemesis=nemesis.name)]))
            try:
                step = nemesis.inject(call, seed, record_this)
            except BaseException:
                for earlier in reversed(done):
                    self.rollback(earlier)
                raise
            done.append(dataclasses.replace(step, nemesis=nemesis.name))
            record(combined(done))
        return combined(done)

    def then(self, call: FaultCall, session: FaultSession) -> None:
        """What the run does once `call` is injected, as the (first) nemesis that injected it says: hold it, by
        default; a composite fault does more (e.g. hold_replication kills the primary after its hold)."""
        if not FAULTS[call.fault].touches_target:
            session.hold(session.hold_s)
            return
        self.nemeses_for(call)[0].then(call, session)

    def effects(self, call: FaultCall, step: RollbackStep) -> list["Effect"]:
        """The signals that show `call` took effect, one per nemesis that declares one (given its own step)."""
        if not FAULTS[call.fault].touches_target:
            return []
        parts = [RollbackStep.from_json(p) for p in step.arguments.get("steps", [])] if step.capability == STEPS \
            else [step]
        found = []
        for nemesis in self.nemeses_for(call):
            own = next((p for p in parts if p.nemesis == nemesis.name), parts[0] if len(parts) == 1 else None)
            effect = nemesis.effect(call, own) if own is not None else None
            if effect is not None:
                found.append(effect)
        return found

    def documented(self, call: FaultCall) -> list["Documented"]:
        """How long the documentation says each nemesis' part of `call` takes to take effect."""
        if not FAULTS[call.fault].touches_target:
            return []
        return [d for d in (n.documented(call) for n in self.nemeses_for(call)) if d is not None]

    def rollback(self, step: RollbackStep) -> None:
        """Undo a step through the nemesis that made it (steps from older files: the platform's nemesis).

        A step outside what the operator allows (a forged or stale rollback.json) is refused, untouched.
        """
        if step.capability == STEPS:
            errors = []
            for part in reversed(step.arguments.get("steps", [])):
                try:
                    self.rollback(RollbackStep.from_json(part))
                except Exception as exc:  # noqa: BLE001 - undo the others, then report every failure
                    errors.append(f"{part.get('capability')}: {exc}")
            if errors:
                raise HarnessError("rollback failed: " + "; ".join(errors))
            return
        if step.capability == ROLLBACK_NONE:
            return
        if step.capability == "heal":
            self.heal()
            return
        nemesis = self.nemeses.get(step.nemesis or self.composition.platform)
        if nemesis is None:
            raise UserError(f"rollback step {step.capability!r} was made by the {step.nemesis} nemesis, which the "
                            f"{self.name} target does not have. Run `resilience rollback` with the target the run "
                            f"used (rollback.json names it).")
        why = nemesis.rollback_refusal(step)
        if why:
            raise UserError(f"rollback step {step.capability!r} is outside what this target may touch: {why}. "
                            f"Nothing was done; check rollback.json and the allow-lists in the settings.")
        nemesis.rollback(step)

    def heal(self) -> None:
        """Last resort after a crash mid-inject: every nemesis undoes what it may have left."""
        for nemesis in self.nemeses.values():
            nemesis.heal()

    def plan(self, calls: Sequence[FaultCall], describe_load: Callable[[FaultCall], list[str]] | None = None
             ) -> list[str]:
        """Every step a run would take, without taking any: the deploy/check, then each fault and its rollback.

        Raises the same UserError the run would, for the first fault this target refuses.
        """
        lines = self.platform.plan_up()
        for service in self.services:
            lines += service.plan_up()
        for call in calls:
            if not FAULTS[call.fault].touches_target:
                lines += describe_load(call) if describe_load else [f"{call.fault}: made by the load's stages"]
                continue
            for nemesis in self.nemeses_for(call):
                lines += nemesis.plan(call)
        return lines

    def support(self) -> dict[str, str | None]:
        """For every registered fault: None when this target can inject it, otherwise why not."""
        return support_of(self.composition, {name: type(n) for name, n in self.nemeses.items()})


def combined(steps: Sequence[RollbackStep]) -> RollbackStep:
    """One step, or a `steps` step holding several (a fault made by more than one nemesis)."""
    if len(steps) == 1:
        return steps[0]
    return RollbackStep(STEPS, {"steps": [s.to_json() for s in steps]},
                        "; ".join(s.description for s in steps if s.description))


def support_of(composition: Composition, nemesis_classes: Mapping[str, type[Nemesis]]) -> dict[str, str | None]:
    """What `resilience faults` shows for a composition, from the nemeses' SUPPORT tables (no clients needed)."""
    out: dict[str, str | None] = {}
    for name, fault in FAULTS.items():
        out[name] = None
        if not fault.touches_target:
            continue
        for nemesis_name in composition.nemesis_names(name):
            nemesis = nemesis_classes[nemesis_name]
            why = nemesis.support().get(name, f"the {nemesis.name} nemesis does not know this fault")
            if why:
                out[name] = why
                break
    return out
