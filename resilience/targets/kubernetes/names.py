"""The names, ports and labels every Kubernetes manifest shares, and the metadata they carry.

manifests.py (the app), exposure.py (Services, Ingress, NetworkPolicies) and rbac.py build on these;
manifests.py re-exports them, so `from .manifests import APP_NAME` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

# Well-known names of the in-cluster alternatives (see docs/targets.md).
CNPG_CLUSTER_NAME = "school-meals-db"  # CloudNativePG serves it as <name>-rw, secret <name>-app
REDIS_RELEASE = "school-meals-redis"  # helm install school-meals-redis bitnami/redis --set sentinel.enabled=true

EXTERNAL_POSTGRES_SERVICE = "school-meals-postgres"
EXTERNAL_REDIS_SERVICE = "school-meals-redis"  # used when ElastiCache in-transit encryption is off


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


def object_meta(name: str, namespace: str | None, component: str = "api") -> dict[str, Any]:
    """The metadata of an object we create: its name, our labels, its namespace (None: cluster-scoped)."""
    data: dict[str, Any] = {"name": name, "labels": labels(component)}
    if namespace is not None:
        data["namespace"] = namespace
    return data
