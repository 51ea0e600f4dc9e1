"""A fake Kubernetes API server for tests: real HTTP on 127.0.0.1, full objects in memory.

It speaks enough of the API for the kubernetes target and chaostoolkit-kubernetes:
GET/LIST (label and field selectors), PATCH (server-side apply creates or
updates; merge and strategic-merge patches update), DELETE (namespaces cascade),
pod eviction, for namespaces, nodes, pods, events, services, deployments,
HPAs, PDBs and network policies. A tiny "controller" stands in for the
scheduler and kubelet: a Deployment immediately gets `spec.replicas` Ready pods
spread over the schedulable nodes (one zone each by default), and deleted or
evicted pods are replaced at once. Every request is recorded, so a test can
assert that a dry run made no mutating call.

This is not a conformance-tested API server: PDBs are not enforced, apply is a
recursive merge without field ownership, and there is no watch.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

Obj = dict[str, Any]
Key = tuple[str, str, str | None, str]  # (api prefix, plural, namespace, name)

CLUSTER_SCOPED = {"namespaces", "nodes"}
KIND_OF = {
    "namespaces": "Namespace", "nodes": "Node", "pods": "Pod", "events": "Event", "services": "Service",
    "deployments": "Deployment", "horizontalpodautoscalers": "HorizontalPodAutoscaler", "ingresses": "Ingress",
    "poddisruptionbudgets": "PodDisruptionBudget", "networkpolicies": "NetworkPolicy",
}
PATH = re.compile(r"^/(?P<prefix>api/v1|apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?"
                  r"/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
ZONE_LABEL = "topology.kubernetes.io/zone"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


# -- selectors ---------------------------------------------------------------

def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def matches_labels(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector syntax: k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b)."""
    for term in _split_selector(selector):
        set_match = re.match(r"^([^\s!=]+)\s+(in|notin)\s+\((.*)\)$", term)
        if set_match:
            key, op, values = set_match.group(1), set_match.group(2), {v.strip() for v in set_match.group(3).split(",")}
            if (op == "in") != (labels.get(key) in values):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def matches_fields(selector: str, obj: Obj) -> bool:
    """Field selectors as the target and chaosk8s use them: dotted.path=value and !=."""
    for term in _split_selector(selector):
        negate = "!=" in term
        path, value = term.split("!=" if negate else "=", 1)
        current: Any = obj
        for part in path.strip().split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if (str(current) == value.strip()) == negate:
            return False
    return True


def merge(base: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386); lists are replaced, null deletes."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(base.get(key), value)
    return result


# -- the server ----------------------------------------------------------------

