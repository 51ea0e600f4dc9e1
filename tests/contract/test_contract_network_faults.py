"""Contract: the network faults on a real cluster (Chaos Mesh) and a real account (AWS FIS on EKS), the scenarios
of tests/integration/test_kubernetes_network_chaos.py and test_aws_fis_network.py.

Against the fakes the path's added latency is modelled; here it is what Chaos Mesh's chaos-daemon and
FIS's ephemeral container really add (tc netem in the API pods), measured the same way: a request that
makes one database round trip (`GET /orders/by-key/<key>`, targets/netpath.py) before and during.

The kubernetes tests need RESILIENCE_CONTRACT_CONTEXT. Where Chaos Mesh is not installed they check the
refusal instead of the fault. The aws test also needs RESILIENCE_CONTRACT_AWS=1, `aws.eks_cluster`,
`aws.fis_role_arn` (mapped to the Kubernetes user fis-experiment) and the ServiceAccount of
`aws.fis_kubernetes_service_account` with its Role in the app's namespace (docs/targets.md).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import contract_support as cs
from contract_support import needs_aws, needs_cluster
from resilience.errors import UserError
from resilience.fault_registry import fault_call

pytestmark = [needs_cluster, pytest.mark.timeout(1800)]

DELAY_MS = 200


def seen(effects: list[Any], timeout_s: float = 120.0) -> dict[str, Any]:
    """Look at the effect until it shows (what the run's effect watch does)."""
    assert effects, "the fault declared no effect: it could never be judged"
    deadline = time.monotonic() + timeout_s
    while True:
        facts = effects[0].look()
        if facts is not None:
            return dict(facts)
        assert time.monotonic() < deadline, f"not seen in {timeout_s:g} s: {effects[0].signal}"
        time.sleep(2)


def chaos_mesh_installed(api: Any) -> bool:
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    try:
        found = client.CustomObjectsApi(api).get_api_resources("chaos-mesh.org", "v1alpha1")
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return any(r.name == "networkchaos" for r in found.resources or [])


def test_reject_is_refused_on_both_cloud_targets(k8s: Any) -> None:
    assert k8s.support()["reject_network"] is not None


def test_a_delay_through_chaos_mesh_is_measured_on_the_path_and_removed(k8s: Any, api: Any, settings: Any) -> None:
    """Mirrors test_delay_is_a_network_chaos_measured_on_the_path_and_deleted_on_undo (or, without Chaos Mesh,
    test_refused_while_chaos_mesh_is_not_installed)."""
    call = fault_call("delay_network", {"delay_ms": DELAY_MS})
    if not chaos_mesh_installed(api):
        with pytest.raises(UserError, match="Chaos Mesh is not installed"):
            k8s.inject(call)
        return
    from kubernetes import client
    step = k8s.inject(call)
    try:
        facts = seen(k8s.effects(call, step))
        assert facts["injected_rtt_ms"] >= DELAY_MS / 2, facts
    finally:
        k8s.rollback(step)
    ns = settings.kubernetes.namespace
    names = [i["metadata"]["name"] for i in client.CustomObjectsApi(api).list_namespaced_custom_object(
        "chaos-mesh.org", "v1alpha1", ns, "networkchaos").get("items", [])]
    assert step.arguments["name"] not in names


@needs_aws
def test_a_delay_through_fis_on_eks_is_measured_on_the_path_and_stopped(settings: Any, contract_context: str) -> None:
    """Mirrors test_delay_is_a_fis_pod_latency_experiment_measured_on_the_path."""
    if not settings.aws.eks_cluster:
        pytest.fail("aws.eks_cluster is not set in the settings: FIS's EKS pod actions name the cluster")
    from resilience.targets import make_target
    t = make_target("aws", settings, context=contract_context)
    cs.wait_until(lambda: t.status().running, cs.HEALTHY_TIMEOUT_S, "the platform on EKS to be running")
    call = fault_call("delay_network", {"delay_ms": DELAY_MS})
    step = t.inject(call)
    try:
        facts = seen(t.effects(call, step), timeout_s=300.0)  # FIS pulls its pod image first
        assert facts["injected_rtt_ms"] >= DELAY_MS / 2, facts
    finally:
        t.rollback(step)
    fis = t.services[0].client("fis")
    state = fis.get_experiment(id=step.arguments["experiment_id"])["experiment"]["state"]
    assert state["status"] in ("stopped", "completed"), state
