"""A zone loss on Kubernetes that holds, and a rollback that undoes only what this run did (issue 18 item 3):
the node allow-list, the cordon mark, the guard against new nodes in the lost zone, replica bounds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import KubernetesSettings, Settings  # noqa: E402
from resilience.errors import UserError  # noqa: E402
from resilience.fault_registry import fault_call  # noqa: E402
from resilience.targets.base import RollbackStep  # noqa: E402
from resilience.targets.kubernetes.cordon import CORDONED_BY  # noqa: E402
from resilience.targets.kubernetes.platform import KubernetesPlatform  # noqa: E402
from tests.fakes.kube_api import FakeKubeApi  # noqa: E402
from tests.integration.test_kubernetes_target import (CONTEXT, NS, fake, nemesis, settings, target,  # noqa: E402,F401
                                                      wait_until)


def node(fake: FakeKubeApi, name: str) -> dict:
    found = fake.get("nodes", name)
    assert found is not None, name
    return found


def cordoned(fake: FakeKubeApi, name: str) -> bool:
    return bool(node(fake, name)["spec"].get("unschedulable"))


def mark_of(fake: FakeKubeApi, name: str) -> str | None:
    return node(fake, name)["metadata"].get("annotations", {}).get(CORDONED_BY)


def operator_cordons(fake: FakeKubeApi, name: str, zone: str) -> None:
    """Someone else's cordon: a node added unschedulable, no mark."""
    fake.add_node(name, zone)
    with fake._lock:
        obj = fake.store.require(("api/v1", "nodes", None, name))
        fake.store.put(("api/v1", "nodes", None, name), {**obj, "spec": {"unschedulable": True}})


def test_every_node_the_run_cordons_carries_its_mark_and_only_those_are_uncordoned(
        fake: FakeKubeApi, settings: Settings) -> None:
    t = target(settings)
    t.up()
    operator_cordons(fake, "node-zone-b-ops", "zone-b")
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    mark = step.arguments["mark"]
    assert mark and mark_of(fake, "node-zone-b-1") == mark and cordoned(fake, "node-zone-b-1")
    assert step.arguments["already_cordoned"] == ["node-zone-b-ops"] and mark_of(fake, "node-zone-b-ops") is None
    t.rollback(step)
    assert not cordoned(fake, "node-zone-b-1") and mark_of(fake, "node-zone-b-1") is None
    assert cordoned(fake, "node-zone-b-ops")  # the operator's cordon stands


def test_a_forged_rollback_json_without_already_cordoned_uncordons_nothing_else(
        fake: FakeKubeApi, settings: Settings, tmp_path: Path) -> None:
    """The file claims the operator's node as ours (no `already_cordoned`, a made-up mark): it carries no mark,
    so `resilience rollback` leaves it cordoned; a step with no mark at all is refused outright."""
    from resilience.recheck import replay_rollbacks
    t = target(settings)
    t.up()
    operator_cordons(fake, "node-zone-a-ops", "zone-a")
    steps = [{"fault": "lose_zone", "arguments": {}, "status": "pending",
              "step": {"capability": "restore_zone", "description": "uncordon", "nemesis": "kubernetes",
                       "arguments": arguments}}
             for arguments in ({"zone": "zone-a", "nodes": ["node-zone-a-ops"], "mark": "20260101T000000Z-forged"},
                               {"zone": "zone-a", "nodes": ["node-zone-a-ops"]})]
    (tmp_path / "rollback.json").write_text(json.dumps({"target": "kubernetes", "context": CONTEXT, "config": None,
                                                        "steps": steps}))
    before = len(fake.mutating_requests())
    replay = replay_rollbacks(tmp_path, t)
    assert replay.failed == 1 and "no resilience.dev/cordoned-by mark" in "\n".join(replay.lines)
    assert cordoned(fake, "node-zone-a-ops")
    assert len(fake.mutating_requests()) == before  # not a single write


