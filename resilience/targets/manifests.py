"""Kubernetes manifests for the platform, generated from the stack settings.

Pure functions: settings in, plain dicts (ready for server-side apply) out.
The platform's stated objectives fix some numbers independently of the local
target's defaults: the HPA runs 6-50 replicas on CPU 70% / memory 80%, and the
PodDisruptionBudget keeps at least 4 replicas. The HPA *behaviour* (how fast it
scales) comes from `stack.autoscaling`, like the local autoscaler.

PostgreSQL and Redis are external by default (AWS RDS and ElastiCache, reached
through ExternalName Services so the Deployment never changes when an endpoint
does). `backing="in-cluster"` instead points the API at a CloudNativePG
`Cluster` (`cloudnative_pg_cluster()` generates it) and at the Bitnami Redis
chart installed with Sentinel; operator and chart are installed by the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Settings

Manifest = dict[str, Any]

APP_NAME = "school-meals-api"
PART_OF = "school-meals"
MANAGER = "resilience"  # server-side-apply field manager and managed-by label value
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGER}"
APP_SELECTOR = f"app.kubernetes.io/name={APP_NAME}"
ZONE_LABEL = "topology.kubernetes.io/zone"
API_PORT = 8000
SERVICE_PORT = 80
POSTGRES_PORT = 5432
REDIS_PORT = 6379
SENTINEL_PORT = 26379

# The platform's stated objectives (DESIGN.md), not the local target's defaults.
HPA_MIN_REPLICAS = 6
HPA_MAX_REPLICAS = 50
HPA_CPU_PERCENT = 70
HPA_MEMORY_PERCENT = 80
PDB_MIN_AVAILABLE = 4
MEMORY_PER_REPLICA = "512Mi"

# Well-known names of the in-cluster alternatives (see docs/targets.md).
CNPG_CLUSTER_NAME = "school-meals-db"  # CloudNativePG serves it as <name>-rw, secret <name>-app
REDIS_RELEASE = "school-meals-redis"  # helm install school-meals-redis bitnami/redis --set sentinel.enabled=true
REDIS_MASTER_SET = "mymaster"  # the Bitnami chart's default sentinel.masterSet
INGRESS_NAMESPACE = "ingress-nginx"

EXTERNAL_POSTGRES_SERVICE = "school-meals-postgres"
EXTERNAL_REDIS_SERVICE = "school-meals-redis"
DB_CREDENTIALS_SECRET = "school-meals-db-credentials"  # keys: username, password (created by the operator)


@dataclass(frozen=True)
class BackendEndpoints:
    """Where PostgreSQL and Redis live when they are outside the cluster (RDS, ElastiCache)."""

    postgres_host: str
    redis_host: str
    postgres_port: int = POSTGRES_PORT
    redis_port: int = REDIS_PORT
    database: str = "meals"


def labels(component: str = "api") -> dict[str, str]:
    """Labels on everything we create; `down()` deletes by the managed-by label."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": component,
        MANAGED_BY_LABEL: MANAGER,
    }


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": APP_NAME}


def cpu_quantity(cpus: float) -> str:
    """0.5 -> '500m': Kubernetes CPU quantities in millicores."""
    return f"{round(cpus * 1000)}m"


def _meta(name: str, namespace: str | None, component: str = "api") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(component)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def namespace_manifest(namespace: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(namespace, None, "namespace")}


