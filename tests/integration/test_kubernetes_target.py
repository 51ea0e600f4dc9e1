"""The kubernetes target over the wire, with the real client and chaosk8s, against a fake API server."""

from __future__ import annotations

import sys
import time
from typing import Any
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import KubernetesSettings, Settings  # noqa: E402
from resilience.errors import UserError  # noqa: E402
from resilience.targets.base import RollbackStep  # noqa: E402
from resilience.fault_registry import fault_call  # noqa: E402
from resilience.targets.kubernetes.platform import KubernetesPlatform  # noqa: E402
from resilience.targets.kubernetes.nemesis import KubernetesNemesis  # noqa: E402
from resilience.targets.target import COMPOSITIONS, Target  # noqa: E402
from resilience.targets.kubernetes.manifests import APP_NAME, ZONE_LABEL, BackendEndpoints, stack_manifests  # noqa: E402
from resilience.targets.kubernetes import plan  # noqa: E402
from tests.fakes.kube_api import FakeKubeApi  # noqa: E402

CONTEXT = "fake-cluster"
NS = "school-meals"
BACKENDS = BackendEndpoints(postgres_host="db.example.test", redis_host="cache.example.test")


@pytest.fixture
def settings() -> Settings:
    return Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace=NS))


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKubeApi]:
    """A running fake API server and a kubeconfig (via $KUBECONFIG) whose context points at it."""
    server = FakeKubeApi().start()
    try:
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
            "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
            "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": "fake", "user": "tester"}}],
        }
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        monkeypatch.setenv("KUBECONFIG", str(path))
        # chaosk8s calls load_kube_config() without a path, which falls back to the $KUBECONFIG read
        # once when kubernetes.config was first imported; a real run sets $KUBECONFIG before that.
        import kubernetes.config.kube_config as kube_config
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        monkeypatch.delenv("KUBERNETES_CONTEXT", raising=False)
        yield server
    finally:
        server.stop()


def target(settings: Settings, **kwargs: object) -> Target:
    """The kubernetes composition: the platform on the fake API server, faults through chaosk8s."""
    platform = KubernetesPlatform(settings, CONTEXT, backends=BACKENDS, wait_timeout_s=10, echo=lambda line: None,
                                  **kwargs)  # type: ignore[arg-type]
    return Target(COMPOSITIONS["kubernetes"], platform, {"kubernetes": KubernetesNemesis(platform)})


def nemesis(t: Target) -> KubernetesNemesis:
    n = t.nemeses["kubernetes"]
    assert isinstance(n, KubernetesNemesis)
    return n


def test_context_not_in_allow_list_is_refused_before_any_request(fake: FakeKubeApi) -> None:
    with pytest.raises(UserError) as info:
        KubernetesPlatform(Settings(), CONTEXT)
    assert "kubernetes.allowed_contexts" in str(info.value)
    assert CONTEXT in str(info.value)
    assert fake.requests == []


