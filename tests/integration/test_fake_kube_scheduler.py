"""The fake API server's scheduler: cordons, taints, topology spread and nodeTaintsPolicy, through the client.

Follows https://kubernetes.io/docs/concepts/scheduling-eviction/topology-spread-constraints/ (maxSkew against
the global minimum over eligible domains; nodeTaintsPolicy "If this value is nil, the behavior is equivalent
to the Ignore policy", Honor leaves out nodes whose taints the pod does not tolerate) and
https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/#taint-nodes-by-condition
(a cordoned node carries node.kubernetes.io/unschedulable:NoSchedule).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from tests.fakes.kube import FakeKubeApi  # noqa: E402
from tests.fakes.kube.testing import api_client, deployment, namespace, pods_by_zone  # noqa: E402

NS = "shop"


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(topology_spread=True, manual_clock=True) as server:
        yield server


def apis(fake: FakeKubeApi) -> tuple[Any, Any]:
    from kubernetes import client
    c = api_client(fake)
    return client.CoreV1Api(c), client.AppsV1Api(c)


def lose_zone_b(fake: FakeKubeApi, core: Any) -> list[str]:
    """Cordon zone-b's node and force-delete the pods on it (what a drain amounts to): the replacements' names."""
    core.patch_node("node-zone-b-1", {"spec": {"unschedulable": True}})
    before = {p["metadata"]["name"] for p in fake.objects("pods", NS)}
    for pod in fake.objects("pods", NS):
        if pod["spec"].get("nodeName") == "node-zone-b-1":
            core.delete_namespaced_pod(pod["metadata"]["name"], NS, grace_period_seconds=0)
    return sorted({p["metadata"]["name"] for p in fake.objects("pods", NS)} - before)


def test_cordon_adds_the_unschedulable_taint_and_uncordon_removes_it(fake: FakeKubeApi) -> None:
    core, _ = apis(fake)
    core.patch_node("node-zone-a-1", {"spec": {"unschedulable": True}})
    taints = core.read_node("node-zone-a-1").spec.taints
    assert [(t.key, t.effect) for t in taints] == [("node.kubernetes.io/unschedulable", "NoSchedule")]
    core.patch_node("node-zone-a-1", {"spec": {"unschedulable": False}})
    assert not core.read_node("node-zone-a-1").spec.taints


def test_default_node_taints_policy_leaves_replacements_pending_when_a_zone_is_cordoned(fake: FakeKubeApi) -> None:
    """maxSkew 1 over zones, DoNotSchedule, nodeTaintsPolicy unset (= Ignore): the cordoned zone still counts as
    a domain with 0 pods, so the global minimum is 0 and a third pod in zone-a or zone-c would make skew 3 - 0.
    The replacements stay Pending (PodScheduled=False, Unschedulable) with a FailedScheduling event, until the
    zone is uncordoned; then they are scheduled there."""
    core, apps = apis(fake)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment("api", 6, zone_spread="DoNotSchedule"))
    assert pods_by_zone(fake, NS, "api") == {"zone-a": 2, "zone-b": 2, "zone-c": 2}

    replacements = lose_zone_b(fake, core)
    assert len(replacements) == 2
    assert pods_by_zone(fake, NS, "api") == {"zone-a": 2, "zone-c": 2, None: 2}
    for name in replacements:
        pod = core.read_namespaced_pod(name, NS)
        assert pod.status.phase == "Pending" and pod.spec.node_name is None
        scheduled = next(c for c in pod.status.conditions if c.type == "PodScheduled")
        assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
        assert scheduled.message.startswith("0/3 nodes are available: ")
        assert "1 node(s) were unschedulable" in scheduled.message
        assert "2 node(s) didn't match pod topology spread constraints" in scheduled.message
    events = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={replacements[0]}").items
    assert [(e.reason, e.type) for e in events] == [("FailedScheduling", "Warning")]
    assert apps.read_namespaced_deployment("api", NS).status.ready_replicas == 4

    core.patch_node("node-zone-b-1", {"spec": {"unschedulable": False}})  # retried when nodes change
    assert pods_by_zone(fake, NS, "api") == {"zone-a": 2, "zone-b": 2, "zone-c": 2}
    assert apps.read_namespaced_deployment("api", NS).status.ready_replicas == 6


def test_honor_node_taints_policy_spreads_over_the_zones_left(fake: FakeKubeApi) -> None:
    """nodeTaintsPolicy: Honor leaves the tainted (cordoned) node out of the domains: replacements go to the
    two zones left, keeping them within maxSkew 1 (3 + 3)."""
    core, apps = apis(fake)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment("api", 6, zone_spread="DoNotSchedule",
                                                     node_taints_policy="Honor"))
    lose_zone_b(fake, core)
    assert pods_by_zone(fake, NS, "api") == {"zone-a": 3, "zone-c": 3}
    assert apps.read_namespaced_deployment("api", NS).status.ready_replicas == 6


def test_schedule_anyway_places_the_pods_and_prefers_the_emptiest_zone(fake: FakeKubeApi) -> None:
    core, apps = apis(fake)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment("api", 6, zone_spread="ScheduleAnyway"))
    lose_zone_b(fake, core)
    assert pods_by_zone(fake, NS, "api") == {"zone-a": 3, "zone-c": 3}


def test_untolerated_taints_and_node_selectors_keep_pods_off_nodes(fake: FakeKubeApi) -> None:
    core, apps = apis(fake)
    core.create_namespace(namespace(NS))
    core.patch_node("node-zone-c-1", {"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}})
    apps.create_namespaced_deployment(NS, deployment("api", 4))
    assert pods_by_zone(fake, NS, "api") == {"zone-a": 2, "zone-b": 2}

    pinned = deployment("pinned", 1, labels={"app": "pinned"})
    pinned["spec"]["template"]["spec"]["nodeSelector"] = {"topology.kubernetes.io/zone": "zone-c"}
    apps.create_namespaced_deployment(NS, pinned)
    pod = next(p for p in fake.objects("pods", NS) if p["metadata"]["labels"]["app"] == "pinned")
    message = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")["message"]
    assert "1 node(s) had untolerated taint {dedicated: db}" in message
    assert "2 node(s) didn't match Pod's node affinity/selector" in message

    tolerant = deployment("tolerant", 1, labels={"app": "tolerant"})
    tolerant["spec"]["template"]["spec"]["nodeSelector"] = {"topology.kubernetes.io/zone": "zone-c"}
    tolerant["spec"]["template"]["spec"]["tolerations"] = [{"key": "dedicated", "operator": "Equal", "value": "db",
                                                           "effect": "NoSchedule"}]
    apps.create_namespaced_deployment(NS, tolerant)
    assert pods_by_zone(fake, NS, "tolerant") == {"zone-c": 1}


def test_without_the_flag_topology_spread_is_a_preference_only() -> None:
    """FakeKubeApi(topology_spread=False): DoNotSchedule is not enforced; cordons and taints still are."""
    with FakeKubeApi(topology_spread=False, manual_clock=True) as fake:
        core, apps = apis(fake)
        core.create_namespace(namespace(NS))
        apps.create_namespaced_deployment(NS, deployment("api", 6, zone_spread="DoNotSchedule"))
        lose_zone_b(fake, core)
        assert pods_by_zone(fake, NS, "api") == {"zone-a": 3, "zone-c": 3}


def test_pods_stay_pending_when_their_requests_exceed_what_the_nodes_have_left() -> None:
    """NodeResourcesFit: a node of 1 CPU (allocatable) takes four 250m pods and no fifth; the rest stay
    Pending with "Insufficient cpu" until a node with room appears (as Cluster Autoscaler would add)."""
    with FakeKubeApi(zones=(), manual_clock=True) as fake:
        for zone in ("zone-a", "zone-b"):
            fake.add_node(f"small-{zone}", zone, allocatable={"cpu": "1", "memory": "4Gi", "pods": "110"})
        core, apps = apis(fake)
        core.create_namespace(namespace(NS))
        apps.create_namespaced_deployment(NS, deployment("web", 10))  # 10 x 250m on 2 x 1 CPU: 8 fit
        assert pods_by_zone(fake, NS, "web") == {"zone-a": 4, "zone-b": 4, None: 2}
        pending = [p for p in fake.objects("pods", NS) if not p["spec"].get("nodeName")]
        message = pending[0]["status"]["conditions"][0]["message"]
        assert message.startswith("0/2 nodes are available: 2 Insufficient cpu.")
        fake.add_node("small-zone-c", "zone-c", allocatable={"cpu": "1", "memory": "4Gi", "pods": "110"})
        assert pods_by_zone(fake, NS, "web") == {"zone-a": 4, "zone-b": 4, "zone-c": 2}
