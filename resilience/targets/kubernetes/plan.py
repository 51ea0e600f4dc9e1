"""What the Kubernetes target does, as data: API paths, apply steps and chaosk8s calls.

The same values drive both the real run and the dry-run plan, so a plan line
is exactly what would happen: `ChaosCall`s are executed as written, and the
apply lines name the paths the client PATCHes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, cast

from ...errors import UserError
from .manifests import (APP_NAME, APP_SELECTOR, CNPG_CLUSTER_NAME, MANAGED_SELECTOR, MANAGER, REPLICAS_MANAGER,
                        ZONE_LABEL, Manifest, replicas_manifest)



@dataclass(frozen=True)
class ResourceKind:
    """Where the API serves one kind of object."""

    kind: str
    prefix: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str
    namespaced: bool

    def collection_path(self, namespace: str | None) -> str:
        if self.namespaced:
            return f"{self.prefix}/namespaces/{namespace}/{self.plural}"
        return f"{self.prefix}/{self.plural}"

    def item_path(self, name: str, namespace: str | None) -> str:
        return f"{self.collection_path(namespace)}/{name}"


KINDS: dict[str, ResourceKind] = {k.kind: k for k in (
    ResourceKind("Namespace", "/api/v1", "namespaces", False),
    ResourceKind("Service", "/api/v1", "services", True),
    ResourceKind("Deployment", "/apis/apps/v1", "deployments", True),
    ResourceKind("HorizontalPodAutoscaler", "/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    ResourceKind("PodDisruptionBudget", "/apis/policy/v1", "poddisruptionbudgets", True),
    ResourceKind("NetworkPolicy", "/apis/networking.k8s.io/v1", "networkpolicies", True),
    ResourceKind("Ingress", "/apis/networking.k8s.io/v1", "ingresses", True),
)}


def kind_of(manifest: Manifest) -> ResourceKind:
    try:
        return KINDS[manifest["kind"]]
    except KeyError:
        raise UserError(f"manifest kind {manifest.get('kind')!r} is not one the kubernetes target applies; "
                        f"known kinds: {', '.join(KINDS)}.") from None


def item_path(manifest: Manifest) -> str:
    meta = manifest["metadata"]
    return kind_of(manifest).item_path(meta["name"], meta.get("namespace"))


def apply_line(manifest: Manifest, manager: str = MANAGER, force: bool = True) -> str:
    meta = manifest["metadata"]
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    return (f"PATCH {item_path(manifest)}?fieldManager={manager}&force={str(force).lower()} "
            f"(Content-Type: application/apply-patch+yaml): server-side apply {manifest['kind']} {where}")


def replicas_lines(namespace: str) -> list[str]:
    """The replica hand-over around the apply (manifests.replicas_manifest): the HPA owns spec.replicas."""
    handover = replicas_manifest(namespace)
    return [f"GET /apis/apps/v1/namespaces/{namespace}/deployments/{APP_NAME}: if it exists, "
            + apply_line(handover, REPLICAS_MANAGER, force=False).replace("server-side apply", "first hand over")
            + " with its current spec.replicas (a 409: the HPA owns them, fine)",
            f"after the apply, for a new Deployment only: {apply_line(handover, REPLICAS_MANAGER, force=False)} with "
            f"spec.replicas {handover['spec']['replicas']}"]


def wait_line(namespace: str, timeout_s: float) -> str:
    return (f"GET /apis/apps/v1/namespaces/{namespace}/deployments/{APP_NAME} every 1 s until "
            f"condition Available=True and availableReplicas >= spec.replicas (deadline {timeout_s:.0f} s)")


def delete_lines(manifests: list[Manifest]) -> list[str]:
    """`down()`: delete what carries our managed-by label, the Namespace last."""
    lines = []
    for manifest in reversed(manifests):
        kind = kind_of(manifest)
        if kind.kind == "Namespace":
            continue
        lines.append(f"GET {kind.collection_path(manifest['metadata'].get('namespace'))}"
                     f"?labelSelector={MANAGED_SELECTOR} then DELETE each {kind.kind} found")
    for manifest in manifests:
        if manifest["kind"] == "Namespace":
            lines.append(f"DELETE {item_path(manifest)} (only if it carries {MANAGED_SELECTOR})")
    return _unique(lines)


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))


@dataclass(frozen=True)
class ChaosCall:
    """One chaostoolkit-kubernetes function call; `secrets` (the context) is added when it runs."""

    function: str  # dotted, e.g. "chaosk8s.pod.actions.terminate_pods"
    arguments: dict[str, Any] = field(default_factory=dict)
    api_calls: tuple[str, ...] = ()  # what the function does on the wire (for plans)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.function}({args}, secrets={{'KUBERNETES_CONTEXT': <context>}})"

    def plan_lines(self) -> list[str]:
        return [self.describe(), *(f"  -> {call}" for call in self.api_calls)]

    def run(self, secrets: dict[str, str]) -> Any:
        module_name, _, name = self.function.rpartition(".")
        func = cast(Callable[..., Any], getattr(importlib.import_module(module_name), name))
        return func(**self.arguments, secrets=secrets)


def zone_selector(zone: str) -> str:
    return f"{ZONE_LABEL}={zone}"


def kill_replicas_call(namespace: str, count: int | None, percent: float | None) -> ChaosCall:
    """Delete API pods at random with no grace period (the closest thing to SIGKILL the API offers)."""
    if count is not None and percent is not None:
        raise UserError("kill_replicas: give either 'count' or 'percent', not both.")
    if percent is not None:
        if not 0 < percent <= 100:
            raise UserError(f"kill_replicas: 'percent' must be in (0, 100], got {percent}.")
        mode, qty = "percentage", int(round(percent))
    else:
        mode, qty = "fixed", 1 if count is None else count
        if qty < 1:
            raise UserError(f"kill_replicas: 'count' must be at least 1, got {qty}.")
    return ChaosCall("chaosk8s.pod.actions.terminate_pods",
                     {"label_selector": APP_SELECTOR, "ns": namespace, "rand": True, "mode": mode, "qty": qty,
                      "grace_period": 0},
                     (f"GET /api/v1/namespaces/{namespace}/pods?labelSelector={APP_SELECTOR}",
                      f"DELETE /api/v1/namespaces/{namespace}/pods/<pod> (gracePeriodSeconds=0) for each of "
                      f"{qty}{'%' if mode == 'percentage' else ''} randomly chosen pods"))


def eviction_lines(namespaces: tuple[str, ...], timeout_s: float) -> list[str]:
    """Our own drain, held to the allowed namespaces (chaosk8s drain_nodes evicts every namespace, retries nothing)."""
    return [f"GET /api/v1/namespaces/{ns}/pods?fieldSelector=spec.nodeName=<node> for each cordoned node"
            for ns in namespaces] + [
        "POST /api/v1/namespaces/<ns>/pods/<pod>/eviction for each of those pods (policy/v1 Eviction)",
        f"  a 429 (the pod's PodDisruptionBudget) is retried every {EVICTION_RETRY_S:g} s until "
        f"{timeout_s:g} s (kubernetes.eviction_timeout_s), then recorded as refused; pods of other namespaces "
        f"are never touched"]


EVICTION_RETRY_S = 2.0


def scale_call(namespace: str, replicas: int) -> ChaosCall:
    return ChaosCall("chaosk8s.deployment.actions.scale_deployment",
                     {"name": APP_NAME, "replicas": replicas, "ns": namespace},
                     (f"PATCH /apis/apps/v1/namespaces/{namespace}/deployments/{APP_NAME} "
                      f"{{\"spec\": {{\"replicas\": {replicas}}}}}",))


CNPG_PRIMARY_SELECTOR = f"cnpg.io/cluster={CNPG_CLUSTER_NAME},cnpg.io/instanceRole=primary"


def kill_database_primary_call(namespace: str) -> ChaosCall:
    """In-cluster PostgreSQL only: delete the CloudNativePG primary pod; the operator promotes a standby."""
    return ChaosCall("chaosk8s.pod.actions.terminate_pods",
                     {"label_selector": CNPG_PRIMARY_SELECTOR, "ns": namespace, "qty": 1, "grace_period": 0},
                     (f"GET /api/v1/namespaces/{namespace}/pods?labelSelector={CNPG_PRIMARY_SELECTOR}",
                      f"DELETE /api/v1/namespaces/{namespace}/pods/<primary pod> (gracePeriodSeconds=0)"))
