"""What can be broken on a Kubernetes cluster: the fault modules in kubernetes/faults/, through plan.py.

The same `ChaosCall` values (plan.py) make the dry-run lines and the real calls,
so a plan line is exactly what would happen. The nemesis uses the cluster only
through `ClusterAccess`, which `KubernetesPlatform` gives.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from ...config import Settings
from ...errors import HarnessError, UserError
from ..base import Build, Recorder, RollbackStep, StackStatus, no_record
from ..blast_radius import namespace_problem
from ..fault_module import ModularNemesis
from ...fault_registry import FaultCall
from ..recovery_log import RecoveryLog
from . import plan
from .faults import FAULTS


@runtime_checkable
class ClusterAccess(Protocol):
    """What the kubernetes nemesis and its fault modules use of the cluster (KubernetesPlatform gives it)."""

    settings: Settings
    namespace: str
    recovery: RecoveryLog  # a restore's steps, for the history

    def chaos_secrets(self) -> dict[str, str]: ...
    def core(self) -> Any: ...
    def status(self) -> StackStatus: ...
    def node_zones(self) -> dict[str, str | None]: ...
    def pods(self, label_selector: str) -> list[Any]: ...
    def desired_replicas(self) -> int: ...
    def replica_bounds(self) -> tuple[int, int | None]: ...


class KubernetesNemesis(ModularNemesis):
    name = "kubernetes"
    FAULTS = FAULTS

    @classmethod
    def build(cls, parts: Build) -> "KubernetesNemesis":
        if not isinstance(parts.platform, ClusterAccess):
            raise HarnessError(f"the kubernetes nemesis needs a cluster's platform, not {parts.platform!r}")
        return cls(parts.platform)

    def __init__(self, platform: ClusterAccess) -> None:
        self.platform = platform
        self.namespace = platform.namespace
        self.last_fault_utc: datetime | None = None  # when this nemesis last injected a fault (restore: before it)

    def inject(self, call: FaultCall, seed: int | None = None, record: Recorder = no_record) -> RollbackStep:
        if call.fault != "restore_database":  # the recovery action restores to before a fault, not before itself
            self.last_fault_utc = datetime.now(timezone.utc)
        return super().inject(call, seed, record)

    def common_refusal(self, call: FaultCall) -> str | None:
        return namespace_problem(self.platform.settings, self.namespace)

    def known_steps(self) -> list[str]:
        return [*super().known_steps(), "scale_replicas"]

    # -- scaling: not a fault of the registry, but undone like one ------------------------------------
    def scale_replicas(self, replicas: int) -> RollbackStep:
        """Set the Deployment's replica count (the HPA may move it again); rollback restores the old count."""
        problem = self.replicas_problem(replicas)
        if problem:
            raise UserError(f"scale_replicas: {problem}")
        previous = self.platform.desired_replicas()
        plan.scale_call(self.namespace, replicas).run(self.platform.chaos_secrets())
        return RollbackStep("scale_replicas", {"replicas": previous}, f"scale back to {previous} replicas",
                            nemesis=self.name)

    def replicas_problem(self, replicas: object) -> str | None:
        """A count outside the HPA's [minReplicas, maxReplicas] (no HPA: below 1) would turn the platform off or
        past what its owner allows; a rollback.json step is held to the same bounds."""
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            return f"'replicas' must be a whole number, got {replicas!r}"
        low, high = self.platform.replica_bounds()
        if not low <= replicas <= (high if high is not None else replicas):
            bounds = f"{low}..{high}" if high is not None else f"at least {low}"
            return (f"{replicas} replicas is outside {bounds} (the HorizontalPodAutoscaler's minReplicas.."
                    f"maxReplicas; without one, at least 1)")
        return None

    def rollback_refusal(self, step: RollbackStep) -> str | None:
        if step.capability == "scale_replicas":
            return self.replicas_problem(step.arguments.get("replicas"))
        return super().rollback_refusal(step)

    def rollback(self, step: RollbackStep) -> None:
        if step.capability == "scale_replicas":
            plan.scale_call(self.namespace, int(step.arguments["replicas"])).run(self.platform.chaos_secrets())
            return
        super().rollback(step)
