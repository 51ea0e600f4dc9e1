"""The fake API server's storage: objects, resourceVersions, the change history watches read, conflicts.

Like etcd behind a real API server, every write bumps one cluster-wide
resourceVersion and is recorded as an ADDED, MODIFIED or DELETED change. A
watch resumes from any resourceVersion still in the history; the history is
bounded (`history` changes) and `compact()` drops it all, after which a watch
from an older resourceVersion gets 410 Gone ("too old resource version").
Writes that carry a stale `metadata.resourceVersion` are refused with 409
Conflict (optimistic concurrency).

Docs followed:
- https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions
- https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
- https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#concurrency-control-and-consistency
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

Obj = dict[str, Any]
Key = tuple[str, str, str | None, str]  # (api prefix, plural, namespace, name)

CLUSTER_SCOPED = {"namespaces", "nodes"}
KIND_OF = {
    "namespaces": "Namespace", "nodes": "Node", "pods": "Pod", "events": "Event", "services": "Service",
    "deployments": "Deployment", "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "poddisruptionbudgets": "PodDisruptionBudget", "networkpolicies": "NetworkPolicy", "ingresses": "Ingress",
    "configmaps": "ConfigMap", "jobs": "Job",
    "clusters": "Cluster",  # postgresql.cnpg.io/v1: served only after FakeKubeApi.install_cnpg() (cnpg.py)
    "prometheusrules": "PrometheusRule",  # monitoring.coreos.com/v1: only after install_monitoring (monitoring.py)
    "serviceaccounts": "ServiceAccount",
}
API_VERSION_OF = {
    "namespaces": "v1", "nodes": "v1", "pods": "v1", "events": "v1", "services": "v1",
    "deployments": "apps/v1", "horizontalpodautoscalers": "autoscaling/v2",
    "poddisruptionbudgets": "policy/v1", "networkpolicies": "networking.k8s.io/v1", "ingresses": "networking.k8s.io/v1",
    "configmaps": "v1", "jobs": "batch/v1", "clusters": "postgresql.cnpg.io/v1",
    "prometheusrules": "monitoring.coreos.com/v1",
    "serviceaccounts": "v1",
}

CONFLICT_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again"


def now_iso(at: float | None = None) -> str:
    moment = datetime.now(timezone.utc) if at is None else datetime.fromtimestamp(at, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def group_of(prefix: str) -> str:
    """'apis/apps/v1' -> 'apps'; 'api/v1' -> '' (the core group)."""
    return prefix.split("/")[1] if prefix.startswith("apis/") else ""


def qualified_resource(prefix: str, plural: str) -> str:
    """How the API server names a resource in messages: 'pods', 'deployments.apps'."""
    group = group_of(prefix)
    return f"{plural}.{group}" if group else plural


class ApiError(Exception):
    """An API error answered as a metav1.Status body."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(key: Key) -> ApiError:
    prefix, plural, _, name = key
    return ApiError(404, "NotFound", f'{qualified_resource(prefix, plural)} "{name}" not found',
                    {"name": name, "group": group_of(prefix), "kind": plural})


def conflict(key: Key, why: str = CONFLICT_MESSAGE) -> ApiError:
    """409 Conflict as the API server words it for a stale resourceVersion."""
    prefix, plural, _, name = key
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified_resource(prefix, plural)} '
                                     f'"{name}": {why}', {"name": name, "group": group_of(prefix), "kind": plural})


class Expired(Exception):
    """The requested resourceVersion is older than the history kept (a watch answers 410 Gone)."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested, self.oldest = requested, oldest


@dataclass(frozen=True)
class Change:
    """One write: the object after it (for DELETED, its last state with the deletion's resourceVersion)."""
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: Key
    obj: Obj
    previous: Obj | None


class Store:
    """Objects keyed by (prefix, plural, namespace, name); every write notifies `changed` (a Condition)."""

    def __init__(self, lock: threading.RLock, history: int = 10_000) -> None:
        self.lock = lock
        self.changed = threading.Condition(lock)
        self.objects: dict[Key, Obj] = {}
        self.rv = 0
        self._history: deque[Change] = deque(maxlen=history)
        self._compacted = 0  # changes with rv <= this are gone

    # -- reading
    def get(self, key: Key) -> Obj | None:
        return self.objects.get(key)

    def require(self, key: Key) -> Obj:
        obj = self.objects.get(key)
        if obj is None:
            raise not_found(key)
        return obj

    def items(self, plural: str, namespace: str | None = None, prefix: str | None = None) -> Iterator[tuple[Key, Obj]]:
        """Matching objects in creation order (resourceVersion of creation is not kept; key order is stable)."""
        for key, obj in list(self.objects.items()):
            if key[1] == plural and (namespace is None or key[2] == namespace) and (prefix is None or key[0] == prefix):
                yield key, obj

    def values(self, plural: str, namespace: str | None = None) -> list[Obj]:
        return [obj for _, obj in self.items(plural, namespace)]

    # -- writing
    def _record(self, change_type: str, key: Key, obj: Obj, previous: Obj | None) -> None:
        if len(self._history) == self._history.maxlen and self._history:
            self._compacted = self._history[0].rv
        self._history.append(Change(self.rv, change_type, key, copy.deepcopy(obj), previous))
        self.changed.notify_all()

    def put(self, key: Key, obj: Obj, expect_rv: str | None = None) -> Obj:
        """Create or replace. `expect_rv` (a client's metadata.resourceVersion) must be current, or 409."""
        existing = self.objects.get(key)
        if expect_rv:
            if existing is None:
                raise not_found(key)
            if str(expect_rv) != existing["metadata"]["resourceVersion"]:
                raise conflict(key)
        meta = obj.setdefault("metadata", {})
        meta["name"] = key[3]
        if key[2] is not None:
            meta["namespace"] = key[2]
        obj.setdefault("kind", KIND_OF.get(key[1], ""))
        obj.setdefault("apiVersion", API_VERSION_OF.get(key[1], "v1"))
        if existing is not None:
            old_meta = existing["metadata"]
            meta["uid"] = old_meta["uid"]
            meta["creationTimestamp"] = old_meta["creationTimestamp"]
            generation = int(old_meta.get("generation", 1))
            if "spec" in obj and obj.get("spec") != existing.get("spec"):
                generation += 1  # generation counts spec changes only
            meta["generation"] = generation
        else:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_iso())
            meta["generation"] = 1
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.objects[key] = obj
        self._record("ADDED" if existing is None else "MODIFIED", key, obj,
                     copy.deepcopy(existing) if existing is not None else None)
        return obj

    def update(self, key: Key, obj: Obj) -> bool:
        """A controller's write: store `obj` only if it differs from what is stored. True if written."""
        existing = self.objects.get(key)
        if existing is not None and _without_rv(existing) == _without_rv(obj):
            return False
        self.put(key, obj)
        return True

    def remove(self, key: Key) -> Obj:
        obj = self.require(key)
        del self.objects[key]
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._record("DELETED", key, obj, None)
        return obj

    # -- history for watches
    def changes_after(self, rv: int) -> list[Change]:
        """Every change with a resourceVersion above `rv`; Expired if some of them are no longer kept."""
        if rv < self._compacted:
            raise Expired(rv, self._compacted + 1)
        return [c for c in self._history if c.rv > rv]

    def compact(self) -> None:
        """Forget the history up to now, as etcd compaction does (every 5 minutes on a real cluster)."""
        self._history.clear()
        self._compacted = self.rv


def _without_rv(obj: Obj) -> Obj:
    stripped = copy.copy(obj)
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    stripped["metadata"] = meta
    return stripped
