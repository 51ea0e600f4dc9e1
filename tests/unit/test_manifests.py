"""Generated Kubernetes manifests: valid against the target version's OpenAPI schemas, and saying what we claim."""

from __future__ import annotations

import copy
import dataclasses

import kubernetes_validate
import kubernetes_validate.utils
import pytest

from resilience.config import Autoscaling, KubernetesSettings, Settings, StackSettings
from resilience.targets import manifests as m
from resilience.targets import plan
from resilience.targets.kubernetes import busiest_zone
from resilience.errors import UserError

ENDPOINTS = m.BackendEndpoints(postgres_host="db.example.test", redis_host="cache.example.test")
SETTINGS = Settings(stack=StackSettings(replica_cpu_limit=0.75,
                                        autoscaling=Autoscaling(scale_up_pods=6, scale_down_stabilization_s=45)))


def by_kind(manifests: list[m.Manifest], kind: str, name: str | None = None) -> m.Manifest:
    found = [x for x in manifests if x["kind"] == kind and (name is None or x["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def test_the_validator_ships_the_configured_version_and_catches_mistakes() -> None:
    version = Settings().kubernetes.kubernetes_version
    assert version in {v.rsplit(".", 1)[0] for v in kubernetes_validate.utils.all_versions()}
    bad = copy.deepcopy(m.deployment_manifest(SETTINGS))
    bad["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}  # typo: strict mode must refuse it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, version, strict=True)


@pytest.mark.parametrize("backing", ["external", "in-cluster"])
@pytest.mark.parametrize("version", ["1.29", "1.33"])
def test_every_manifest_validates_strictly(backing: str, version: str) -> None:
    for manifest in m.stack_manifests(SETTINGS, backing, ENDPOINTS):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_deployment_probes_resources_spread_and_env() -> None:
    deployment = m.deployment_manifest(SETTINGS, "external", ENDPOINTS)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert container["resources"]["limits"]["cpu"] == "750m" == container["resources"]["requests"]["cpu"]
    spread = pod["topologySpreadConstraints"][0]
    assert (spread["topologyKey"], spread["maxSkew"], spread["whenUnsatisfiable"]) == \
        ("topology.kubernetes.io/zone", 1, "DoNotSchedule")
    env = {e["name"]: e for e in container["env"]}
    assert "@school-meals-postgres:5432/meals" in env["RSL_PG_DSN"]["value"]
    assert env["RSL_REDIS_URL"]["value"] == "redis://school-meals-redis:6379/0"
    assert env["PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == m.DB_CREDENTIALS_SECRET
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["metadata"]["labels"][m.MANAGED_BY_LABEL] == "resilience"


def test_in_cluster_backing_points_at_cloudnative_pg_and_redis_sentinel() -> None:
    env = {e["name"]: e for e in m.deployment_manifest(SETTINGS, "in-cluster")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert "@school-meals-db-rw:5432/" in env["RSL_PG_DSN"]["value"]
    assert env["RSL_REDIS_SENTINELS"]["value"] == "school-meals-redis:26379"
    assert env["RSL_REDIS_MASTER"]["value"] == "mymaster"
    assert not [x for x in m.stack_manifests(SETTINGS, "in-cluster") if x.get("spec", {}).get("type") == "ExternalName"]


def test_hpa_uses_the_platform_objectives_and_behaviour_from_settings() -> None:
    hpa = m.hpa_manifest(SETTINGS)["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (6, 50)
    targets = {x["resource"]["name"]: x["resource"]["target"]["averageUtilization"] for x in hpa["metrics"]}
    assert targets == {"cpu": 70, "memory": 80}
    up = {p["type"]: p["value"] for p in hpa["behavior"]["scaleUp"]["policies"]}
    assert up == {"Percent": 100, "Pods": 6}
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 45


def test_pdb_and_network_policies() -> None:
    manifests = m.stack_manifests(SETTINGS, "external", ENDPOINTS)
    assert by_kind(manifests, "PodDisruptionBudget")["spec"]["minAvailable"] == 4
    deny = by_kind(manifests, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    ingress = by_kind(manifests, "NetworkPolicy", "school-meals-api-ingress")["spec"]["ingress"][0]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8000}]
    egress = by_kind(manifests, "NetworkPolicy", "school-meals-api-egress")["spec"]["egress"]
    ports = {p["port"] for rule in egress for p in rule["ports"]}
    assert ports == {53, 5432, 6379}


def test_external_services_carry_the_endpoints() -> None:
    manifests = m.stack_manifests(SETTINGS, "external", ENDPOINTS)
    assert by_kind(manifests, "Service", "school-meals-postgres")["spec"]["externalName"] == "db.example.test"
    assert manifests[0]["kind"] == "Namespace"
    assert all(x["metadata"]["labels"][m.MANAGED_BY_LABEL] == "resilience" for x in manifests)


def test_namespace_from_settings_everywhere() -> None:
    settings = dataclasses.replace(SETTINGS, kubernetes=KubernetesSettings(namespace="meals-staging"))
    for manifest in m.stack_manifests(settings, "external", ENDPOINTS)[1:]:
        assert manifest["metadata"]["namespace"] == "meals-staging"


def test_cloudnative_pg_cluster() -> None:
    cluster = m.cloudnative_pg_cluster(SETTINGS)
    assert (cluster["apiVersion"], cluster["kind"]) == ("postgresql.cnpg.io/v1", "Cluster")
    assert cluster["spec"]["instances"] == 3 and cluster["spec"]["minSyncReplicas"] == 1
    assert cluster["spec"]["affinity"]["topologyKey"] == "topology.kubernetes.io/zone"


def test_cpu_quantity() -> None:
    assert m.cpu_quantity(0.5) == "500m"
    assert m.cpu_quantity(2) == "2000m"


def test_api_paths() -> None:
    assert plan.item_path(m.namespace_manifest("x")) == "/api/v1/namespaces/x"
    assert plan.item_path(m.hpa_manifest(SETTINGS)) == \
        "/apis/autoscaling/v2/namespaces/school-meals/horizontalpodautoscalers/school-meals-api"


def test_kill_replicas_arguments() -> None:
    assert plan.kill_replicas_call("ns", None, 50).arguments["mode"] == "percentage"
    assert plan.kill_replicas_call("ns", 2, None).arguments["qty"] == 2
    with pytest.raises(UserError):
        plan.kill_replicas_call("ns", 2, 50)
    with pytest.raises(UserError):
        plan.kill_replicas_call("ns", None, 0)


def test_busiest_zone() -> None:
    assert busiest_zone(["b", "a", "b", None]) == "b"
    assert busiest_zone(["b", "a"]) == "a"
    assert busiest_zone([None]) is None
