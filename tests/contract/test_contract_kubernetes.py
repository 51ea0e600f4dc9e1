"""Contract: the kubernetes target on a real cluster, the scenarios of tests/integration/test_kubernetes_target.py.

Each test names the fake-based test it mirrors. Where that test sets state directly in the fake (a
node's `unschedulable`, a pod in another namespace, a Service's status), this one does what an
operator would through the real API: cordons a node, creates a pod and a PodDisruptionBudget,
reads what the Ingress controller or cloud load balancer wrote. Where a real cluster behaves
differently from the fake (a scheduler, an HPA controller, graceful termination, 429s), the test
waits for, or asserts, the real behaviour, and its message says what it needed.

Skipped unless RESILIENCE_CONTRACT_CONTEXT names a kubeconfig context (contract_support.py).
Run against a cluster meant for chaos experiments: it cordons nodes and evicts the platform's pods.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any

import pytest

import contract_support as cs
from contract_support import needs_cluster
from resilience.errors import UserError
from resilience.fault_registry import fault_call
from resilience.targets.base import RollbackStep

pytestmark = [needs_cluster, pytest.mark.timeout(1800)]


def busiest(t: Any) -> str:
    from resilience.targets.kubernetes.platform import busiest_zone
    zone = busiest_zone([c.zone for c in t.status().components])
    assert zone, "no API pod runs on a node labelled topology.kubernetes.io/zone: label the nodes by zone"
    return zone


def with_kubernetes(settings: Any, **changes: Any) -> Any:
    return dataclasses.replace(settings, kubernetes=dataclasses.replace(settings.kubernetes, **changes))


# -- refusal before any client ---------------------------------------------------------------------
def test_a_context_outside_the_allow_list_is_refused_before_any_client(contract_context: str) -> None:
    """Mirrors test_context_not_in_allow_list_is_refused_before_any_request."""
    from resilience.config import Settings
    from resilience.targets.kubernetes.platform import KubernetesPlatform
    with pytest.raises(UserError) as info:
        KubernetesPlatform(Settings(), contract_context)
    assert "kubernetes.allowed_contexts" in str(info.value) and contract_context in str(info.value)


# -- deploy and status -------------------------------------------------------------------------------
def test_up_applies_every_manifest_server_side_and_status_shows_ready_pods_in_every_zone(
        k8s: Any, api: Any, settings: Any, backends: Any) -> None:
    """Mirrors test_up_applies_every_manifest_and_status_shows_pods_in_three_zones. With an adopted namespace
    (kind: the script creates it) this is a fresh deploy, down then up, so the spread over zones starts from
    scratch; a namespace `up` created is not taken down here (the operator's Secret would go with it)."""
    from kubernetes import client
    from resilience.targets.kubernetes import plan
    from resilience.targets.kubernetes.manifests import (APP_NAME, HPA_MIN_REPLICAS, MANAGED_BY_LABEL, MANAGER, ZONE_LABEL,
                                              stack_manifests)
    ns = settings.kubernetes.namespace
    adopted = (cs.core(api).read_namespace(ns).metadata.labels or {}).get(MANAGED_BY_LABEL) != MANAGER
    if adopted:  # a namespace up created would go with down, and the operator's Secret in it
        k8s.down()
        cs.wait_until(lambda: not cs.app_pods(api, ns), 300, f"the API pods in {ns} to be gone after down")
    was_cordoned = cs.cordoned(api)
    zones_of_nodes = {z for n, z in cs.node_zones(api).items() if z and not was_cordoned[n]}

    status = k8s.up()

    for manifest in stack_manifests(settings, "external", backends):
        meta = cs.read_applied(api, manifest).metadata
        if manifest["kind"] == "Namespace" and adopted:
            assert (meta.labels or {}).get(MANAGED_BY_LABEL) != MANAGER  # deployed into, never applied
            continue
        assert (meta.labels or {}).get(MANAGED_BY_LABEL) == MANAGER, plan.item_path(manifest)
        appliers = [f for f in meta.managed_fields or [] if f.manager == MANAGER]
        assert appliers and appliers[0].operation == "Apply", \
            f"{plan.item_path(manifest)} was not written by a server-side apply with field manager {MANAGER!r}"
    stored = cs.deployment(api, ns)
    spread = stored.spec.template.spec.topology_spread_constraints[0]
    assert spread.topology_key == ZONE_LABEL
    assert spread.node_taints_policy == "Honor", \
        "the API server dropped nodeTaintsPolicy (Kubernetes < 1.26, or NodeInclusionPolicyInPodTopologySpread off): " \
        "a cordoned zone would then keep replacements Pending"
    hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(APP_NAME, ns)
    assert hpa.spec.min_replicas == HPA_MIN_REPLICAS

    assert status.running and status.healthy
    desired = stored.spec.replicas
    assert len(status.components) == desired and k8s.ready_replicas() == desired
    assert all(c.address.endswith(":8000") and c.healthy for c in status.components)
    if adopted:  # a fresh deploy: the scheduler spread the replicas from scratch (maxSkew 1 over the zones)
        per_zone = {z: sum(1 for c in status.components if c.zone == z) for z in zones_of_nodes}
        assert status.zones() == zones_of_nodes, f"replicas per zone: {per_zone}"
        assert max(per_zone.values()) - min(per_zone.values()) <= 1, f"replicas per zone: {per_zone}"


# -- pod kill ----------------------------------------------------------------------------------------
def test_kill_replicas_deletes_pods_through_chaosk8s_and_they_are_replaced(k8s: Any, api: Any, settings: Any) -> None:
    """Mirrors test_kill_replicas_deletes_pods_through_chaosk8s_and_they_are_replaced."""
    ns = settings.kubernetes.namespace
    before = cs.live_pod_names(api, ns)
    step = k8s.inject(fault_call("kill_replicas", {"percent": 50}), seed=7)
    try:
        killed = set(step.arguments["killed"])
        assert len(killed) == math.ceil(len(before) * 50 / 100) and killed <= before
        cs.wait_until(lambda: not killed & {p.metadata.name for p in cs.app_pods(api, ns)}, 120,
                      "the killed pods to be gone from the API (deleted with a grace period of 0)")
        cs.wait_until(lambda: cs.platform_healthy(api, ns), 300, "the Deployment to replace the killed pods")
        after = cs.live_pod_names(api, ns)
        assert not killed & after and len(after) == len(before)
    finally:
        k8s.rollback(step)  # "none": nothing to undo


# -- zone loss ---------------------------------------------------------------------------------------
def test_lose_zone_cordons_and_drains_the_zone_and_rollback_uncordons(k8s: Any, api: Any, settings: Any) -> None:
    """Mirrors test_lose_zone_cordons_and_drains_the_zone_and_rollback_uncordons."""
    ns = settings.kubernetes.namespace
    zone = busiest(k8s)
    nodes = cs.zone_nodes(api, zone)
    was_cordoned = cs.cordoned(api)
    schedulable = [n for n in nodes if not was_cordoned[n]]
    on_zone = {f"{ns}/{p.metadata.name}" for p in cs.app_pods(api, ns) if p.spec.node_name in nodes}
    recorded: list[RollbackStep] = []
    step = k8s.inject(fault_call("lose_zone", {"zone": zone}), record=recorded.append)
    try:
        # the nodes to uncordon were recorded (rollback.json) before the first cordon
        assert recorded[0].arguments["nodes"] == schedulable and "evicted" not in recorded[0].arguments
        assert step.arguments["nodes"] == schedulable
        assert step.arguments["already_cordoned"] == sorted(set(nodes) - set(schedulable))
        assert step.arguments["namespaces"] == list(settings.kubernetes.fault_namespaces())
        ours = {p for p in step.arguments["evicted"] + step.arguments["refused"] if p.startswith(f"{ns}/")}
        assert ours == on_zone
        assert step.arguments["refused"] == [], (
            f"evictions still refused after kubernetes.eviction_timeout_s: {step.arguments['refused']}. The "
            f"PodDisruptionBudget allows an eviction only once replacements are ready elsewhere; a replacement left "
            f"Pending usually means the zone spread counts the cordoned nodes (nodeTaintsPolicy: Honor needed)")
        assert all(cs.cordoned(api)[n] for n in nodes)

        def replaced_elsewhere() -> bool:
            pods = cs.app_pods(api, ns)
            return not [p for p in pods if p.spec.node_name in nodes] and cs.platform_healthy(api, ns)
        cs.wait_until(replaced_elsewhere, 420,
                      f"the evicted pods to be replaced outside zone {zone} (a replacement left Pending usually "
                      f"means the zone spread counts the cordoned nodes: topologySpreadConstraints need "
                      f"nodeTaintsPolicy: Honor)")
        assert zone not in k8s.status().zones()
    finally:
        k8s.rollback(step)
    k8s.rollback(step)  # safe twice
    now = cs.cordoned(api)
    assert not [n for n in schedulable if now[n]], "rollback left nodes cordoned that the run had cordoned"


def test_lose_zone_without_a_zone_picks_the_busiest(k8s: Any) -> None:
    """Mirrors test_lose_zone_without_a_zone_picks_the_busiest (the kubernetes target alone has no database zone)."""
    expected = busiest(k8s)
    step = k8s.inject(fault_call("lose_zone", {}))
    try:
        assert step.arguments["zone"] == expected
    finally:
        k8s.rollback(step)


def test_another_namespaces_pods_survive_a_zone_loss(k8s: Any, api: Any) -> None:
    """Mirrors test_another_namespaces_pods_survive_a_zone_loss: a pod of a namespace outside
    kubernetes.allowed_namespaces, on a node of the lost zone, is neither evicted nor deleted."""
    zone = busiest(k8s)
    node = cs.zone_nodes(api, zone)[0]
    cs.ensure_namespace(api, cs.OTHER_NS)
    try:
        cs.core(api).create_namespaced_pod(cs.OTHER_NS, cs.pause_pod("bystander", node, {"app": "bystander"}))
        cs.wait_pod_ready(api, cs.OTHER_NS, "bystander")
        step = k8s.inject(fault_call("lose_zone", {"zone": zone}))
        try:
            touched = [p for p in step.arguments["evicted"] + step.arguments["refused"]
                       if p.startswith(f"{cs.OTHER_NS}/")]
            assert touched == []
            pod = cs.core(api).read_namespaced_pod("bystander", cs.OTHER_NS)
            assert pod.metadata.deletion_timestamp is None and cs.is_ready(pod)
        finally:
            k8s.rollback(step)
    finally:
        cs.delete_namespace(api, cs.OTHER_NS)


def test_a_node_cordoned_before_the_run_stays_cordoned(k8s: Any, api: Any) -> None:
    """Mirrors test_a_node_cordoned_before_the_run_stays_cordoned: the operator cordons a node through the API."""
    zone = busiest(k8s)
    nodes = cs.zone_nodes(api, zone)
    first = nodes[0]
    was = cs.cordoned(api)
    assert not was[first], f"{first} is cordoned already; uncordon it before the contract run"
    cs.set_cordon(api, first, True)
    try:
        step = k8s.inject(fault_call("lose_zone", {"zone": zone}))
        try:
            assert first in step.arguments["already_cordoned"] and first not in step.arguments["nodes"]
            assert step.arguments["nodes"] == [n for n in nodes if n != first and not was[n]]
        finally:
            k8s.rollback(step)
        now = cs.cordoned(api)
        assert now[first] is True, "the operator's cordon must stand after the rollback"
        assert not [n for n in step.arguments["nodes"] if now[n]]
    finally:
        cs.set_cordon(api, first, False)


def test_a_disruption_budget_refusal_is_retried_until_the_deadline_then_recorded(
        k8s: Any, api: Any, settings: Any, contract_context: str, backends: Any) -> None:
    """Mirrors test_evictions_a_disruption_budget_refuses_are_retried_until_the_deadline_then_recorded, with the
    real disruption controller: a pod guarded by a budget with no disruption allowed sits on a node of the lost
    zone, in a second allowed namespace; the API server answers its eviction 429, the fault retries it every 2 s
    until kubernetes.eviction_timeout_s, then records it as refused."""
    from kubernetes import client
    from resilience.targets.kubernetes.plan import EVICTION_RETRY_S
    zone = busiest(k8s)
    node = cs.zone_nodes(api, zone)[0]
    labels = {"app": "guarded"}
    cs.ensure_namespace(api, cs.GUARDED_NS)
    try:
        cs.core(api).create_namespaced_pod(cs.GUARDED_NS, cs.pause_pod("guarded", node, labels))
        client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(cs.GUARDED_NS, {
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded", "labels": dict(cs.SUITE_LABEL)},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}})
        cs.wait_pod_ready(api, cs.GUARDED_NS, "guarded")

        def budget_holds() -> bool:
            pdb = client.PolicyV1Api(api).read_namespaced_pod_disruption_budget("guarded", cs.GUARDED_NS)
            st = pdb.status
            return bool(st and (st.observed_generation or 0) >= (pdb.metadata.generation or 0)
                        and st.current_healthy == 1 and st.disruptions_allowed == 0)
        cs.wait_until(budget_holds, 120, "the disruption controller to compute the guarded pod's budget")

        timeout_s = 10.0
        k = settings.kubernetes
        allowed = with_kubernetes(settings, allowed_namespaces=(*k.fault_namespaces(), cs.GUARDED_NS),
                                  eviction_timeout_s=timeout_s)
        t = cs.kubernetes_target(allowed, contract_context, backends)
        started = time.monotonic()
        step = t.inject(fault_call("lose_zone", {"zone": zone}))
        elapsed = time.monotonic() - started
        try:
            assert cs.GUARDED_NS in step.arguments["namespaces"]
            assert f"{cs.GUARDED_NS}/guarded" in step.arguments["refused"]
            assert elapsed >= timeout_s - EVICTION_RETRY_S, f"refused after {elapsed:.1f} s: not retried"
            pod = cs.core(api).read_namespaced_pod("guarded", cs.GUARDED_NS)
            assert pod.metadata.deletion_timestamp is None, "the budget's pod was evicted anyway"
        finally:
            t.rollback(step)
    finally:
        cs.delete_namespace(api, cs.GUARDED_NS)


def test_a_forged_rollback_step_is_refused_and_nothing_is_touched(k8s: Any, api: Any, settings: Any) -> None:
    """Mirrors test_a_forged_rollback_step_is_refused_and_nothing_is_touched (with a node that is cordoned,
    so that acting on the first forged step would show as an uncordon)."""
    zone = busiest(k8s)
    node = cs.zone_nodes(api, zone)[0]
    limit = settings.kubernetes.max_cordoned_nodes
    cs.set_cordon(api, node, True)
    try:
        before = cs.cordoned(api)
        forged = [RollbackStep("restore_zone", {"zone": zone, "nodes": [node], "already_cordoned": [node]},
                               "", "kubernetes"),
                  RollbackStep("restore_zone", {"zone": zone, "nodes": [f"n{i}" for i in range(limit + 1)]},
                               "", "kubernetes"),
                  RollbackStep("delete_namespace", {"namespace": "kube-system"}, "", "kubernetes")]
        for step in forged:
            with pytest.raises(UserError, match="outside what this target may touch"):
                k8s.rollback(step)
        assert cs.cordoned(api) == before
        assert cs.core(api).read_namespace("kube-system").metadata.deletion_timestamp is None
    finally:
        cs.set_cordon(api, node, False)


def test_a_zone_with_more_nodes_than_allowed_is_refused_before_any_cordon(
        k8s: Any, api: Any, settings: Any, contract_context: str, backends: Any) -> None:
    """Mirrors test_a_zone_with_more_nodes_than_allowed_is_refused_before_any_cordon. The limit is one less than
    the zone's schedulable nodes: 0 on a cluster with one node per zone (kind), below the 1..1000 a settings
    file accepts, but the same check."""
    ns = settings.kubernetes.namespace
    zone = busiest(k8s)
    was = cs.cordoned(api)
    schedulable = [n for n in cs.zone_nodes(api, zone) if not was[n]]
    t = cs.kubernetes_target(with_kubernetes(settings, max_cordoned_nodes=len(schedulable) - 1), contract_context,
                             backends)
    pods = cs.live_pod_names(api, ns)
    with pytest.raises(UserError, match="max_cordoned_nodes"):
        t.inject(fault_call("lose_zone", {"zone": zone}))
    assert cs.cordoned(api) == was and cs.live_pod_names(api, ns) == pods


# -- scale, events, watches --------------------------------------------------------------------------
def test_scale_replicas_and_rollback(k8s: Any, api: Any, settings: Any) -> None:
    """Mirrors test_scale_replicas_and_rollback. A real cluster runs the HPA controller, which owns the
    replica count and moves it back within a sync period (15 s by default); so this checks what chaosk8s
    set and what the rollback restores, not that 3 more replicas become ready."""
    from resilience.targets.kubernetes.nemesis import KubernetesNemesis
    ns = settings.kubernetes.namespace
    nemesis = k8s.nemeses["kubernetes"]
    assert isinstance(nemesis, KubernetesNemesis)
    before = cs.deployment(api, ns).spec.replicas
    step = nemesis.scale_replicas(before + 3)
    try:
        assert cs.deployment(api, ns).spec.replicas == before + 3
    finally:
        k8s.rollback(step)
    assert step.arguments["replicas"] == before
    cs.wait_until(lambda: cs.deployment(api, ns).spec.replicas == before and cs.platform_healthy(api, ns), 300,
                  f"the Deployment back at {before} ready replicas")


def test_events_since_reports_ready_pods_hpa_and_kubernetes_events(
        k8s: Any, api: Any, settings: Any, contract_context: str, backends: Any) -> None:
    """Mirrors test_events_since_reports_ready_pods_hpa_and_kubernetes_events (a fresh target: no observer,
    so events_since samples the HPA and reads the namespace's events). The fake emits `Killing`; a real
    cluster's ReplicaSet controller reports the replacement as `SuccessfulCreate`, asserted here."""
    ns = settings.kubernetes.namespace
    t = cs.kubernetes_target(settings, contract_context, backends)
    start = time.monotonic() - 2  # API timestamps have 1 s resolution
    t.inject(fault_call("kill_replicas", {"count": 1}))
    cs.wait_until(lambda: cs.platform_healthy(api, ns), 300, "the killed pod to be replaced")
    events = t.events_since(start)
    ops = {(e.source, e.op) for e in events}
    assert ("controller", "ready") in ops, ops
    assert ("controller", "replicas") in ops, ops
    assert ("platform", "k8s:SuccessfulCreate") in ops, ops
    assert [e.monotonic for e in events] == sorted(e.monotonic for e in events)


def test_watches_report_replicas_pods_per_zone_and_node_cordons_as_they_happen(
        k8s: Any, api: Any, settings: Any, contract_context: str, backends: Any) -> None:
    """Mirrors test_watches_record_scaling_cordons_and_ready_pods_as_they_happen on a real API server: a cordon
    made by the operator shows as platform/node; a killed pod as controller/replicas (ready down, then back)
    and platform/pods; the HPA's current replicas and metrics, from metrics-server, ride along. The fake's
    scale-up is driven by a metric the test sets; here that needs real load (the CLI's traffic-spike)."""
    from kubernetes import client
    from resilience.targets.kubernetes.manifests import APP_NAME
    ns = settings.kubernetes.namespace
    hpa_api = client.AutoscalingV2Api(api)
    cs.wait_until(lambda: hpa_api.read_namespaced_horizontal_pod_autoscaler(APP_NAME, ns).status.current_metrics,
                  300, "the HPA to report metrics (is metrics-server installed and serving? on kind it needs "
                       "--kubelet-insecure-tls)")
    desired = cs.deployment(api, ns).spec.replicas
    was = cs.cordoned(api)
    node = next(n for n, z in sorted(cs.node_zones(api).items()) if z and not was[n])
    t = cs.kubernetes_target(settings, contract_context, backends)
    start = time.monotonic()
    t.start_observing()

    def seen(op: str, test: Any = lambda d: True, since: float = start) -> list[Any]:
        return [e for e in t.events_since(since) if e.op == op and test(e.detail)]
    try:
        cs.wait_until(lambda: seen("replicas"), 60, "the observer's first controller/replicas record")
        cordoned_at = time.monotonic()
        cs.set_cordon(api, node, True)
        node_events = cs.wait_until(lambda: seen("node", lambda d: d["node"] == node and d["unschedulable"]), 30,
                                    f"a platform/node record of the cordon of {node}")
        assert cordoned_at <= node_events[0].monotonic <= time.monotonic()
        cs.set_cordon(api, node, False)
        cs.wait_until(lambda: seen("node", lambda d: d["node"] == node and not d["unschedulable"]), 30,
                      f"a platform/node record of the uncordon of {node}")
        killed_at = time.monotonic()
        t.inject(fault_call("kill_replicas", {"count": 1}))
        cs.wait_until(lambda: seen("replicas", lambda d: d["ready"] < desired, killed_at), 60,
                      "a controller/replicas record with one replica fewer ready")
        cs.wait_until(lambda: seen("replicas", lambda d: d["ready"] == desired, killed_at), 300,
                      "a controller/replicas record with every replica ready again")
    finally:
        t.stop_observing()
        cs.set_cordon(api, node, False)
    events = t.events_since(start)
    assert [e for e in events if e.op == "watch-error"] == []
    replicas = [e for e in events if e.source == "controller" and e.op == "replicas"]
    assert any(e.detail.get("current") is not None for e in replicas), "the HPA's currentReplicas was never seen"
    assert any(m.get("name") == "cpu" and m.get("average_utilization") is not None
               for e in replicas for m in e.detail.get("metrics", [])), "no HPA CPU metric in the observations"
    per_zone = [e for e in events if e.source == "platform" and e.op == "pods"]
    assert per_zone and sum(per_zone[-1].detail["ready_by_zone"].values()) == desired


# -- refusals, plans, the URL ------------------------------------------------------------------------
def test_database_and_cache_faults_point_to_the_aws_target(k8s: Any) -> None:
    """Mirrors test_database_and_cache_faults_point_to_the_aws_target."""
    from resilience.targets.kubernetes import plan
    if k8s.platform.pods(plan.CNPG_PRIMARY_SELECTOR):
        pytest.skip("this namespace runs a CloudNativePG primary: fail_over_database would really kill it")
    with pytest.raises(UserError, match="--target aws"):
        k8s.inject(fault_call("fail_over_database", {}))
    with pytest.raises(UserError, match="--target aws"):
        k8s.inject(fault_call("stop_cache", {}))


def test_the_plan_names_the_rollback_the_injection_returns(k8s: Any, settings: Any, contract_context: str,
                                                           backends: Any) -> None:
    """Mirrors test_the_plan_names_the_rollback_the_injection_returns and, for the dry run,
    test_dry_run_plans_exact_calls_and_touches_nothing (a dry-run platform has no client at all)."""
    from resilience.targets.kubernetes import plan
    from resilience.targets.kubernetes.manifests import stack_manifests
    zone = busiest(k8s)
    for call in (fault_call("kill_replicas", {"count": 1}), fault_call("lose_zone", {"zone": zone})):
        step = k8s.inject(call)
        try:
            assert f"rollback {step.capability}:" in "\n".join(k8s.plan([call]))
        finally:
            k8s.rollback(step)
    dry = cs.kubernetes_target(settings, contract_context, backends, dry_run=True)
    assert dry.platform._api is None  # nothing to send with
    lines = dry.plan([fault_call("lose_zone", {"zone": zone})])
    for manifest in stack_manifests(settings, "external", backends):
        assert any(line.startswith(f"PATCH {plan.item_path(manifest)}?fieldManager=resilience") for line in lines)


def test_chaosk8s_on_another_server_is_refused(k8s: Any, api: Any, settings: Any, contract_context: str,
                                              backends: Any) -> None:
    """Mirrors test_chaosk8s_on_another_server_is_refused: our client elsewhere, chaosk8s on this cluster."""
    from kubernetes import client
    ns = settings.kubernetes.namespace
    other = client.Configuration()
    other.host = "http://127.0.0.1:9"  # never contacted: the check compares configured hosts only
    t = cs.kubernetes_target(settings, contract_context, backends, api_client=client.ApiClient(other))
    pods = cs.live_pod_names(api, ns)
    with pytest.raises(UserError, match="KUBECONFIG"):
        t.inject(fault_call("kill_replicas", {"count": 1}))
    assert cs.live_pod_names(api, ns) == pods


def reported_url(api: Any, namespace: str) -> str | None:
    """What the Ingress controller or the cloud load balancer wrote into the status, read here independently:
    the Ingress's address first, else a LoadBalancer Service's (with its port when not 80)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    from resilience.targets.kubernetes.manifests import APP_NAME, SERVICE_PORT

    def addresses(obj: Any) -> list[str]:
        balancer = obj.status.load_balancer if obj and obj.status else None
        return [e.hostname or e.ip for e in (balancer.ingress if balancer else None) or [] if e.hostname or e.ip]

    def read_or_none(read: Any) -> Any:
        try:
            return read(APP_NAME, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
    via_ingress = addresses(read_or_none(client.NetworkingV1Api(api).read_namespaced_ingress))
    if via_ingress:
        return f"http://{via_ingress[0]}"
    service = read_or_none(cs.core(api).read_namespaced_service)
    via_service = addresses(service) if service is not None and service.spec.type == "LoadBalancer" else []
    suffix = "" if SERVICE_PORT == 80 else f":{SERVICE_PORT}"
    return f"http://{via_service[0]}{suffix}" if via_service else None


def test_the_load_url_comes_from_the_setting_or_the_status_and_reaches_the_api(
        k8s: Any, api: Any, settings: Any, contract_context: str, backends: Any) -> None:
    """Mirrors test_the_load_url_comes_from_the_setting_or_the_services_status; here the status is written by
    the real Ingress controller or load balancer, and the URL must answer."""
    import httpx
    ns = settings.kubernetes.namespace
    if settings.kubernetes.expose == "cluster-ip":
        reported = reported_url(api, ns)
    else:  # an ALB or NLB takes minutes to be provisioned and written into the status
        reported = cs.wait_until(lambda: reported_url(api, ns), 600, "an address in the status of the Ingress or "
                                 "LoadBalancer Service (is the ingress controller / load balancer controller running?)",
                                 interval_s=5)
    unset = cs.kubernetes_target(with_kubernetes(settings, url=None), contract_context, backends)
    assert unset.platform.public_url() == reported
    if reported is None:
        with pytest.raises(UserError, match="kubernetes.url"):
            unset.url()
    url = k8s.url()  # the setting, else the reported address; neither: the UserError a run exits 2 with
    if settings.kubernetes.url:
        assert url == settings.kubernetes.url.rstrip("/")
    cs.wait_until(lambda: httpx.get(f"{url}/health/ready", timeout=5).status_code == 200, 120,
                  f"GET {url}/health/ready to answer 200 from here (where the load is generated)")
    assert httpx.get(f"{url}/menu", timeout=10).status_code == 200


# -- down (last: later modules deploy again through their fixture) ----------------------------------------
def test_down_deletes_what_it_created_and_an_adopted_namespace_survives(k8s: Any, api: Any, settings: Any) -> None:
    """Mirrors test_an_adopted_namespace_survives_down and test_down_deletes_what_it_created: the namespace
    existed before `up` (with the database Secret the operator put there), so `down` leaves it, and its
    labels, as they were; everything `up` created goes; no node is touched."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    from resilience.targets.kubernetes.manifests import DB_CREDENTIALS_SECRET, MANAGED_BY_LABEL, MANAGED_SELECTOR, MANAGER
    ns = settings.kubernetes.namespace
    labels = dict(cs.core(api).read_namespace(ns).metadata.labels or {})
    if labels.get(MANAGED_BY_LABEL) == MANAGER:
        pytest.skip(f"namespace {ns} was created by `up` (it carries {MANAGED_SELECTOR}): no adopted namespace here; "
                    f"deploy/kind/run-contract.sh creates it beforehand, as an operator does")
    try:
        cs.core(api).read_namespaced_secret(DB_CREDENTIALS_SECRET, ns)
        had_secret = True
    except ApiException as exc:
        if exc.status != 404:
            raise
        had_secret = False
    nodes = set(cs.node_zones(api))
    k8s.down()

    def nothing_of_ours_left() -> bool:
        listings = [cs.core(api).list_namespaced_service, cs.core(api).list_namespaced_pod,
                    client.AppsV1Api(api).list_namespaced_deployment,
                    client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler,
                    client.PolicyV1Api(api).list_namespaced_pod_disruption_budget,
                    client.NetworkingV1Api(api).list_namespaced_network_policy,
                    client.NetworkingV1Api(api).list_namespaced_ingress]
        return all(not listing(ns, label_selector=MANAGED_SELECTOR).items for listing in listings)
    cs.wait_until(nothing_of_ours_left, 180, f"every object labelled {MANAGED_SELECTOR} in {ns} to be gone")
    namespace = cs.core(api).read_namespace(ns)
    assert namespace.status.phase == "Active" and dict(namespace.metadata.labels or {}) == labels
    if had_secret:
        cs.core(api).read_namespaced_secret(DB_CREDENTIALS_SECRET, ns)  # the operator's Secret stays
    assert set(cs.node_zones(api)) == nodes  # never ours to delete


def test_down_deletes_the_namespace_it_created(api: Any, settings: Any, contract_context: str, backends: Any) -> None:
    """Mirrors test_down_deletes_what_it_created for a namespace `up` created (and labelled): `down` deletes it.
    The API's pods need the database Secret, which an operator adds once the namespace exists: copied here
    from the platform's namespace while `up` waits."""
    from kubernetes.client.rest import ApiException
    from resilience.targets.kubernetes.manifests import DB_CREDENTIALS_SECRET, MANAGED_BY_LABEL, MANAGER
    secret = cs.core(api).read_namespaced_secret(DB_CREDENTIALS_SECRET, settings.kubernetes.namespace)

    def absent() -> bool:
        try:
            ns = cs.core(api).read_namespace(cs.OWNED_NS)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        assert (ns.metadata.labels or {}).get(MANAGED_BY_LABEL) == MANAGER, \
            f"namespace {cs.OWNED_NS} exists and is not one `up` created: remove it before the contract run"
        cs.delete_namespace(api, cs.OWNED_NS)  # left by an earlier, interrupted run
        return False
    cs.wait_until(absent, 300, f"namespace {cs.OWNED_NS} to be absent before the test")

    owned = with_kubernetes(settings, namespace=cs.OWNED_NS, allowed_namespaces=(), expose="cluster-ip")  # no Ingress
    t = cs.kubernetes_target(owned, contract_context, backends)
    errors: list[BaseException] = []

    def up() -> None:
        try:
            t.up()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
    thread = threading.Thread(target=up, name="contract-up", daemon=True)
    thread.start()
    try:
        cs.wait_until(lambda: cs.core(api).read_namespace(cs.OWNED_NS), 120, f"up to create namespace {cs.OWNED_NS}")
        cs.core(api).create_namespaced_secret(cs.OWNED_NS, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": DB_CREDENTIALS_SECRET},
            "type": secret.type, "data": secret.data})
        thread.join(cs.HEALTHY_TIMEOUT_S + 60)
        assert not thread.is_alive() and not errors, f"up did not finish: {errors}"
        assert (cs.core(api).read_namespace(cs.OWNED_NS).metadata.labels or {}).get(MANAGED_BY_LABEL) == MANAGER
        nodes = set(cs.node_zones(api))
    finally:
        t.down()

    def deleted() -> bool:
        try:
            cs.core(api).read_namespace(cs.OWNED_NS)
        except ApiException as exc:
            return exc.status == 404
        return False
    cs.wait_until(deleted, 300, f"namespace {cs.OWNED_NS}, which up created, to be deleted by down")
    assert set(cs.node_zones(api)) == nodes