def test_up_applies_every_manifest_and_status_shows_pods_in_three_zones(fake: FakeKubeApi,
                                                                         settings: Settings) -> None:
    t = target(settings)
    status = t.up()
    patched = [r for r in fake.requests if r.method == "PATCH"]
    ours = [r for r in patched if r.query["fieldManager"] == ["resilience"]]
    assert [r.path for r in ours] == [plan.item_path(m) for m in stack_manifests(settings, "external", BACKENDS)]
    assert all(r.content_type == "application/apply-patch+yaml" and r.query.get("force") == ["true"] for r in ours)
    # the Deployment carries no replicas (the HPA owns them): a new one gets its first count from a private manager
    handover = [r for r in patched if r.query["fieldManager"] == ["resilience-replicas"]]
    assert [r.path for r in handover] == [f"/apis/apps/v1/namespaces/{NS}/deployments/{APP_NAME}"]
    assert handover[0].query.get("force", ["false"]) == ["false"] and patched[-1] is handover[0]
    stored = fake.get("deployments", APP_NAME, NS)
    assert stored is not None
    assert stored["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["topologyKey"] == ZONE_LABEL
    assert fake.get("horizontalpodautoscalers", APP_NAME, NS)["spec"]["minReplicas"] == 6  # type: ignore[index]

    assert status.running and status.healthy
    assert len(status.components) == 6
    assert status.zones() == {"zone-a", "zone-b", "zone-c"}
    assert all(c.address.endswith(":8000") for c in status.components)
    assert t.ready_replicas() == 6


def test_down_deletes_what_it_created(fake: FakeKubeApi, settings: Settings) -> None:
    t = target(settings)
    t.up()
    t.down()
    assert fake.objects("deployments") == []
    assert fake.objects("services") == []
    assert fake.objects("namespaces") == []
    assert len(fake.objects("nodes")) == 3  # never ours to delete


def test_kill_replicas_deletes_pods_through_chaosk8s_and_they_are_replaced(fake: FakeKubeApi,
                                                                            settings: Settings) -> None:
    t = target(settings)
    t.up()
    before = {p["metadata"]["name"] for p in fake.objects("pods", NS)}
    step = t.inject(fault_call("kill_replicas", {"percent": 50}), seed=7)
    killed = set(step.arguments["killed"])
    assert len(killed) == 3 and killed <= before
    deletes = [r for r in fake.requests if r.method == "DELETE" and "/pods/" in r.path]
    assert {r.path.rsplit("/", 1)[1] for r in deletes} == killed
    after = {p["metadata"]["name"] for p in fake.objects("pods", NS)}
    assert not killed & after and len(after) == 6
    t.rollback(step)  # "none": nothing to undo


def test_lose_zone_cordons_and_drains_the_zone_and_rollback_uncordons(fake: FakeKubeApi,
                                                                       settings: Settings) -> None:
    t = target(settings)
    t.up()
    recorded: list[RollbackStep] = []
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}), record=recorded.append)
    # the nodes to uncordon were in rollback.json before the first cordon
    assert recorded[0].arguments["nodes"] == ["node-zone-b-1"] and "evicted" not in recorded[0].arguments
    assert step.arguments["nodes"] == ["node-zone-b-1"] and step.arguments["already_cordoned"] == []
    assert step.arguments["namespaces"] == [NS] and len(step.arguments["evicted"]) == 2
    assert step.arguments["refused"] == [] and step.nemesis == "kubernetes"
    node = fake.get("nodes", "node-zone-b-1")
    assert node is not None and node["spec"]["unschedulable"] is True
    assert any(r.path.endswith("/eviction") for r in fake.requests)
    pods = [p for p in fake.objects("pods", NS) if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 6 and all(p["spec"].get("nodeName") != "node-zone-b-1" for p in pods)

    t.rollback(step)
    t.rollback(step)  # safe twice
    node = fake.get("nodes", "node-zone-b-1")
    assert node is not None and node["spec"]["unschedulable"] is False


def test_a_zone_loss_leaves_the_runs_own_load_pods_alone(fake: FakeKubeApi, settings: Settings) -> None:
    """In-cluster load plays the users, who are not in the lost zone: its pods are not evicted."""
    from kubernetes import client
    from resilience.load.cluster_manifests import RUN_LABEL
    t = target(settings)
    t.up()
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    for name, labels in (("load-worker-0", {RUN_LABEL: "run-abc123"}), ("stranger-0", {"app": "stranger"})):
        pod = client.V1Pod(metadata=client.V1ObjectMeta(name=name, namespace=NS, labels=labels),
                           spec=client.V1PodSpec(node_name="node-zone-b-1",
                                                 containers=[client.V1Container(name="c", image="x")]))
        platform.core().create_namespaced_pod(NS, pod)
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    assert f"{NS}/stranger-0" in step.arguments["evicted"]
    assert f"{NS}/load-worker-0" not in step.arguments["evicted"] + step.arguments["refused"]
    load_pod = fake.get("pods", "load-worker-0", NS)
    assert load_pod is not None and not load_pod["metadata"].get("deletionTimestamp")
    t.rollback(step)


def test_another_namespaces_pods_survive_a_zone_loss(fake: FakeKubeApi, settings: Settings) -> None:
    from kubernetes import client
    t = target(settings)
    t.up()
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="billing-0", namespace="billing"),
                       spec=client.V1PodSpec(node_name="node-zone-b-1",
                                             containers=[client.V1Container(name="app", image="billing")]))
    client.CoreV1Api(platform._api).create_namespaced_pod("billing", pod)
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    assert fake.get("pods", "billing-0", "billing") is not None  # never evicted: not an allowed namespace
    assert not [r for r in fake.requests if r.path.startswith("/api/v1/namespaces/billing/")
                and r.method != "GET" and "billing-0" in r.path and r.path.endswith("/eviction")]
    t.rollback(step)


def test_a_node_cordoned_before_the_run_stays_cordoned(fake: FakeKubeApi, settings: Settings) -> None:
    from kubernetes import client
    t = target(settings)
    t.up()
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    client.CoreV1Api(platform._api).patch_node("node-zone-b-1", {"spec": {"unschedulable": True}})
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    assert step.arguments["nodes"] == [] and step.arguments["already_cordoned"] == ["node-zone-b-1"]
    t.rollback(step)
    node = fake.get("nodes", "node-zone-b-1")
    assert node is not None and node["spec"]["unschedulable"] is True  # the operator's cordon stands


