"""Generated Kubernetes manifests: valid against the target version's OpenAPI schemas, and saying what we claim."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest

from resilience.config import AwsSettings, Autoscaling, KubernetesSettings, Settings, StackSettings
from resilience.targets.kubernetes import exposure
from resilience.targets.kubernetes import manifests as m
from resilience.targets.kubernetes import plan
from resilience.targets.kubernetes.platform import busiest_zone
from resilience.errors import UserError

ENDPOINTS = m.BackendEndpoints(postgres_host="db.example.test", redis_host="cache.example.test")
# The local controller's short windows must not leak into the cluster's HPA.
SETTINGS = Settings(stack=StackSettings(replica_cpu_limit=0.75,
                                        autoscaling=Autoscaling(scale_up_pods=6, scale_down_stabilization_s=45)))
VERSIONS = ["1.29", "1.33"]


def with_k8s(**changes: Any) -> Settings:
    return dataclasses.replace(SETTINGS, kubernetes=dataclasses.replace(SETTINGS.kubernetes, **changes))


EXPOSURES = {
    "ingress-alb": with_k8s(),
    "ingress-nginx": with_k8s(ingress_class="nginx", ingress_host="meals.example.com"),
    "loadbalancer": with_k8s(expose="loadbalancer", load_balancer_scheme="internet-facing"),
    "cluster-ip": with_k8s(expose="cluster-ip"),
}


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


@pytest.mark.parametrize("exposed", sorted(EXPOSURES))
@pytest.mark.parametrize("backing", ["external", "in-cluster"])
@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(backing: str, version: str, exposed: str) -> None:
    for manifest in m.stack_manifests(EXPOSURES[exposed], backing, ENDPOINTS):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_apply_order_puts_the_load_balancer_before_the_pods() -> None:
    kinds = [x["kind"] for x in m.stack_manifests(SETTINGS, "external", ENDPOINTS)]
    assert kinds[0] == "Namespace"
    # the ALB controller injects its readiness gate only into pods created after the Service and Ingress
    assert kinds.index("Ingress") < kinds.index("Deployment")
    assert max(i for i, k in enumerate(kinds) if k == "NetworkPolicy") < kinds.index("Deployment")


def test_deployment_probes_resources_spread_and_env() -> None:
    deployment = m.deployment_manifest(SETTINGS, "external", ENDPOINTS)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert container["resources"]["limits"]["cpu"] == "750m" == container["resources"]["requests"]["cpu"]
    assert container["command"] == list(m.API_COMMAND)
    spread = pod["topologySpreadConstraints"][0]
    assert (spread["topologyKey"], spread["maxSkew"], spread["whenUnsatisfiable"]) == \
        ("topology.kubernetes.io/zone", 1, "DoNotSchedule")
    # a cordoned zone (taint node.kubernetes.io/unschedulable) must not count as an empty domain
    assert spread["nodeTaintsPolicy"] == "Honor" and "nodeAffinityPolicy" not in spread
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["metadata"]["labels"][m.MANAGED_BY_LABEL] == "resilience"


def test_deployment_leaves_the_replica_count_to_the_hpa() -> None:
    assert "replicas" not in m.deployment_manifest(SETTINGS, "external", ENDPOINTS)["spec"]
    handover = m.replicas_manifest("school-meals")
    assert handover == {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": m.APP_NAME, "namespace": "school-meals"}, "spec": {"replicas": 6}}
    assert plan.item_path(handover) == plan.item_path(m.deployment_manifest(SETTINGS))
    assert m.REPLICAS_MANAGER != m.MANAGER  # a private manager, so that ours can drop the field safely


def env_of(settings: Settings, backing: str = "external") -> dict[str, dict[str, Any]]:
    container = m.deployment_manifest(settings, backing, ENDPOINTS)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def test_credentials_come_from_secrets_and_never_enter_a_url() -> None:
    for backing in ("external", "in-cluster"):
        env = env_of(SETTINGS, backing)
        dsn = str(env["RSL_PG_DSN"]["value"])
        # the kubelet's $(VAR) expansion does not URL-encode: a password with '@' or '/' would break the DSN
        assert "@" not in dsn and "$(" not in dsn and dsn.startswith("postgresql://")
        assert all("$(" not in str(e.get("value", "")) for e in env.values())
        for name, key in (("RSL_PG_USER", "username"), ("RSL_PG_PASSWORD", "password")):
            assert env[name]["valueFrom"]["secretKeyRef"]["key"] == key
    external = env_of(SETTINGS)
    assert external["RSL_PG_DSN"]["value"] == \
        "postgresql://school-meals-postgres:5432/meals?target_session_attrs=read-write"
    assert external["RSL_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == m.DB_CREDENTIALS_SECRET
    assert external["RSL_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == \
        {"name": m.REDIS_AUTH_SECRET, "key": "password", "optional": True}
    odd = dataclasses.replace(ENDPOINTS, database="meals/2024 q1")
    dsn = m.deployment_manifest(SETTINGS, "external", odd)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "/meals%2F2024%20q1?" in next(e["value"] for e in dsn if e["name"] == "RSL_PG_DSN")


def test_elasticache_tls_uses_rediss_to_the_primary_endpoint_whose_certificate_matches() -> None:
    assert Settings().aws.elasticache_tls is True
    assert env_of(SETTINGS)["RSL_REDIS_URL"]["value"] == "rediss://cache.example.test:6379/0"
    plain = dataclasses.replace(SETTINGS, aws=AwsSettings(elasticache_tls=False))
    assert env_of(plain)["RSL_REDIS_URL"]["value"] == "redis://school-meals-redis:6379/0"


def test_in_cluster_backing_points_at_cloudnative_pg_and_redis_sentinel() -> None:
    env = {e["name"]: e for e in m.deployment_manifest(SETTINGS, "in-cluster")["spec"]["template"]["spec"]
           ["containers"][0]["env"]}
    assert env["RSL_PG_DSN"]["value"].startswith("postgresql://school-meals-db-rw:5432/")
    assert env["RSL_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "school-meals-db-app"
    assert env["RSL_REDIS_SENTINELS"]["value"] == "school-meals-redis:26379"
    assert env["RSL_REDIS_MASTER"]["value"] == "mymaster"
    assert env["RSL_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == \
        {"name": "school-meals-redis", "key": "redis-password", "optional": True}
    assert not [x for x in m.stack_manifests(SETTINGS, "in-cluster") if x.get("spec", {}).get("type") == "ExternalName"]


def test_hpa_keeps_the_kubernetes_default_behaviour_unless_the_cluster_settings_set_it() -> None:
    hpa = m.hpa_manifest(SETTINGS)["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (6, 50)
    targets = {x["resource"]["name"]: x["resource"]["target"]["averageUtilization"] for x in hpa["metrics"]}
    assert targets == {"cpu": 70, "memory": 80}
    # stack.autoscaling (45 s scale-down, 6 pods per step) is the local controller's: not the cluster's
    assert "behavior" not in hpa  # Kubernetes defaults: scale-down window 300 s, 100% per 15 s
    tuned = m.hpa_manifest(with_k8s(hpa_scale_down_stabilization_s=60))["spec"]["behavior"]
    assert tuned == {"scaleDown": {"stabilizationWindowSeconds": 60}}  # policies stay the defaults
    both = m.hpa_manifest(with_k8s(hpa_scale_down_stabilization_s=600, hpa_scale_up_stabilization_s=0))
    assert both["spec"]["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 0},
                                        "scaleDown": {"stabilizationWindowSeconds": 600}}
    for version in VERSIONS:
        kubernetes_validate.validate(both, version, strict=True)


def disruptions_allowed(max_unavailable: str, expected: int, healthy: int | None = None) -> int:
    """The disruption controller's arithmetic: maxUnavailable is a percentage of the scale, rounded up
    (kubernetes.io/docs/tasks/run-application/configure-pdb/, "Rounding logic when specifying percentages")."""
    desired_healthy = expected - math.ceil(int(max_unavailable.rstrip("%")) * expected / 100)
    return max(0, (expected if healthy is None else healthy) - desired_healthy)


def test_pdb_scales_with_the_replica_count() -> None:
    spec = by_kind(m.stack_manifests(SETTINGS, "external", ENDPOINTS), "PodDisruptionBudget")["spec"]
    assert "minAvailable" not in spec and spec["maxUnavailable"] == "25%"
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"  # crash-looping pods never block a drain
    allowed = {n: disruptions_allowed(spec["maxUnavailable"], n) for n in (1, 2, 6, 9, 50)}
    assert allowed == {1: 1, 2: 1, 6: 2, 9: 3, 50: 13}  # a single replica can be drained; at 6, 4 stay
    assert disruptions_allowed(spec["maxUnavailable"], 6, healthy=4) == 0  # a further eviction: 429


def test_network_policies() -> None:
    manifests = m.stack_manifests(SETTINGS, "external", ENDPOINTS)
    deny = by_kind(manifests, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    ingress = by_kind(manifests, "NetworkPolicy", "school-meals-api-ingress")["spec"]["ingress"][0]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8000}]
    egress = by_kind(manifests, "NetworkPolicy", "school-meals-api-egress")["spec"]["egress"]
    ports = {p["port"] for rule in egress for p in rule["ports"]}
    assert ports == {53, 5432, 6379}


def api_sources(settings: Settings) -> list[dict[str, Any]]:
    policy = by_kind(m.stack_manifests(settings, "external", ENDPOINTS), "NetworkPolicy", "school-meals-api-ingress")
    return list(policy["spec"]["ingress"][0]["from"])


def namespace_peer(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


@pytest.mark.parametrize("exposed", sorted(EXPOSURES))
def test_the_harness_namespace_and_the_load_balancer_may_reach_the_api(exposed: str) -> None:
    settings = EXPOSURES[exposed]
    sources = api_sources(settings)
    assert {"podSelector": {}} in sources
    assert namespace_peer("school-meals-chaos") in sources  # the game-day CronJob's Locust
    blocks = [x["ipBlock"] for x in sources if "ipBlock" in x]
    if exposed in ("ingress-alb", "loadbalancer"):  # IP targets: traffic from the load balancer's VPC addresses
        assert blocks == [{"cidr": c} for c in settings.kubernetes.load_balancer_source_cidrs]
    else:
        assert blocks == []
    assert (namespace_peer("ingress-nginx") in sources) == (exposed == "ingress-nginx")
    namespace = m.stack_manifests(settings, "external", ENDPOINTS)[0]["metadata"]["labels"]
    assert (namespace.get(exposure.ALB_READINESS_GATE_LABEL) == "enabled") == \
        (exposed in ("ingress-alb", "loadbalancer"))


def test_alb_ingress_targets_pod_ips_and_checks_readiness() -> None:
    manifests = m.stack_manifests(SETTINGS, "external", ENDPOINTS)
    ingress = by_kind(manifests, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert ingress["metadata"]["annotations"] == {
        "alb.ingress.kubernetes.io/scheme": "internal",
        "alb.ingress.kubernetes.io/target-type": "ip",  # the default, instance, needs a NodePort Service
        "alb.ingress.kubernetes.io/healthcheck-path": "/health/ready",
    }
    rule = ingress["spec"]["rules"][0]
    assert "host" not in rule
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = by_kind(manifests, "Service", backend["name"])
    assert service["spec"]["type"] == "ClusterIP"
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_other_ingress_classes_and_the_load_balancer_service() -> None:
    nginx = by_kind(m.stack_manifests(EXPOSURES["ingress-nginx"], "external", ENDPOINTS), "Ingress")
    assert nginx["spec"]["ingressClassName"] == "nginx" and "annotations" not in nginx["metadata"]
    assert nginx["spec"]["rules"][0]["host"] == "meals.example.com"
    lb = m.stack_manifests(EXPOSURES["loadbalancer"], "external", ENDPOINTS)
    assert not [x for x in lb if x["kind"] == "Ingress"]
    service = by_kind(lb, "Service", m.APP_NAME)
    assert service["spec"]["type"] == "LoadBalancer"
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internet-facing"
    plain = m.stack_manifests(EXPOSURES["cluster-ip"], "external", ENDPOINTS)
    assert by_kind(plain, "Service", m.APP_NAME)["spec"]["type"] == "ClusterIP"
    assert not [x for x in plain if x["kind"] == "Ingress"]


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
