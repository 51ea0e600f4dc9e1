"""The fake API server's Eviction API and PodDisruptionBudgets, through the official client.

Follows https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/ (429 Too Many Requests when a
PodDisruptionBudget would be violated, 500 for more than one PDB, graceful termination of evicted pods) and
https://kubernetes.io/docs/tasks/run-application/configure-pdb/ (minAvailable / maxUnavailable, integers and
percentages rounded up, expectedPods from the controller's scale).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from tests.fakes.kube import FakeKubeApi  # noqa: E402
from tests.fakes.kube.testing import api_client, deployment, namespace, pdb  # noqa: E402

NS = "shop"


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    """Manual clock; pods take 10 fake seconds to become Ready, so a replacement is not instantly healthy."""
    with FakeKubeApi(manual_clock=True, pod_start_s=10) as server:
        yield server


def apis(fake: FakeKubeApi) -> tuple[Any, Any, Any]:
    from kubernetes import client
    c = api_client(fake)
    return client.CoreV1Api(c), client.AppsV1Api(c), client.PolicyV1Api(c)


def evict(core: Any, name: str) -> Any:
    from kubernetes import client
    return core.create_namespaced_pod_eviction(name, NS, body=client.V1Eviction(
        metadata=client.V1ObjectMeta(name=name, namespace=NS)))


def ready_pods(fake: FakeKubeApi, app: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in fake.objects("pods", NS)
                  if p["metadata"]["labels"].get("app") == app and not p["metadata"].get("deletionTimestamp")
                  and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])))


def setup_app(fake: FakeKubeApi, replicas: int, **budget: Any) -> tuple[Any, Any, Any]:
    core, apps, policy = apis(fake)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment("web", replicas))
    policy.create_namespaced_pod_disruption_budget(NS, pdb("web", {"app": "web"}, **budget))
    fake.advance(10)  # the first pods become Ready
    return core, apps, policy


def test_eviction_is_refused_with_429_while_the_budget_has_no_room(fake: FakeKubeApi) -> None:
    """A real API server answers 429 TooManyRequests with this Status when the PDB allows no disruption;
    the caller must retry later (https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/)."""
    from kubernetes.client.rest import ApiException
    core, _, policy = setup_app(fake, 3, min_available=2)
    first, second, _ = ready_pods(fake, "web")

    assert evict(core, first) is not None  # 3 healthy, 2 needed: one disruption allowed
    evicted = fake.get("pods", first, NS)
    assert evicted is not None and evicted["metadata"]["deletionTimestamp"]  # terminating, not gone: grace period

    with pytest.raises(ApiException) as info:
        evict(core, second)  # the replacement is not Ready yet: 2 healthy, 2 needed
    assert info.value.status == 429
    body = json.loads(str(info.value.body))
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == 429
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [{"reason": "DisruptionBudget", "message":
                                          "The disruption budget web needs 2 healthy pods and has 2 currently"}]
    assert fake.get("pods", second, NS)["metadata"].get("deletionTimestamp") is None  # type: ignore[index]
    status = policy.read_namespaced_pod_disruption_budget("web", NS).status
    assert (status.current_healthy, status.desired_healthy, status.disruptions_allowed) == (2, 2, 0)

    fake.advance(10)  # the replacement is Ready: room again, and the retry succeeds
    evict(core, second)
    assert fake.get("pods", second, NS)["metadata"]["deletionTimestamp"]  # type: ignore[index]


@pytest.mark.parametrize("budget, replicas, desired_healthy, allowed", [
    ({"min_available": 2}, 3, 2, 1),
    ({"min_available": "50%"}, 5, 3, 2),        # ceil(2.5) of the Deployment's scale
    ({"max_unavailable": 1}, 4, 3, 1),
    ({"max_unavailable": "34%"}, 3, 1, 2),      # ceil(1.02) = 2 may be unavailable
    ({"max_unavailable": 0}, 3, 3, 0),
])
def test_budget_status_follows_the_disruption_controller(fake: FakeKubeApi, budget: dict[str, Any], replicas: int,
                                                         desired_healthy: int, allowed: int) -> None:
    """expectedPods / desiredHealthy / currentHealthy / disruptionsAllowed as the disruption controller computes
    them, percentages rounded up (https://kubernetes.io/docs/tasks/run-application/configure-pdb/)."""
    from kubernetes.client.rest import ApiException
    core, _, policy = setup_app(fake, replicas, **budget)
    status = policy.read_namespaced_pod_disruption_budget("web", NS).status
    assert (status.expected_pods, status.current_healthy) == (replicas, replicas)
    assert (status.desired_healthy, status.disruptions_allowed) == (desired_healthy, allowed)
    pods = ready_pods(fake, "web")
    for name in pods[:allowed]:
        evict(core, name)
    with pytest.raises(ApiException) as info:
        evict(core, pods[allowed])
    assert info.value.status == 429


def test_a_pod_two_budgets_select_cannot_be_evicted(fake: FakeKubeApi) -> None:
    """500: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    (https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/)."""
    from kubernetes.client.rest import ApiException
    core, _, policy = setup_app(fake, 3, max_unavailable=1)
    policy.create_namespaced_pod_disruption_budget(NS, pdb("web-too", {"app": "web"}, max_unavailable=1))
    with pytest.raises(ApiException) as info:
        evict(core, ready_pods(fake, "web")[0])
    assert info.value.status == 500
    assert "more than one PodDisruptionBudget" in json.loads(str(info.value.body))["message"]


def test_pending_pods_and_pods_without_a_budget_are_always_evicted(fake: FakeKubeApi) -> None:
    """No PDB: 200/201 always. A Pending pod is not protected by its budget (nothing runs to disrupt)."""
    core, apps, _ = setup_app(fake, 2, min_available=2)
    apps.create_namespaced_deployment(NS, deployment("batch", 2))
    fake.advance(10)
    for name in [p["metadata"]["name"] for p in fake.objects("pods", NS) if p["metadata"]["labels"]["app"] == "batch"]:
        evict(core, name)
    for node in fake.objects("nodes"):  # nowhere to run: new pods stay Pending
        core.patch_node(node["metadata"]["name"], {"spec": {"unschedulable": True}})
    apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 3}})
    pending = [p for p in fake.objects("pods", NS) if p["status"]["phase"] == "Pending"]
    assert len(pending) == 1
    evict(core, pending[0]["metadata"]["name"])  # 2 healthy, 2 needed, yet allowed: the pod never ran
    assert fake.get("pods", pending[0]["metadata"]["name"], NS) is None  # never started: deleted at once