def test_only_nodes_matching_the_node_selector_are_cordoned(fake: FakeKubeApi) -> None:
    s = Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace=NS,
                                               node_selector="chaos=allowed"))
    fake.add_node("node-zone-b-app", "zone-b", labels={"chaos": "allowed"})
    t = target(s)
    t.up()
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    assert step.arguments["nodes"] == ["node-zone-b-app"] and step.arguments["outside_selector"] == ["node-zone-b-1"]
    assert cordoned(fake, "node-zone-b-app") and not cordoned(fake, "node-zone-b-1")
    assert "chaos=allowed" in "\n".join(t.plan([fault_call("lose_zone", {"zone": "zone-b"})]))
    t.rollback(step)
    assert not cordoned(fake, "node-zone-b-app")


def test_a_node_that_appears_in_the_lost_zone_is_cordoned_until_the_rollback(
        fake: FakeKubeApi, settings: Settings) -> None:
    """Cluster Autoscaler / Karpenter start a fresh node in the lost zone: the guard cordons and marks it
    before it can take the evicted pods, and the rollback uncordons it with the rest."""
    t = target(settings)
    t.up()
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    fake.add_node("node-zone-b-new", "zone-b")
    wait_until(lambda: cordoned(fake, "node-zone-b-new"), 10, "the guard to cordon the new node")
    assert mark_of(fake, "node-zone-b-new") == step.arguments["mark"]
    fake.add_node("node-zone-c-new", "zone-c")  # another zone: none of the guard's business
    t.rollback(step)
    assert not cordoned(fake, "node-zone-b-new") and not cordoned(fake, "node-zone-b-1")
    assert not cordoned(fake, "node-zone-c-new")
    fake.add_node("node-zone-b-later", "zone-b")  # after the rollback the guard is gone
    import time
    time.sleep(1.5)
    assert not cordoned(fake, "node-zone-b-later")


def test_replica_steps_are_bounded_by_the_hpa(fake: FakeKubeApi, settings: Settings) -> None:
    t = target(settings)
    t.up()
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    low, high = platform.replica_bounds()
    assert (low, high) == (6, 50)
    with pytest.raises(UserError, match="outside 6..50"):
        nemesis(t).scale_replicas(0)
    before = len(fake.mutating_requests())
    for replicas in (0, 5, 51, "6", True):
        with pytest.raises(UserError, match="outside what this target may touch"):
            t.rollback(RollbackStep("scale_replicas", {"replicas": replicas}, "", "kubernetes"))
    assert len(fake.mutating_requests()) == before
    t.rollback(RollbackStep("scale_replicas", {"replicas": 7}, "", "kubernetes"))
    assert platform.desired_replicas() == 7


# -- --target kubernetes without AWS (issue 18 item 5) ------------------------------------------------------------
def test_up_against_endpoints_from_the_settings_needs_no_aws(fake: FakeKubeApi) -> None:
    from resilience.targets import make_target
    from resilience.targets.kubernetes.manifests import EXTERNAL_POSTGRES_SERVICE, EXTERNAL_REDIS_SERVICE
    s = Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace=NS,
                                               database_host="pg.internal.example.test",
                                               cache_host="redis.internal.example.test"))
    assert not s.aws.allowed_accounts  # no AWS call would be allowed
    dry = make_target("kubernetes", s, context=CONTEXT, dry_run=True)
    assert "rds:" not in "\n".join(dry.platform.plan_up())
    t = make_target("kubernetes", s, context=CONTEXT)
    assert t.up().running
    pg = fake.get("services", EXTERNAL_POSTGRES_SERVICE, NS)
    redis = fake.get("services", EXTERNAL_REDIS_SERVICE, NS)
    assert pg is not None and pg["spec"]["externalName"] == "pg.internal.example.test"
    assert redis is not None and redis["spec"]["externalName"] == "redis.internal.example.test"


