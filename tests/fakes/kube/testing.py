"""Helpers for tests of (and with) the fake API server: a real client for it, manifests, waiting on conditions."""

from __future__ import annotations

from typing import Any

from ..waiting import wait_for
from .server import FakeKubeApi
from .store import Obj

__all__ = ["api_client", "deployment", "hpa", "namespace", "pdb", "pods_by_zone", "wait_for", "zone_of_pod"]
ZONE_LABEL = "topology.kubernetes.io/zone"


def api_client(fake: FakeKubeApi) -> Any:
    """The official client, configured for the fake (no kubeconfig involved)."""
    from kubernetes import client
    configuration = client.Configuration()
    configuration.host = fake.url
    return client.ApiClient(configuration)


def deployment(name: str, replicas: int, *, zone_spread: str | None = None, node_taints_policy: str | None = None,
               grace_s: int = 30, labels: dict[str, str] | None = None) -> Obj:
    """A Deployment; `zone_spread` = "DoNotSchedule" / "ScheduleAnyway" adds a maxSkew 1 zone constraint."""
    selector = labels or {"app": name}
    spec: Obj = {"containers": [{"name": "api", "image": "example.test/api:1",
                                 "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}],
                 "terminationGracePeriodSeconds": grace_s}
    if zone_spread:
        constraint: Obj = {"maxSkew": 1, "topologyKey": ZONE_LABEL, "whenUnsatisfiable": zone_spread,
                           "labelSelector": {"matchLabels": selector}}
        if node_taints_policy:
            constraint["nodeTaintsPolicy"] = node_taints_policy
        spec["topologySpreadConstraints"] = [constraint]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": selector},
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": selector}, "spec": spec}}}


def pdb(name: str, selector: dict[str, str], *, min_available: int | str | None = None,
        max_unavailable: int | str | None = None) -> Obj:
    spec: Obj = {"selector": {"matchLabels": selector}}
    if min_available is not None:
        spec["minAvailable"] = min_available
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec}


def hpa(name: str, target: str, *, min_replicas: int, max_replicas: int, cpu_percent: int = 70,
        memory_percent: int | None = None, behavior: Obj | None = None) -> Obj:
    metrics = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                          "averageUtilization": cpu_percent}}}]
    if memory_percent is not None:
        metrics.append({"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "Utilization", "averageUtilization": memory_percent}}})
    spec: Obj = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                 "minReplicas": min_replicas, "maxReplicas": max_replicas, "metrics": metrics}
    if behavior is not None:
        spec["behavior"] = behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": spec}


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def zone_of_pod(fake: FakeKubeApi, pod: Obj) -> str | None:
    node_name = pod.get("spec", {}).get("nodeName")
    node = fake.get("nodes", node_name) if node_name else None
    zone = (node or {}).get("metadata", {}).get("labels", {}).get(ZONE_LABEL)
    return str(zone) if zone is not None else None


def pods_by_zone(fake: FakeKubeApi, ns: str, app: str) -> dict[str | None, int]:
    """Active (not terminating) pods of `app` per zone; None counts Pending pods."""
    counts: dict[str | None, int] = {}
    for pod in fake.objects("pods", ns):
        if pod["metadata"].get("labels", {}).get("app") != app or pod["metadata"].get("deletionTimestamp"):
            continue
        zone = zone_of_pod(fake, pod)
        counts[zone] = counts.get(zone, 0) + 1
    return counts