def test_evictions_can_be_approved_blindly_behind_a_flag() -> None:
    """enforce_pdbs=False restores the old, kinder fake (for tests that do not care about budgets)."""
    with FakeKubeApi(manual_clock=True, pod_start_s=10, enforce_pdbs=False) as fake:
        core, _, _ = setup_app(fake, 2, min_available=2)
        for name in ready_pods(fake, "web"):
            evict(core, name)


@pytest.mark.parametrize("policy, min_available, allowed", [
    (None, 3, True),              # IfHealthyBudget: 3 healthy >= 3 desired: the unready pod may go
    (None, 4, False),             # 3 healthy < 4 desired: refused like any other
    ("AlwaysAllow", 4, True),     # unready pods may always go
])
def test_unready_pods_follow_the_unhealthy_pod_eviction_policy(fake: FakeKubeApi, policy: str | None,
                                                               min_available: int, allowed: bool) -> None:
    """https://kubernetes.io/docs/tasks/run-application/configure-pdb/#unhealthy-pod-eviction-policy"""
    from kubernetes.client.rest import ApiException
    core, apps, policy_api = setup_app(fake, 3, min_available=min_available)
    if policy:
        policy_api.patch_namespaced_pod_disruption_budget("web", NS, {"spec": {"unhealthyPodEvictionPolicy": policy}})
    ready = set(ready_pods(fake, "web"))
    apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 4}})  # a fourth pod, Running, not Ready yet
    starting = next(p["metadata"]["name"] for p in fake.objects("pods", NS) if p["metadata"]["name"] not in ready)
    assert fake.get("pods", starting, NS)["status"]["phase"] == "Running"  # type: ignore[index]
    if allowed:
        evict(core, starting)
    else:
        with pytest.raises(ApiException) as info:
            evict(core, starting)
        assert info.value.status == 429


def test_an_eviction_reads_the_status_the_disruption_controller_last_wrote(fake: FakeKubeApi) -> None:
    """The eviction subresource spends status.disruptionsAllowed; it never counts pods itself
    (pkg/registry/core/pod/storage/eviction.go, checkAndDecrement). A status that lags the pods decides."""
    from kubernetes.client.rest import ApiException
    core, _, _ = setup_app(fake, 3, min_available=1)  # live: 3 healthy, 1 needed, 2 disruptions
    key = next(k for k, _ in fake.store.items("poddisruptionbudgets", NS))
    with fake._lock:  # the controller has not caught up: its last status still says no room
        stale = fake.store.require(key)
        fake.store.put(key, {**stale, "status": {**stale["status"], "disruptionsAllowed": 0}})
    with pytest.raises(ApiException) as refused:
        evict(core, ready_pods(fake, "web")[0])
    assert refused.value.status == 429
    with fake._lock:  # a spec change the controller has not observed yet: "still being processed"
        current = fake.store.require(key)
        fake.store.put(key, {**current, "spec": {**current["spec"], "minAvailable": 0}})
        assert fake.store.require(key)["metadata"]["generation"] > current["status"]["observedGeneration"]
    with pytest.raises(ApiException) as processing:
        evict(core, ready_pods(fake, "web")[0])
    assert refused.value.status == 429 and "still being processed" in processing.value.body
    first = ready_pods(fake, "web")[0]
    assert evict(core, first) is not None  # the controller's sync after the last request wrote a fresh status
    status = fake.get("poddisruptionbudgets", "web", NS)["status"]  # type: ignore[index]
    assert status["disruptionsAllowed"] == 2  # 2 healthy (1 terminating), 0 needed