def _api_env(settings: Settings, backing: str, endpoints: BackendEndpoints | None) -> list[dict[str, Any]]:
    """The platform app's RSL_* variables (resilience/platform/settings.py); secrets by reference only."""
    if backing == "in-cluster":
        secret, pg_host, database = f"{CNPG_CLUSTER_NAME}-app", f"{CNPG_CLUSTER_NAME}-rw", "meals"
        redis_env = [
            {"name": "RSL_REDIS_SENTINELS", "value": f"{REDIS_RELEASE}:{SENTINEL_PORT}"},
            {"name": "RSL_REDIS_MASTER", "value": REDIS_MASTER_SET},
        ]
        pg_port = POSTGRES_PORT
    else:
        ep = endpoints or placeholder_endpoints(settings)
        secret, pg_host, database, pg_port = DB_CREDENTIALS_SECRET, EXTERNAL_POSTGRES_SERVICE, ep.database, ep.postgres_port
        redis_env = [{"name": "RSL_REDIS_URL", "value": f"redis://{EXTERNAL_REDIS_SERVICE}:{ep.redis_port}/0"}]
    return [
        {"name": "RSL_REPLICA", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "PG_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
        {"name": "PG_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
        # $(VAR) is expanded by the kubelet from the variables defined above.
        {"name": "RSL_PG_DSN",
         "value": f"postgresql://$(PG_USER):$(PG_PASSWORD)@{pg_host}:{pg_port}/{database}"
                  "?target_session_attrs=read-write"},
        *redis_env,
    ]


def deployment_manifest(settings: Settings, backing: str = "external",
                        endpoints: BackendEndpoints | None = None) -> Manifest:
    """The API Deployment: probes, Guaranteed resources, zone spread, zero-downtime rollout.

    CPU request equals the limit so the HPA's utilisation (relative to the
    request) means the same as the local autoscaler's (relative to the limit).
    """
    k8s = settings.kubernetes
    cpu = cpu_quantity(settings.stack.replica_cpu_limit)
    resources = {"cpu": cpu, "memory": MEMORY_PER_REPLICA}

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
                "timeoutSeconds": 1, "failureThreshold": failures}

    container = {
        "name": "api",
        "image": k8s.image,
        "ports": [{"name": "http", "containerPort": API_PORT, "protocol": "TCP"}],
        "env": _api_env(settings, backing, endpoints),
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "startupProbe": probe("/health/live", 2, 30),
        "livenessProbe": probe("/health/live", 5, 3),
        "readinessProbe": probe("/health/ready", 2, 2),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(APP_NAME, k8s.namespace),
        "spec": {
            "replicas": HPA_MIN_REPLICAS,
            "selector": {"matchLabels": selector_labels()},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "containers": [container],
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "topologySpreadConstraints": [
                        {"maxSkew": 1, "topologyKey": ZONE_LABEL, "whenUnsatisfiable": "DoNotSchedule",
                         "labelSelector": {"matchLabels": selector_labels()}},
                        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                         "whenUnsatisfiable": "ScheduleAnyway",
                         "labelSelector": {"matchLabels": selector_labels()}},
                    ],
                },
            },
        },
    }


def service_manifest(namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(APP_NAME, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def external_service_manifests(namespace: str, endpoints: BackendEndpoints) -> list[Manifest]:
    """ExternalName Services: stable in-cluster names for the RDS and ElastiCache endpoints."""
    def external(name: str, host: str, component: str) -> Manifest:
        return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace, component),
                "spec": {"type": "ExternalName", "externalName": host}}
    return [external(EXTERNAL_POSTGRES_SERVICE, endpoints.postgres_host, "postgres"),
            external(EXTERNAL_REDIS_SERVICE, endpoints.redis_host, "redis")]


def hpa_manifest(settings: Settings) -> Manifest:
    """autoscaling/v2 HPA: the platform's 6-50 replicas on CPU 70% / memory 80%; behaviour from settings."""
    a = settings.stack.autoscaling

    def utilization(resource: str, percent: int) -> dict[str, Any]:
        return {"type": "Resource",
                "resource": {"name": resource, "target": {"type": "Utilization", "averageUtilization": percent}}}

    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(APP_NAME, settings.kubernetes.namespace),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP_NAME},
            "minReplicas": HPA_MIN_REPLICAS,
            "maxReplicas": HPA_MAX_REPLICAS,
            "metrics": [utilization("cpu", HPA_CPU_PERCENT), utilization("memory", HPA_MEMORY_PERCENT)],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": round(a.scale_up_stabilization_s),
                    "selectPolicy": "Max",
                    "policies": [
                        {"type": "Percent", "value": a.scale_up_percent, "periodSeconds": round(a.scale_up_period_s)},
                        {"type": "Pods", "value": a.scale_up_pods, "periodSeconds": round(a.scale_up_period_s)},
                    ],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": round(a.scale_down_stabilization_s),
                    "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": a.scale_down_percent,
                                  "periodSeconds": round(a.scale_down_period_s)}],
                },
            },
        },
    }