def test_a_forged_rollback_step_is_refused_and_nothing_is_touched(fake: FakeKubeApi, settings: Settings) -> None:
    t = target(settings)
    t.up()
    before = len(fake.mutating_requests())
    forged = [RollbackStep("restore_zone", {"zone": "zone-a", "nodes": ["node-zone-a-1"],
                                            "already_cordoned": ["node-zone-a-1"]}, "", "kubernetes"),
              RollbackStep("restore_zone", {"zone": "zone-a", "nodes": [f"n{i}" for i in range(11)]}, "", "kubernetes"),
              RollbackStep("delete_namespace", {"namespace": "kube-system"}, "", "kubernetes")]
    for step in forged:
        with pytest.raises(UserError, match="outside what this target may touch"):
            t.rollback(step)
    assert len(fake.mutating_requests()) == before


def test_a_zone_with_more_nodes_than_allowed_is_refused_before_any_cordon(fake: FakeKubeApi) -> None:
    few = Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace=NS, max_cordoned_nodes=1))
    t = target(few)
    t.up()
    from kubernetes import client
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    node = client.V1Node(metadata=client.V1ObjectMeta(name="node-zone-b-2", labels={ZONE_LABEL: "zone-b"}))
    client.CoreV1Api(platform._api).create_node(node)
    before = len(fake.mutating_requests())
    with pytest.raises(UserError, match="max_cordoned_nodes"):
        t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    assert len(fake.mutating_requests()) == before


def test_lose_zone_without_a_zone_picks_the_busiest(fake: FakeKubeApi, settings: Settings) -> None:
    t = target(settings)
    t.up()
    step = t.inject(fault_call("lose_zone", {}))  # 'primary': the kubernetes platform does not know it
    assert step.arguments["zone"] == "zone-a"  # 2 pods each: the alphabetical first
    t.rollback(step)


def test_scale_replicas_and_rollback(fake: FakeKubeApi, settings: Settings) -> None:
    t = target(settings)
    t.up()
    step = nemesis(t).scale_replicas(9)
    assert t.ready_replicas() == 9
    t.rollback(step)
    assert t.ready_replicas() == 6


def test_events_since_reports_ready_pods_hpa_and_kubernetes_events(fake: FakeKubeApi, settings: Settings) -> None:
    start = time.monotonic() - 2  # API timestamps have 1 s resolution
    t = target(settings)
    t.up()
    t.inject(fault_call("kill_replicas", {"count": 1}))
    events = t.events_since(start)
    ops = {(e.source, e.op) for e in events}
    assert ("controller", "ready") in ops
    assert ("controller", "replicas") in ops
    assert ("platform", "k8s:Killing") in ops
    assert [e.monotonic for e in events] == sorted(e.monotonic for e in events)


def test_database_and_cache_faults_point_to_the_aws_target(fake: FakeKubeApi, settings: Settings) -> None:
    t = target(settings)
    t.up()
    with pytest.raises(UserError, match="--target aws"):
        t.inject(fault_call("fail_over_database", {}))  # no CloudNativePG primary: PostgreSQL is RDS
    with pytest.raises(UserError, match="--target aws"):
        t.inject(fault_call("stop_cache", {}))


def test_dry_run_plans_exact_calls_and_touches_nothing(fake: FakeKubeApi, settings: Settings) -> None:
    platform = KubernetesPlatform(settings, CONTEXT, dry_run=True, backends=BACKENDS, echo=lambda line: None)
    t = Target(COMPOSITIONS["kubernetes"], platform, {"kubernetes": KubernetesNemesis(platform)})
    lines = t.plan([fault_call("lose_zone", {"zone": "zone-a"}), fault_call("kill_replicas", {"percent": 50})])
    for manifest in stack_manifests(settings, "external", BACKENDS):
        assert any(line.startswith(f"PATCH {plan.item_path(manifest)}?fieldManager=resilience") for line in lines)
    text = "\n".join(lines)
    assert "GET /api/v1/nodes?labelSelector=topology.kubernetes.io/zone=zone-a" in text
    assert "PATCH /api/v1/nodes/<node> (merge patch)" in text and "resilience.dev/cordoned-by" in text
    assert "POST /api/v1/namespaces/<ns>/pods/<pod>/eviction" in text and "a 429" in text
    assert "carrying resilience.dev/cordoned-by=<mark>" in text
    assert ("chaosk8s.pod.actions.terminate_pods(label_selector='app.kubernetes.io/name=school-meals-api', "
            "ns='school-meals', rand=True, mode='percentage', qty=50") in text
    assert fake.requests == []  # not even a read


