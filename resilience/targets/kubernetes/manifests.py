"""Kubernetes manifests for the platform, generated from the settings.

Pure functions: settings in, plain dicts (ready for server-side apply) out.
The platform's stated objectives fix some numbers independently of the local
target's defaults: the HPA runs 6-50 replicas on CPU 70% / memory 80%, and the
PodDisruptionBudget lets at most 25% of the replicas be disrupted (so at the
minimum of 6, at least 4 stay, as DESIGN.md states). The HPA's behaviour (how
fast it scales) is the Kubernetes default unless `kubernetes.hpa_*` set it: the
local controller's shortened windows (`stack.autoscaling`) are for experiments
on one machine, not for a cluster.

The Deployment carries no `spec.replicas`: the HPA owns it. `up()` sets the
initial count with `replicas_manifest()` under its own field manager
(`REPLICAS_MANAGER`), the hand-over the Kubernetes documentation describes, so
a re-apply never resets the count (see `replicas_manifest`).

PostgreSQL and Redis are external by default (AWS RDS and ElastiCache, reached
through ExternalName Services so the Deployment never changes when an endpoint
does; with ElastiCache in-transit encryption the API names the primary endpoint
itself, whose certificate it verifies). `backing="in-cluster"` instead points
the API at a CloudNativePG `Cluster` (`cloudnative_pg_cluster()` generates it)
and at the Bitnami Redis chart installed with Sentinel; operator and chart are
installed by the user. Exposure (Service, Ingress, NetworkPolicies) is in
`exposure.py`; the harness's RBAC in `rbac.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ...config import Settings
from .exposure import exposure_manifests, external_service_manifests, namespace_labels, network_policy_manifests
# The shared names (re-exported: other modules import them from here too).
from .names import (API_PORT, APP_NAME, APP_SELECTOR, CNPG_CLUSTER_NAME, EXTERNAL_POSTGRES_SERVICE,
                    EXTERNAL_REDIS_SERVICE, MANAGED_BY_LABEL, MANAGED_SELECTOR, MANAGER, PART_OF, POSTGRES_PORT,
                    REDIS_PORT, REDIS_RELEASE, SENTINEL_PORT, SERVICE_PORT, ZONE_LABEL, BackendEndpoints, Manifest,
                    labels, object_meta, selector_labels)

# The API image's entry point (Dockerfile): one uvicorn worker per pod, listening on every address.
API_COMMAND = ("python", "-m", "resilience.platform", "--host", "0.0.0.0", "--port", str(API_PORT))

# The platform's stated objectives (DESIGN.md), not the local target's defaults.
HPA_MIN_REPLICAS = 6
HPA_MAX_REPLICAS = 50
HPA_CPU_PERCENT = 70
HPA_MEMORY_PERCENT = 80
# A percentage scales with the replica count: 6 replicas -> 2 may be evicted at once (4 stay), 50 -> 13;
# a single replica can still be drained. "The use of maxUnavailable is recommended as it automatically
# responds to changes in the number of replicas" (kubernetes.io/docs/tasks/run-application/configure-pdb/).
PDB_MAX_UNAVAILABLE = "25%"
MEMORY_PER_REPLICA = "512Mi"
# Field manager that owns the Deployment's spec.replicas until the HPA takes it over (see replicas_manifest).
REPLICAS_MANAGER = "resilience-replicas"

# Well-known names of the in-cluster alternatives (see docs/targets.md).
REDIS_MASTER_SET = "mymaster"  # the Bitnami chart's default sentinel.masterSet
REDIS_RELEASE_SECRET_KEY = "redis-password"  # the Bitnami chart's Secret <release> holds the password here

DB_CREDENTIALS_SECRET = "school-meals-db-credentials"  # keys: username, password (created by the operator)
REDIS_AUTH_SECRET = "school-meals-redis-auth"  # optional, key: password (the ElastiCache AUTH token)


def cpu_quantity(cpus: float) -> str:
    """0.5 -> '500m': Kubernetes CPU quantities in millicores."""
    return f"{round(cpus * 1000)}m"


def namespace_manifest(namespace: str, extra_labels: dict[str, str] | None = None) -> Manifest:
    manifest: Manifest = {"apiVersion": "v1", "kind": "Namespace",
                          "metadata": object_meta(namespace, None, "namespace")}
    manifest["metadata"]["labels"].update(extra_labels or {})
    return manifest


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _api_env(settings: Settings, backing: str, endpoints: BackendEndpoints | None) -> list[dict[str, Any]]:
    """The platform app's RSL_* variables (resilience/platform/settings.py); secrets by reference only.

    Credentials never go into a URL: the kubelet's $(VAR) expansion does not URL-encode, so a password
    with '@', ':', '/' or '%' would break the DSN. The app takes them as RSL_PG_USER / RSL_PG_PASSWORD
    (and RSL_REDIS_PASSWORD) instead, and asyncpg prefers those to the DSN's.
    """
    if backing == "in-cluster":
        secret, pg_host, database, pg_port = f"{CNPG_CLUSTER_NAME}-app", f"{CNPG_CLUSTER_NAME}-rw", "meals", POSTGRES_PORT
        redis_env = [
            {"name": "RSL_REDIS_SENTINELS", "value": f"{REDIS_RELEASE}:{SENTINEL_PORT}"},
            {"name": "RSL_REDIS_MASTER", "value": REDIS_MASTER_SET},
            _secret_env("RSL_REDIS_PASSWORD", REDIS_RELEASE, REDIS_RELEASE_SECRET_KEY, optional=True),
        ]
    else:
        ep = endpoints or placeholder_endpoints(settings)
        secret, pg_host, database, pg_port = DB_CREDENTIALS_SECRET, EXTERNAL_POSTGRES_SERVICE, ep.database, ep.postgres_port
        if settings.aws.elasticache_tls:
            # TLS checks the certificate's name, which is the primary endpoint's, not our alias's ("Server
            # authentication", docs.aws.amazon.com/AmazonElastiCache/latest/dg/in-transit-encryption.html).
            # The primary endpoint "always resolves to the primary node" and "is immune to changes to your
            # cluster, such as promoting a read replica" (ElastiCache user guide, connecting to a node).
            redis_url = f"rediss://{ep.redis_host}:{ep.redis_port}/0"
        else:
            redis_url = f"redis://{EXTERNAL_REDIS_SERVICE}:{ep.redis_port}/0"
        redis_env = [{"name": "RSL_REDIS_URL", "value": redis_url},
                     _secret_env("RSL_REDIS_PASSWORD", REDIS_AUTH_SECRET, "password", optional=True)]
    return [
        {"name": "RSL_REPLICA", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        _secret_env("RSL_PG_USER", secret, "username"),
        _secret_env("RSL_PG_PASSWORD", secret, "password"),
        {"name": "RSL_PG_DSN",
         "value": f"postgresql://{pg_host}:{pg_port}/{quote(database, safe='')}?target_session_attrs=read-write"},
        *redis_env,
    ]


def deployment_manifest(settings: Settings, backing: str = "external",
                        endpoints: BackendEndpoints | None = None) -> Manifest:
    """The API Deployment: probes, Guaranteed resources, zone spread, zero-downtime rollout; no replica count.

    CPU request equals the limit so the HPA's utilisation (relative to the
    request) means the same as the local autoscaler's (relative to the limit).
    `spec.replicas` is left out: the HPA owns it. "When an HPA is enabled, it is
    recommended that the value of spec.replicas of the Deployment ... be removed
    from their manifest(s)" (kubernetes.io/docs/concepts/workloads/autoscaling/
    horizontal-pod-autoscale/, "Migrating Deployments and StatefulSets to
    horizontal autoscaling"); `replicas_manifest` sets the initial count.

    Zone spread honours node taints: a cordoned node carries
    node.kubernetes.io/unschedulable:NoSchedule, and with the default
    `nodeTaintsPolicy: Ignore` a cordoned zone still counts as a domain with 0
    pods, so with DoNotSchedule the replacements of a lost zone's pods stay
    Pending. With Honor, "nodes without taints, along with tainted nodes for
    which the incoming pod has a toleration, are included" (TopologySpreadConstraint
    API; kubernetes.io/docs/concepts/scheduling-eviction/topology-spread-constraints/).
    `nodeAffinityPolicy` stays at its default (Honor).
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
        "command": list(API_COMMAND),
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
        "metadata": object_meta(APP_NAME, k8s.namespace),
        "spec": {
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
                         "nodeTaintsPolicy": "Honor", "labelSelector": {"matchLabels": selector_labels()}},
                        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                         "whenUnsatisfiable": "ScheduleAnyway",
                         "nodeTaintsPolicy": "Honor", "labelSelector": {"matchLabels": selector_labels()}},
                    ],
                },
            },
        },
    }