def test_the_hosts_come_both_or_neither() -> None:
    from resilience.config import validate
    for kwargs in ({"database_host": "pg.example.test"}, {"database_host": "pg:5432", "cache_host": "r.example.test"},
                   {"node_selector": "a=b,c d"}):
        with pytest.raises(UserError):
            validate(Settings(kubernetes=KubernetesSettings(**kwargs)))  # type: ignore[arg-type]
    validate(Settings(kubernetes=KubernetesSettings(node_selector="eks.amazonaws.com/nodegroup=app,!spot")))


# -- the load's URL through an Ingress: its host rule and its TLS (issue 18 item 7) ----------------------------
def ingress_url(fake: FakeKubeApi, settings: Settings, annotations: dict | None = None, tls: bool = False) -> str:
    from dataclasses import replace
    from tests.integration.test_kubernetes_target import set_status
    t = target(settings)
    t.up()
    with fake._lock:
        key = ("apis/networking.k8s.io/v1", "ingresses", NS, "school-meals-api")
        obj = fake.store.require(key)
        obj["metadata"].setdefault("annotations", {}).update(annotations or {})
        if tls:
            obj["spec"]["tls"] = [{"hosts": ["meals.example.test"], "secretName": "meals-tls"}]
        fake.store.put(key, obj)
    set_status(fake, "ingresses", "school-meals-api", {"loadBalancer": {"ingress": [{"hostname": "k8s-alb.test"}]}})
    return target(replace(settings)).url()


def test_the_url_names_the_ingress_host_so_requests_carry_it(fake: FakeKubeApi) -> None:
    """Without the Host the rule matches, the ALB answers 404: the URL is the host, resolving to the ALB."""
    s = Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace=NS,
                                               ingress_host="meals.example.test"))
    assert ingress_url(fake, s) == "http://meals.example.test"


def test_an_ingress_with_tls_is_reached_over_https(fake: FakeKubeApi, settings: Settings) -> None:
    assert ingress_url(fake, settings, tls=True) == "https://k8s-alb.test"


def test_an_alb_with_a_certificate_is_reached_over_https(fake: FakeKubeApi) -> None:
    s = Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace=NS,
                                               ingress_host="meals.example.test"))
    url = ingress_url(fake, s, {"alb.ingress.kubernetes.io/listen-ports": '[{"HTTP": 80}, {"HTTPS": 443}]'})
    assert url == "https://meals.example.test"


def test_without_tls_or_host_the_alb_address_over_http(fake: FakeKubeApi, settings: Settings) -> None:
    assert ingress_url(fake, settings) == "http://k8s-alb.test"


def test_a_wildcard_ingress_host_needs_kubernetes_url(fake: FakeKubeApi) -> None:
    s = Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace=NS, ingress_host="*.example.test"))
    with pytest.raises(UserError, match="kubernetes.url"):
        ingress_url(fake, s)


# -- the HPA's hand-over of spec.replicas, with field ownership as on a cluster (issue 18 item 7) ----------------
def test_a_second_up_after_the_hpa_scaled_keeps_its_count_and_meets_no_conflict(fake: FakeKubeApi,
                                                                                 settings: Settings) -> None:
    from resilience.targets.kubernetes.manifests import APP_NAME, MANAGER
    t = target(settings)
    t.up()
    fake.set_metric(APP_NAME, NS, cpu_utilization=140, memory_utilization=40)
    fake.scrape_metrics()
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    wait_until(lambda: platform.desired_replicas() > 6, 10, "the HPA's scale-up")
    scaled = platform.desired_replicas()
    deployment = fake.get("deployments", APP_NAME, NS)
    assert deployment is not None
    owners = {e["manager"]: e["fieldsV1"] for e in deployment["metadata"]["managedFields"]}
    assert owners["kube-controller-manager"]["f:spec"] == {"f:replicas": {}}
    assert "f:replicas" not in owners[MANAGER].get("f:spec", {})
    fake.set_metric(APP_NAME, NS, cpu_utilization=70, memory_utilization=40)  # at target: the HPA keeps its count
    fake.scrape_metrics()
    scaled = platform.desired_replicas()
    t.up()  # would be a 409 if our apply still sent spec.replicas
    assert platform.desired_replicas() == scaled