def test_the_plan_names_the_rollback_the_injection_returns(fake: FakeKubeApi, settings: Settings) -> None:
    """Plan/run agreement over the wire: each fault's plan announces the rollback step the real call made."""
    t = target(settings)
    t.up()
    for call in (fault_call("kill_replicas", {"count": 1}), fault_call("lose_zone", {"zone": "zone-c"})):
        step = t.inject(call)
        assert f"rollback {step.capability}:" in "\n".join(t.plan([call]))
        t.rollback(step)


def test_chaosk8s_on_another_server_is_refused(fake: FakeKubeApi, settings: Settings) -> None:
    from kubernetes import client
    other = client.Configuration()
    other.host = "http://127.0.0.1:9"  # never contacted: the check compares configured hosts only
    t = target(settings, api_client=client.ApiClient(other))
    with pytest.raises(UserError, match="KUBECONFIG"):
        t.inject(fault_call("kill_replicas", {"count": 1}))
    assert fake.mutating_requests() == []


def set_status(fake: FakeKubeApi, plural: str, name: str, status: dict[str, object]) -> None:
    """What the cloud load-balancer controller does: write the object's status (the fake serves no /status)."""
    def write() -> None:
        key, obj = next((k, o) for k, o in fake.store.items(plural, NS) if k[3] == name)
        fake.store.update(key, {**obj, "status": status})
    fake.in_controller(write)


def test_the_load_url_comes_from_the_setting_or_the_services_status(fake: FakeKubeApi, settings: Settings) -> None:
    from dataclasses import replace
    t = target(settings)
    t.up()
    with pytest.raises(UserError, match="kubernetes.url"):  # no Ingress, a ClusterIP Service: nothing reachable
        t.url()
    assert t.status().url is None
    set_status(fake, "services", "school-meals-api", {"loadBalancer": {"ingress": [{"hostname": "lb.example.test"}]}})
    assert t.url() == "http://lb.example.test"
    configured = replace(settings, kubernetes=replace(settings.kubernetes, url="https://meals.example.test/"))
    assert target(configured).url() == "https://meals.example.test"


def test_in_cluster_uses_the_pods_service_account(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import config
    loaded: list[object] = []
    monkeypatch.setattr(config, "load_incluster_config", lambda client_configuration=None: loaded.append(1))
    monkeypatch.delenv("CHAOSTOOLKIT_IN_POD", raising=False)
    with pytest.raises(UserError, match="allowed_contexts"):
        KubernetesPlatform(Settings(), "in-cluster")
    allowed = Settings(kubernetes=KubernetesSettings(allowed_contexts=("in-cluster",)))
    platform = KubernetesPlatform(allowed, "in-cluster")
    assert loaded == [1]
    import os
    assert os.environ["CHAOSTOOLKIT_IN_POD"] == "true"  # chaosk8s takes the same service account
    assert platform.url() == "http://school-meals-api.school-meals.svc.cluster.local:80"


def test_an_adopted_namespace_survives_down(fake: FakeKubeApi, settings: Settings) -> None:
    from kubernetes import client
    t = target(settings)
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    client.CoreV1Api(platform._api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=NS, labels={"team": "meals"})))
    t.up()
    t.down()
    namespace = fake.get("namespaces", NS)
    assert namespace is not None and namespace["metadata"]["labels"] == {"team": "meals"}  # untouched, still there
    assert fake.objects("deployments", NS) == []  # what up created is gone


def test_evictions_a_disruption_budget_refuses_are_retried_until_the_deadline_then_recorded(
        fake: FakeKubeApi, settings: Settings) -> None:
    """A 429 is "try again later" (kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/): the zone loss
    retries each refused eviction until kubernetes.eviction_timeout_s, then records what is still refused."""
    from dataclasses import replace
    from kubernetes import client
    short = replace(settings, kubernetes=replace(settings.kubernetes, eviction_timeout_s=3.0))
    t = target(short)
    t.up()
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    client.PolicyV1Api(platform._api).patch_namespaced_pod_disruption_budget(
        APP_NAME, NS, {"spec": {"maxUnavailable": 0}})
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    assert step.arguments["evicted"] == [] and len(step.arguments["refused"]) == 2
    attempts = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/eviction")]
    assert len(attempts) >= 4  # each refused pod was tried again
    node = fake.get("nodes", "node-zone-b-1")
    assert node is not None and node["spec"]["unschedulable"] is True  # the zone is lost either way
    t.rollback(step)