def pdb_manifest(namespace: str) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(APP_NAME, namespace),
        "spec": {"minAvailable": PDB_MIN_AVAILABLE, "selector": {"matchLabels": selector_labels()}},
    }


def network_policy_manifests(namespace: str, backing: str = "external") -> list[Manifest]:
    """Default-deny ingress; the API accepts the ingress controller and its own namespace; API egress to DB, cache, DNS."""
    api_pods = {"matchLabels": selector_labels()}
    deny = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta("default-deny-ingress", namespace, "network-policy"),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    allow_in = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta("school-meals-api-ingress", namespace, "network-policy"),
        "spec": {
            "podSelector": api_pods,
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": INGRESS_NAMESPACE}}},
                    {"podSelector": {}},  # same namespace: in-cluster load generators, port-forward
                ],
                "ports": [{"protocol": "TCP", "port": API_PORT}],
            }],
        },
    }
    dns = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    if backing == "in-cluster":
        data_rules: list[dict[str, Any]] = [
            {"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": CNPG_CLUSTER_NAME}}}],
             "ports": [{"protocol": "TCP", "port": POSTGRES_PORT}]},
            {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": REDIS_RELEASE}}}],
             "ports": [{"protocol": "TCP", "port": REDIS_PORT}, {"protocol": "TCP", "port": SENTINEL_PORT}]},
        ]
    else:  # RDS / ElastiCache addresses are outside the cluster and change on failover: restrict by port
        data_rules = [{"ports": [{"protocol": "TCP", "port": POSTGRES_PORT}, {"protocol": "TCP", "port": REDIS_PORT}]}]
    allow_out = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": _meta("school-meals-api-egress", namespace, "network-policy"),
        "spec": {"podSelector": api_pods, "policyTypes": ["Egress"], "egress": [dns, *data_rules]},
    }
    return [deny, allow_in, allow_out]


def placeholder_endpoints(settings: Settings) -> BackendEndpoints:
    """Stand-in endpoints for plans and offline rendering; `up()` resolves the real ones from AWS."""
    aws = settings.aws
    return BackendEndpoints(postgres_host=f"{aws.rds_cluster}.rds-endpoint.invalid",
                            redis_host=f"{aws.elasticache_group}.elasticache-endpoint.invalid")


def stack_manifests(settings: Settings, backing: str = "external",
                    endpoints: BackendEndpoints | None = None) -> list[Manifest]:
    """Every manifest `up()` applies, in apply order (the Namespace first)."""
    if backing not in ("external", "in-cluster"):
        raise ValueError(f"backing must be 'external' or 'in-cluster', got {backing!r}")
    ns = settings.kubernetes.namespace
    result = [namespace_manifest(ns)]
    if backing == "external":
        result += external_service_manifests(ns, endpoints or placeholder_endpoints(settings))
    result += [deployment_manifest(settings, backing, endpoints), service_manifest(ns), hpa_manifest(settings),
               pdb_manifest(ns), *network_policy_manifests(ns, backing)]
    return result


def cloudnative_pg_cluster(settings: Settings, instances: int = 3, storage: str = "20Gi") -> Manifest:
    """A CloudNativePG `Cluster`: PostgreSQL 15, one instance per zone, synchronous standby if configured."""
    spec: dict[str, Any] = {
        "instances": instances,
        "imageName": "ghcr.io/cloudnative-pg/postgresql:15",
        "primaryUpdateStrategy": "unsupervised",
        "storage": {"size": storage},
        "bootstrap": {"initdb": {"database": "meals", "owner": "app"}},
        "affinity": {"enablePodAntiAffinity": True, "topologyKey": ZONE_LABEL,
                     "podAntiAffinityType": "required"},
    }
    if settings.stack.synchronous_replication:
        spec["minSyncReplicas"] = 1
        spec["maxSyncReplicas"] = 1
    return {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": _meta(CNPG_CLUSTER_NAME, settings.kubernetes.namespace, "postgres"), "spec": spec}
