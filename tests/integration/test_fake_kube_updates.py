"""Writes on the fake API server: optimistic concurrency (409 Conflict) and graceful pod termination.

Conflicts follow https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions and the API
conventions' "Concurrency Control and Consistency"
(https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md
#concurrency-control-and-consistency): an update (PUT, or a PATCH that carries metadata.resourceVersion) with
a resourceVersion other than the stored one fails with 409 Conflict, reason Conflict, "the object has been
modified; please apply your changes to the latest version and try again"; without one it is unconditional.

Termination follows https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination :
deletion sets metadata.deletionTimestamp and the grace period, the pod shows as Terminating (and stops being
Ready, so it leaves the Service's endpoints) until the grace period ends; a grace period of 0 deletes at once.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from tests.fakes.kube import FakeKubeApi  # noqa: E402
from tests.fakes.kube.testing import api_client, deployment, namespace, wait_for  # noqa: E402

NS = "meals"
CONFLICT = "the object has been modified; please apply your changes to the latest version and try again"


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(manual_clock=True) as server:
        yield server


def apis(fake: FakeKubeApi) -> tuple[Any, Any]:
    from kubernetes import client
    c = api_client(fake)
    return client.CoreV1Api(c), client.AppsV1Api(c)


def conflict_body(exc: Any) -> dict[str, Any]:
    assert exc.status == 409
    body: dict[str, Any] = json.loads(str(exc.body))
    assert (body["kind"], body["status"], body["code"], body["reason"]) == ("Status", "Failure", 409, "Conflict")
    return body


def test_replace_with_a_stale_resource_version_is_a_conflict(fake: FakeKubeApi) -> None:
    from kubernetes.client.rest import ApiException
    core, apps = apis(fake)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment("api", 2))
    stale = apps.read_namespaced_deployment("api", NS)
    apps.patch_namespaced_deployment("api", NS, {"spec": {"replicas": 3}})  # someone else writes first

    stale.spec.replicas = 5
    with pytest.raises(ApiException) as info:
        apps.replace_namespaced_deployment("api", NS, stale)
    body = conflict_body(info.value)
    assert body["message"] == f'Operation cannot be fulfilled on deployments.apps "api": {CONFLICT}'
    assert body["details"] == {"name": "api", "group": "apps", "kind": "deployments"}
    assert apps.read_namespaced_deployment("api", NS).spec.replicas == 3

    fresh = apps.read_namespaced_deployment("api", NS)  # re-read, re-apply the change, retry: accepted
    fresh.spec.replicas = 5
    replaced = apps.replace_namespaced_deployment("api", NS, fresh)
    assert replaced.spec.replicas == 5
    assert int(replaced.metadata.resource_version) > int(fresh.metadata.resource_version)


def test_replace_of_a_node_the_cordon_changed_is_a_conflict(fake: FakeKubeApi) -> None:
    """A read-modify-write of a node races with other writers (the node lifecycle controller adds the
    unschedulable taint right after a cordon): the stale write is refused."""
    from kubernetes.client.rest import ApiException
    core, _ = apis(fake)
    node = core.read_node("node-zone-a-1")
    core.patch_node("node-zone-a-1", {"spec": {"unschedulable": True}})
    node.metadata.labels["team"] = "payments"
    with pytest.raises(ApiException) as info:
        core.replace_node("node-zone-a-1", node)
    assert conflict_body(info.value)["message"] == f'Operation cannot be fulfilled on nodes "node-zone-a-1": {CONFLICT}'


def test_a_patch_is_conditional_only_when_it_names_a_resource_version(fake: FakeKubeApi) -> None:
    from kubernetes.client.rest import ApiException
    core, _ = apis(fake)
    old = core.read_node("node-zone-b-1").metadata.resource_version
    core.patch_node("node-zone-b-1", {"metadata": {"labels": {"a": "1"}}})  # no resourceVersion: always applies
    with pytest.raises(ApiException) as info:
        core.patch_node("node-zone-b-1", {"metadata": {"resourceVersion": old, "labels": {"b": "2"}}})
    conflict_body(info.value)
    current = core.read_node("node-zone-b-1").metadata.resource_version
    patched = core.patch_node("node-zone-b-1", {"metadata": {"resourceVersion": current, "labels": {"b": "2"}}})
    assert patched.metadata.labels["b"] == "2"


def test_delete_with_a_stale_precondition_is_a_conflict(fake: FakeKubeApi) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    core, apps = apis(fake)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment("api", 1))
    old = apps.read_namespaced_deployment("api", NS).metadata.resource_version
    apps.patch_namespaced_deployment("api", NS, {"metadata": {"labels": {"x": "y"}}})
    with pytest.raises(ApiException) as info:
        apps.delete_namespaced_deployment("api", NS, body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=old)))
    assert "does not match the ResourceVersion in record" in conflict_body(info.value)["message"]


def pod_of(fake: FakeKubeApi, app: str = "api") -> str:
    return next(p["metadata"]["name"] for p in fake.objects("pods", NS)
                if p["metadata"]["labels"].get("app") == app and not p["metadata"].get("deletionTimestamp"))


def test_a_deleted_pod_terminates_for_its_grace_period(fake: FakeKubeApi) -> None:
    core, apps = apis(fake)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment("api", 2, grace_s=30))
    victim = pod_of(fake)

    answer = core.delete_namespaced_pod(victim, NS)  # no grace period given: the pod's 30 s
    assert answer.metadata.deletion_timestamp is not None and answer.metadata.deletion_grace_period_seconds == 30
    pod = core.read_namespaced_pod(victim, NS)
    assert pod.status.phase == "Running"  # still running: kubectl shows it as Terminating
    assert not any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    deadline = pod.metadata.deletion_timestamp  # now + grace period (nominal on a manual clock)
    assert 25 < (deadline - datetime.now(timezone.utc)).total_seconds() <= 31
    # the Deployment does not count it: a replacement starts at once
    assert apps.read_namespaced_deployment("api", NS).status.ready_replicas == 2
    assert len(fake.objects("pods", NS)) == 3

    fake.advance(29)
    assert fake.get("pods", victim, NS) is not None
    fake.advance(1)
    assert fake.get("pods", victim, NS) is None
    assert len(fake.objects("pods", NS)) == 2


def test_grace_period_zero_deletes_at_once_and_a_shorter_one_wins(fake: FakeKubeApi) -> None:
    core, apps = apis(fake)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment("api", 3, grace_s=30))
    first = pod_of(fake)
    core.delete_namespaced_pod(first, NS, grace_period_seconds=0)
    assert fake.get("pods", first, NS) is None

    second = pod_of(fake)
    core.delete_namespaced_pod(second, NS)  # 30 s
    core.delete_namespaced_pod(second, NS, grace_period_seconds=60)  # cannot lengthen it
    assert fake.get("pods", second, NS)["metadata"]["deletionGracePeriodSeconds"] == 30  # type: ignore[index]
    core.delete_namespaced_pod(second, NS, grace_period_seconds=5)  # can shorten it
    fake.advance(5)
    assert fake.get("pods", second, NS) is None


def test_an_evicted_pod_terminates_gracefully_too(fake: FakeKubeApi) -> None:
    from kubernetes import client
    core, apps = apis(fake)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment("api", 2, grace_s=20))
    victim = pod_of(fake)
    core.create_namespaced_pod_eviction(victim, NS, body=client.V1Eviction(
        metadata=client.V1ObjectMeta(name=victim, namespace=NS)))
    assert fake.get("pods", victim, NS)["metadata"]["deletionGracePeriodSeconds"] == 20  # type: ignore[index]
    fake.advance(20)
    assert fake.get("pods", victim, NS) is None


def test_deleting_a_deployment_collects_its_pods_gracefully(fake: FakeKubeApi) -> None:
    core, apps = apis(fake)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment("api", 2, grace_s=10))
    apps.delete_namespaced_deployment("api", NS)
    pods = fake.objects("pods", NS)
    assert len(pods) == 2 and all(p["metadata"]["deletionTimestamp"] for p in pods)
    fake.advance(10)
    assert fake.objects("pods", NS) == []


def test_on_the_scaled_clock_the_grace_period_passes_by_itself() -> None:
    """time_scale 0.01 (the default): 30 fake seconds are 0.3 s of real time."""
    with FakeKubeApi() as fake:
        core, apps = apis(fake)
        core.create_namespace(namespace(NS))
        apps.create_namespaced_deployment(NS, deployment("api", 1, grace_s=30))
        victim = pod_of(fake)
        started = time.monotonic()
        core.delete_namespaced_pod(victim, NS)
        assert fake.get("pods", victim, NS) is not None
        wait_for(lambda: fake.get("pods", victim, NS) is None, timeout_s=5, what="the grace period to end")
        assert time.monotonic() - started >= 0.3 * 0.9