def replicas_manifest(namespace: str, replicas: int = HPA_MIN_REPLICAS) -> Manifest:
    """Only the Deployment's `spec.replicas`: applied under `REPLICAS_MANAGER`, never validated on its own.

    Server-side apply resets a field that its only manager stops applying to the
    default (1 for replicas). The documented hand-over avoids that: a second,
    private field manager applies just `replicas`; "whenever the HPA controller
    sets the replicas field to a new value, the temporary field manager will no
    longer own any fields" (kubernetes.io/docs/reference/using-api/server-side-apply/,
    "Transferring ownership"). `up()`:

    1. Deployment exists: apply this with its current `spec.replicas` under
       REPLICAS_MANAGER, without force; a 409 means the HPA owns the field: fine.
    2. Apply `stack_manifests()` under MANAGER (force), the Deployment without replicas.
    3. Deployment was new: apply this with HPA_MIN_REPLICAS under REPLICAS_MANAGER.
    """
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP_NAME, "namespace": namespace},
            "spec": {"replicas": replicas}}


def hpa_manifest(settings: Settings) -> Manifest:
    """autoscaling/v2 HPA: the platform's 6-50 replicas on CPU 70% / memory 80%; Kubernetes' default behaviour.

    Left out, `behavior` is the Kubernetes default: scale-down stabilization 300 s
    with 100% per 15 s, scale-up immediately by max(100%, 4 pods) per 15 s. Only
    the windows `kubernetes.hpa_*_stabilization_s` set are written; "custom values
    are merged with default values" (kubernetes.io/docs/concepts/workloads/
    autoscaling/horizontal-pod-autoscale/, "Default behavior").
    """
    k8s = settings.kubernetes

    def utilization(resource: str, percent: int) -> dict[str, Any]:
        return {"type": "Resource",
                "resource": {"name": resource, "target": {"type": "Utilization", "averageUtilization": percent}}}

    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP_NAME},
        "minReplicas": HPA_MIN_REPLICAS,
        "maxReplicas": HPA_MAX_REPLICAS,
        "metrics": [utilization("cpu", HPA_CPU_PERCENT), utilization("memory", HPA_MEMORY_PERCENT)],
    }
    behavior = {direction: {"stabilizationWindowSeconds": seconds}
                for direction, seconds in (("scaleUp", k8s.hpa_scale_up_stabilization_s),
                                           ("scaleDown", k8s.hpa_scale_down_stabilization_s))
                if seconds is not None}
    if behavior:
        spec["behavior"] = behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": object_meta(APP_NAME, k8s.namespace), "spec": spec}