def test_watches_record_scaling_cordons_and_ready_pods_as_they_happen(fake: FakeKubeApi, settings: Settings) -> None:
    """The observer lists, then watches from the list's resourceVersion; each change is an event when it arrives."""
    t = target(settings)
    t.up()
    start = time.monotonic()
    t.start_observing()
    try:
        def seen(source: str, op: str, test: Any = lambda d: True) -> list[Any]:
            return [e for e in t.events_since(start) if (e.source, e.op) == (source, op) and test(e.detail)]

        wait_until(lambda: seen("controller", "replicas"), 10, "the first replica count from the watches")
        fake.set_metric(APP_NAME, NS, cpu_utilization=140, memory_utilization=40)  # twice the 70 % target
        fake.tick()
        wait_until(lambda: seen("controller", "replicas", lambda d: (d["desired"] or 0) > 6), 10,
                   "the HPA's scale-up in the events")
        step = t.inject(fault_call("lose_zone", {"zone": "zone-c"}))
        wait_until(lambda: seen("platform", "node", lambda d: d["node"] == "node-zone-c-1" and d["unschedulable"]),
                   10, "the cordon in the events")
        wait_until(lambda: seen("platform", "pods", lambda d: "zone-c" not in d["ready_by_zone"]), 10,
                   "no ready pod left in zone-c")
        t.rollback(step)
    finally:
        t.stop_observing()
    scale_up = seen("controller", "replicas", lambda d: (d["desired"] or 0) > 6)[0]
    assert start <= scale_up.monotonic <= time.monotonic()
    assert any(m["name"] == "cpu" for m in scale_up.detail["metrics"])
    assert not seen("platform", "watch-error")


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def test_with_an_in_cluster_database_up_needs_no_aws_account(fake: FakeKubeApi) -> None:
    from resilience.targets import make_target
    settings = Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace=NS,
                                                      database="cloudnativepg"))
    t = make_target("kubernetes", settings, context=CONTEXT)  # aws.allowed_accounts is empty: no AWS call allowed
    assert t.up().running
    assert fake.get("deployments", APP_NAME, NS) is not None


def test_events_from_before_the_run_are_not_taken_as_the_runs(fake: FakeKubeApi, settings: Settings) -> None:
    from datetime import datetime, timedelta, timezone
    from kubernetes import client
    t = target(settings)
    t.up()
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    core = client.CoreV1Api(platform._api)

    def event(name: str, at: datetime) -> client.CoreV1Event:
        return client.CoreV1Event(metadata=client.V1ObjectMeta(name=name, namespace=NS), reason=name,
                                  involved_object=client.V1ObjectReference(kind="Pod", name="p", namespace=NS),
                                  last_timestamp=at, message=name, type="Normal")

    core.create_namespaced_event(NS, event("OldNews", datetime.now(timezone.utc) - timedelta(minutes=30)))
    start = time.monotonic()
    t.start_observing()
    try:
        wait_until(lambda: [e for e in t.events_since(start) if e.op == "replicas"], 10, "the watches to list")
        core.create_namespaced_event(NS, event("FreshNews", datetime.now(timezone.utc)))
        wait_until(lambda: [e for e in t.events_since(start) if e.op == "k8s:FreshNews"], 10, "the new event")
    finally:
        t.stop_observing()
    assert not [e for e in t.events_since(start) if e.op == "k8s:OldNews"]


def test_a_forged_rollback_json_is_refused_by_resilience_rollback(fake: FakeKubeApi, settings: Settings,
                                                                   tmp_path: Path) -> None:
    """`resilience rollback` replays rollback.json through the target, which re-checks every step first."""
    import json
    from kubernetes import client
    from resilience.recheck import replay_rollbacks
    t = target(settings)
    t.up()
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    client.CoreV1Api(platform._api).patch_node("node-zone-a-1", {"spec": {"unschedulable": True}})  # the operator's
    forged = {"fault": "lose_zone", "arguments": {}, "status": "pending",
              "step": {"capability": "restore_zone", "description": "uncordon", "nemesis": "kubernetes",
                       "arguments": {"zone": "zone-a", "nodes": ["node-zone-a-1"],
                                     "already_cordoned": ["node-zone-a-1"]}}}
    (tmp_path / "rollback.json").write_text(json.dumps({"target": "kubernetes", "context": CONTEXT, "config": None,
                                                        "steps": [forged]}))
    before = len(fake.mutating_requests())
    replay = replay_rollbacks(tmp_path, t)
    assert replay.failed == 1 and "outside what this target may touch" in "\n".join(replay.lines)
    assert len(fake.mutating_requests()) == before
    node = fake.get("nodes", "node-zone-a-1")
    assert node is not None and node["spec"]["unschedulable"] is True