class FakeKubeApi:
    """Start with `with FakeKubeApi() as api:`; `api.url` is the server address."""

    def __init__(self, zones: tuple[str, ...] = ("zone-a", "zone-b", "zone-c"), nodes_per_zone: int = 1) -> None:
        self._lock = threading.RLock()
        self._objects: dict[Key, Obj] = {}
        self._version = 0
        self._pod_ip = 0
        self.requests: list[RecordedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for zone in zones:
            for i in range(1, nodes_per_zone + 1):
                name = f"node-{zone}-{i}"
                self._store(("api/v1", "nodes", None, name), {
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": {ZONE_LABEL: zone, "kubernetes.io/hostname": name}},
                    "spec": {},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                })

    # -- lifecycle
    def start(self) -> "FakeKubeApi":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-kube-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeKubeApi":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "call start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- inspection for tests
    def mutating_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.mutating]

    def objects(self, plural: str, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [copy.deepcopy(o) for (_, p, ns, _), o in sorted(self._objects.items(), key=lambda kv: str(kv[0]))
                    if p == plural and (namespace is None or ns == namespace)]

    def get(self, plural: str, name: str, namespace: str | None = None) -> Obj | None:
        with self._lock:
            for (_, p, ns, n), obj in self._objects.items():
                if p == plural and n == name and ns == namespace:
                    return copy.deepcopy(obj)
        return None

    # -- HTTP
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        content_type = handler.headers.get("Content-Type")
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, parts.path, query, content_type))
            try:
                code, body = self._dispatch(handler.command, parts.path, query, content_type, raw)
            except ApiError as exc:
                code, body = exc.code, exc.status()
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], content_type: str | None,
                  raw: bytes) -> tuple[int, Obj]:
        if path == "/version":
            return 200, {"major": "1", "minor": "29", "gitVersion": "v1.29.0-fake"}
        m = PATH.match(path)
        if not m or m.group("plural") not in KIND_OF:
            raise ApiError(404, "NotFound", f"the fake API server does not serve {path}")
        prefix, ns, plural, name, sub = m.group("prefix", "ns", "plural", "name", "sub")
        if plural in CLUSTER_SCOPED:
            ns = None
        body = yaml.safe_load(raw) if raw else None
        if name is None:
            if method == "GET":
                return 200, self._list(prefix, plural, ns, query)
            if method == "POST" and isinstance(body, dict):
                return 201, self._create(prefix, plural, ns, body)
            raise ApiError(405, "MethodNotAllowed", f"{method} {path} is not supported by the fake")
        key: Key = (prefix, plural, ns, name)
        if sub == "eviction" and method == "POST" and plural == "pods":
            self._delete(key, reason="Evicted")
            return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        if sub is not None:
            raise ApiError(404, "NotFound", f"subresource {sub} is not served by the fake")
        if method == "GET":
            return 200, copy.deepcopy(self._require(key))
        if method == "PATCH":
            return self._patch(key, content_type or "", body, query)
        if method == "DELETE":
            return 200, self._delete(key, reason="Killing")
        raise ApiError(405, "MethodNotAllowed", f"{method} {path} is not supported by the fake")

    # -- storage
    def _require(self, key: Key) -> Obj:
        obj = self._objects.get(key)
        if obj is None:
            raise ApiError(404, "NotFound", f'{key[1]} "{key[3]}" not found')
        return obj

    def _store(self, key: Key, obj: Obj) -> Obj:
        self._version += 1
        meta = obj.setdefault("metadata", {})
        meta["name"] = key[3]
        if key[2] is not None:
            meta["namespace"] = key[2]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = str(self._version)
        meta["generation"] = int(meta.get("generation", 0)) + 1
        self._objects[key] = obj
        return obj

    def _list(self, prefix: str, plural: str, ns: str | None, query: dict[str, list[str]]) -> Obj:
        labels = query.get("labelSelector", [""])[0]
        fields = query.get("fieldSelector", [""])[0]
        items = [copy.deepcopy(o) for (p, pl, n, _), o in self._objects.items()
                 if p == prefix and pl == plural and (ns is None or n == ns)
                 and (not labels or matches_labels(labels, o["metadata"].get("labels") or {}))
                 and (not fields or matches_fields(fields, o))]
        api_version = prefix[len("apis/"):] if prefix.startswith("apis/") else "v1"
        return {"kind": f"{KIND_OF[plural]}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": str(self._version)}, "items": items}

    def _create(self, prefix: str, plural: str, ns: str | None, body: Obj) -> Obj:
        name = body.get("metadata", {}).get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name is required")
        key: Key = (prefix, plural, ns, name)
        if key in self._objects:
            raise ApiError(409, "AlreadyExists", f'{plural} "{name}" already exists')
        obj = self._store(key, copy.deepcopy(body))
        self._after_change(plural, ns)
        return copy.deepcopy(obj)

    def _patch(self, key: Key, content_type: str, body: Any, query: dict[str, list[str]]) -> tuple[int, Obj]:
        if not isinstance(body, dict):
            raise ApiError(415, "UnsupportedMediaType", f"the fake accepts object patches only, got {content_type}")
        existing = self._objects.get(key)
        if content_type.startswith("application/apply-patch"):
            if not query.get("fieldManager"):
                raise ApiError(422, "Invalid", "fieldManager is required for apply patches")
            if existing is None:
                obj = self._store(key, copy.deepcopy(body))
                self._after_change(key[1], key[2])
                return 201, copy.deepcopy(obj)
        elif content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(415, "UnsupportedMediaType", f"the fake does not support {content_type}")
        if existing is None:
            raise ApiError(404, "NotFound", f'{key[1]} "{key[3]}" not found')
        updated = merge(existing, {k: v for k, v in body.items() if k != "status"})
        obj = self._store(key, updated)
        self._after_change(key[1], key[2])
        return 200, copy.deepcopy(obj)

    def _delete(self, key: Key, reason: str) -> Obj:
        obj = self._require(key)
        del self._objects[key]
        if key[1] == "namespaces":
            for other in [k for k in self._objects if k[2] == key[3]]:
                del self._objects[other]
        if key[1] == "pods" and key[2] is not None:
            self._event(key[2], obj, reason, f"{reason} pod {key[3]}")
            self._after_change("pods", key[2])
        return copy.deepcopy(obj)

    # -- the stand-in controller (scheduler + kubelet + deployment controller)
    def _after_change(self, plural: str, ns: str | None) -> None:
        if ns is not None and plural in ("deployments", "pods", "horizontalpodautoscalers"):
            self._reconcile(ns)
        if plural == "nodes":
            for namespace in {k[2] for k in self._objects if k[1] == "deployments"}:
                if namespace is not None:
                    self._reconcile(namespace)

    def _schedulable_nodes(self) -> list[Obj]:
        return [o for (_, p, _, _), o in self._objects.items()
                if p == "nodes" and not o.get("spec", {}).get("unschedulable")]

    def _reconcile(self, ns: str) -> None:
        for key, deployment in list(self._objects.items()):
            if key[1] != "deployments" or key[2] != ns:
                continue
            selector = deployment["spec"]["selector"]["matchLabels"]
            pods = [(k, o) for k, o in self._objects.items() if k[1] == "pods" and k[2] == ns
                    and all((o["metadata"].get("labels") or {}).get(a) == b for a, b in selector.items())]
            desired = int(deployment["spec"].get("replicas", 1))
            for pod_key, _ in pods[desired:]:
                self._delete(pod_key, reason="Killing")
                return  # _delete reconciles again
            for _ in range(desired - len(pods)):
                self._create_pod(ns, deployment)
            self._update_status(ns, key, deployment)

    def _create_pod(self, ns: str, deployment: Obj) -> None:
        name = f"{deployment['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        nodes = self._schedulable_nodes()
        node = None
        if nodes:
            load = {n["metadata"]["name"]: 0 for n in nodes}
            for (_, p, _, _), o in self._objects.items():
                if p == "pods" and o["spec"].get("nodeName") in load:
                    load[o["spec"]["nodeName"]] += 1
            node = min(nodes, key=lambda n: (load[n["metadata"]["name"]], n["metadata"]["name"]))
        self._pod_ip += 1
        template = copy.deepcopy(deployment["spec"]["template"])
        ready = node is not None
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"labels": template["metadata"].get("labels", {}), "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{deployment['metadata']['name']}-fake",
                "uid": deployment["metadata"]["uid"], "controller": True}]},
            "spec": {**template["spec"], "volumes": template["spec"].get("volumes", []),
                     **({"nodeName": node["metadata"]["name"]} if node else {})},
            "status": {
                "phase": "Running" if ready else "Pending",
                # loopback addresses: a pod IP from this fake must never be a real network destination
                **({"podIP": f"127.0.{self._pod_ip // 250 + 1}.{self._pod_ip % 250 + 1}"} if ready else {}),
                "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                "lastTransitionTime": _now()}],
            },
        }
        self._store(("api/v1", "pods", ns, name), pod)
        self._event(ns, pod, "Started" if ready else "FailedScheduling",
                    f"Started pod {name}" if ready else f"0/{len(self._objects)} nodes are available")

    def _update_status(self, ns: str, key: Key, deployment: Obj) -> None:
        selector = deployment["spec"]["selector"]["matchLabels"]
        pods = [o for k, o in self._objects.items() if k[1] == "pods" and k[2] == ns
                and all((o["metadata"].get("labels") or {}).get(a) == b for a, b in selector.items())]
        ready = sum(1 for p in pods if p["status"]["conditions"][0]["status"] == "True")
        desired = int(deployment["spec"].get("replicas", 1))
        deployment["status"] = {
            "observedGeneration": deployment["metadata"]["generation"], "replicas": len(pods),
            "updatedReplicas": len(pods), "readyReplicas": ready, "availableReplicas": ready,
            "conditions": [{"type": "Available", "status": "True" if ready >= desired else "False",
                            "reason": "MinimumReplicasAvailable" if ready >= desired else "MinimumReplicasUnavailable",
                            "lastTransitionTime": _now()}],
        }
        for hpa_key, hpa in self._objects.items():
            if hpa_key[1] == "horizontalpodautoscalers" and hpa_key[2] == ns:
                hpa["status"] = {"currentReplicas": ready, "desiredReplicas": desired}

    def _event(self, ns: str, obj: Obj, reason: str, message: str) -> None:
        name = f"{obj['metadata'].get('name', 'object')}.{uuid.uuid4().hex[:8]}"
        self._store(("api/v1", "events", ns, name), {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {},
            "involvedObject": {"kind": obj.get("kind", "Pod"), "name": obj["metadata"].get("name"), "namespace": ns},
            "reason": reason, "message": message, "type": "Normal", "count": 1,
            "firstTimestamp": _now(), "lastTimestamp": _now(), "source": {"component": "fake-kube-api"},
        })