def pdb_manifest(namespace: str) -> Manifest:
    """At most 25% of the replicas disrupted at once; unhealthy pods may always be evicted.

    AlwaysAllow: "It is recommended to set AlwaysAllow Unhealthy Pod Eviction
    Policy to your PodDisruptionBudgets to support eviction of misbehaving
    applications during a node drain" (kubernetes.io/docs/tasks/administer-cluster/
    safely-drain-node/); otherwise a drain waits for crash-looping pods to heal.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(APP_NAME, namespace),
        "spec": {"maxUnavailable": PDB_MAX_UNAVAILABLE, "unhealthyPodEvictionPolicy": "AlwaysAllow",
                 "selector": {"matchLabels": selector_labels()}},
    }


def settings_endpoints(settings: Settings) -> BackendEndpoints | None:
    """The PostgreSQL and Redis hosts the settings name (both or neither: config_checks.py), if any."""
    k = settings.kubernetes
    if k.database == "external" and k.database_host and k.cache_host:
        return BackendEndpoints(postgres_host=k.database_host, redis_host=k.cache_host)
    return None


def placeholder_endpoints(settings: Settings) -> BackendEndpoints:
    """Stand-in endpoints for plans and offline rendering; `up()` resolves the real ones from AWS."""
    aws = settings.aws
    return BackendEndpoints(postgres_host=f"{aws.rds_cluster}.rds-endpoint.invalid",
                            redis_host=f"{aws.elasticache_group}.elasticache-endpoint.invalid")


def stack_manifests(settings: Settings, backing: str = "external",
                    endpoints: BackendEndpoints | None = None) -> list[Manifest]:
    """Every manifest `up()` applies under MANAGER, in apply order (the Namespace first).

    The Service and Ingress come before the pods: the AWS Load Balancer Controller
    injects its readiness gate only into pods created after them
    (kubernetes-sigs.github.io/aws-load-balancer-controller, "Pod readiness gate").
    """
    if backing not in ("external", "in-cluster"):
        raise ValueError(f"backing must be 'external' or 'in-cluster', got {backing!r}")
    ns = settings.kubernetes.namespace
    result = [namespace_manifest(ns, namespace_labels(settings))]
    if backing == "external":
        result += external_service_manifests(ns, endpoints or placeholder_endpoints(settings))
    result += [*exposure_manifests(settings), *network_policy_manifests(settings, backing), pdb_manifest(ns),
               deployment_manifest(settings, backing, endpoints), hpa_manifest(settings)]
    return result


def cloudnative_pg_cluster(settings: Settings, instances: int = 3, storage: str = "20Gi",
                           backup_destination: str | None = None, retention: str = "30d") -> Manifest:
    """A CloudNativePG `Cluster`: PostgreSQL 15, one instance per zone, synchronous standby if configured; with
    `backup_destination` (e.g. s3://bucket/path), base backups and the WAL archive go to that object store
    (`spec.backup.barmanObjectStore`, credentials from the pods' IAM role), which a point-in-time recovery
    reads (cnpg.py). Base backups are taken by a ScheduledBackup (`cloudnative_pg_scheduled_backup`)."""
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
    if backup_destination:
        spec["backup"] = {"retentionPolicy": retention,
                          "barmanObjectStore": {"destinationPath": backup_destination,
                                                "s3Credentials": {"inheritFromIAMRole": True},
                                                "wal": {"compression": "gzip"}, "data": {"compression": "gzip"}}}
    return {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": object_meta(CNPG_CLUSTER_NAME, settings.kubernetes.namespace, "postgres"), "spec": spec}


def cloudnative_pg_scheduled_backup(settings: Settings, schedule: str = "0 30 20 * * *") -> Manifest:
    """The Cluster's daily base backup (CloudNativePG's six-field cron, seconds first; the default is 02:00 IST,
    the platform's full-backup time, as 20:30 UTC). WAL is archived continuously between base backups."""
    return {"apiVersion": "postgresql.cnpg.io/v1", "kind": "ScheduledBackup",
            "metadata": object_meta(f"{CNPG_CLUSTER_NAME}-daily", settings.kubernetes.namespace, "postgres"),
            "spec": {"schedule": schedule, "backupOwnerReference": "self", "cluster": {"name": CNPG_CLUSTER_NAME}}}
