"""A fake Kubernetes API server for tests: real HTTP on 127.0.0.1, objects in memory, controllers that act.

It speaks enough of the API for the kubernetes target, the official Python
client and chaostoolkit-kubernetes: GET, LIST and WATCH (label and field
selectors, resourceVersion), POST (create), PUT (replace), PATCH (server-side
apply creates or updates; merge and strategic-merge patches update), DELETE
(with grace periods and preconditions; namespaces cascade), the pod
eviction subresource, the service proxy subresource and pod logs, for
namespaces, nodes, pods, events, services, configmaps, deployments, jobs,
HPAs, PDBs and network policies. Every request is recorded, so a
test can assert that a dry run made no mutating call.

Behaviour the experiments depend on, each as the real service does it (the
module that implements it names the documentation it follows):
- optimistic concurrency: a PUT, or a PATCH carrying metadata.resourceVersion,
  with a stale resourceVersion gets 409 Conflict (store.py);
- watches: `?watch=1&resourceVersion=N` streams ADDED / MODIFIED / DELETED
  events after N, BOOKMARKs when asked, and 410 Gone for a resourceVersion
  older than the history kept (store.py, this module);
- evictions answer 429 Too Many Requests when a PodDisruptionBudget would be
  violated (disruption.py);
- a scheduler that honours cordons, taints, nodeSelector, node capacity (requests against
  allocatable: resources.py) and (with
  `topology_spread=True`) topology spread constraints with nodeTaintsPolicy,
  leaving pods Pending when nothing fits (scheduler.py);
- Deployment, kubelet and graceful termination (workloads.py);
- Jobs, and the orphaning an API DELETE of a Job does without propagationPolicy (jobs.py);
- watches (watch.py);
- the service proxy: a request forwarded to a Service's endpoint, 503 without one (proxy.py);
- an HPA controller acting on metrics a test sets, which it sees only after metrics-server's next
  15 s scrape (hpa.py);
- optionally, pods run as real local processes (process_kubelet.py, `enable_process_kubelet`).

Time: controllers count fake seconds (tests/fakes/clock.py). By default fake
time runs 100x faster than real time (`time_scale=0.01`): a 30 s grace period
lasts 0.3 s, the HPA syncs every 0.15 s. With `manual_clock=True` nothing that
depends on time happens until the test calls `advance(seconds)`.

Test hooks: `set_metric(deployment, cpu_utilization=..., memory_utilization=...)`,
`advance(seconds)` (manual clock), `tick()` (an HPA sync now), `compact()`
(forget the watch history), `add_node(...)`, `requests` / `mutating_requests()`,
`objects(...)`, `get(...)`, `enable_process_kubelet(selector, workdir)`,
`serve_service(ns, name, port, address)` (where the proxy reaches a Service whose pods
no process kubelet runs), `monitoring.install_monitoring(fake)` (a kube-prometheus-stack stand-in).

Constructor flags (the defaults behave as a real cluster does):
- topology_spread=True: enforces whenUnsatisfiable: DoNotSchedule (a zone lost
  under nodeTaintsPolicy Ignore leaves replacements Pending); False makes it a preference;
  ScheduleAnyway preferences are always applied;
- enforce_pdbs=True: False approves every eviction;
- graceful_termination=True: False deletes pods at once whatever the grace period;
- pod_start_s=0: fake seconds from a pod starting to its being Ready;
- time_scale=0.01 / manual_clock=False, hpa_sync_period_s=15, hpa_tolerance=0.1,
  watch_history=10000 (changes a watch can resume from), metrics_resolution_s=15 (0: metrics at once).

Field ownership (apply.py): managedFields on every write; server-side apply
owns the fields it sends, answers 409 Conflict when another manager owns one
with a different value (unless force=true) and removes what its manager no
longer applies.

Not a conformance-tested API server: apply treats lists as atomic, strategic
merge patches replace lists, there
is no admission, RBAC, scale or status subresource, and a deleted namespace
disappears at once with its contents.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import yaml

from ..clock import FakeClock
from ..serving import ServedFake
from .disruption import DisruptionController
from .hpa import HpaController
from .jobs import JobController, orphan_dependents
from . import proxy
from .apply import apply, created_by_apply, record_update
from .process_kubelet import ProcessKubelet
from .resources import DEFAULT_ALLOCATABLE
from .cnpg import PREFIX as CNPG_PREFIX, CnpgOperator
from .monitoring import PREFIX as MONITORING_PREFIX
from .scheduler import Scheduler
from .selectors import merge, selected
from .store import (CLUSTER_SCOPED, KIND_OF, ApiError, Key, Obj, Store, conflict, group_of,
                    not_found, now_iso, qualified_resource)
from .watch import serve_watch
from .workloads import Workloads

PATH = re.compile(r"^/(?P<prefix>api/v1|apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?"
                  r"/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
ZONE_LABEL = "topology.kubernetes.io/zone"
TRUE = ("1", "true", "True")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING


class FakeKubeApi(ServedFake):
    """Start with `with FakeKubeApi() as api:` (or `.start()` / `.stop()`); `api.url` is the server address."""

    thread_name = "fake-kube-api"

    def __init__(self, zones: tuple[str, ...] = ("zone-a", "zone-b", "zone-c"), nodes_per_zone: int = 1, *,
                 topology_spread: bool = True, enforce_pdbs: bool = True, graceful_termination: bool = True,
                 pod_start_s: float = 0.0, time_scale: float = 0.01, manual_clock: bool = False,
                 hpa_sync_period_s: float = 15.0, hpa_tolerance: float = 0.1, watch_history: int = 10_000,
                 metrics_resolution_s: float = 15.0) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self.store = Store(self._lock, history=watch_history)
        self.clock = FakeClock(time_scale=time_scale, manual=manual_clock)
        self.topology_spread = topology_spread
        self.enforce_pdbs = enforce_pdbs
        self.graceful_termination = graceful_termination
        self.pod_start_s = pod_start_s
        self.workloads = Workloads(self)
        self.scheduler = Scheduler(self)
        self.disruption = DisruptionController(self)
        self.hpa = HpaController(self, sync_period_s=hpa_sync_period_s, tolerance=hpa_tolerance,
                                 metrics_resolution_s=metrics_resolution_s)
        self.jobs = JobController(self)
        self.process_kubelet: ProcessKubelet | None = None
        self.cnpg: CnpgOperator | None = None  # CloudNativePG's CRDs and operator, once install_cnpg() is called
        self.monitoring: Any = None  # a FakeMonitoring (monitoring.py) once install_monitoring(self) is called
        self.service_backends: dict[tuple[str, str, int], tuple[str, int]] = {}  # see serve_service
        self.requests: list[RecordedRequest] = []
        self.terminations: dict[str, float] = {}  # pod uid -> fake time its deletion began (alb.py reads it)
        self._closing = False
        for zone in zones:
            for i in range(1, nodes_per_zone + 1):
                self.add_node(f"node-{zone}-{i}", zone)

    # -- lifecycle (start / stop / url / with: ServedFake)
    def _make_server(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        self._closing = False
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        return server

    def _before_stop(self) -> None:
        if self.process_kubelet is not None:
            self.process_kubelet.stop()
        with self._lock:
            self._closing = True
            self.store.changed.notify_all()  # ends open watches

    # -- pods as processes, and where Services listen (process_kubelet.py, proxy.py)
    def enable_process_kubelet(self, selector: str, workdir: Path, **options: Any) -> ProcessKubelet:
        """Run the containers of pods matching `selector` as local processes (see process_kubelet.py)."""
        self.process_kubelet = ProcessKubelet(self, selector, workdir, **options).start()
        return self.process_kubelet

    def serve_service(self, namespace: str, name: str, port: int, address: tuple[str, int]) -> None:
        """The service proxy reaches Service `name`'s `port` at `address` (for endpoints no kubelet here runs)."""
        self.service_backends[(namespace, name, port)] = address

    def service_address(self, namespace: str, name: str, port: int, pod: Obj) -> tuple[str, int] | None:
        if self.process_kubelet is not None and self.process_kubelet.owns(pod):
            return self.process_kubelet.service_address(namespace, name, port, pod)
        return self.service_backends.get((namespace, name, port))

    # -- test hooks
    def add_node(self, name: str, zone: str | None, taints: list[Obj] | None = None,
                 labels: dict[str, str] | None = None, allocatable: dict[str, str] | None = None) -> None:
        """A Ready node; `allocatable` e.g. {"cpu": "1930m", "memory": "6900Mi", "pods": "29"} (an m5.large);
        default: resources.DEFAULT_ALLOCATABLE."""
        node_labels = {"kubernetes.io/hostname": name, **({ZONE_LABEL: zone} if zone else {}), **(labels or {})}
        room = dict(allocatable or DEFAULT_ALLOCATABLE)
        with self._lock:
            self.store.put(("api/v1", "nodes", None, name), {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": node_labels},
                "spec": {"taints": taints} if taints else {},
                "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                           "allocatable": room, "capacity": dict(room)},
            })
            self.settle()

    def set_metric(self, deployment: str, namespace: str | None = None, *, cpu_utilization: float | None = None,
                   memory_utilization: float | None = None) -> None:
        """Play metrics-server: every running pod of `deployment` reports this % of its request.
        A resource never set has no metrics (as on EKS without metrics-server)."""
        with self._lock:
            self.hpa.set_metric(deployment, namespace, {"cpu": cpu_utilization, "memory": memory_utilization})

    def scrape_metrics(self) -> None:
        """metrics-server scrapes now: what set_metric set becomes what the HPA reads (else at the next 15 s)."""
        with self._lock:
            self.hpa.scrape()

    def tick(self) -> None:
        """Run one HPA sync of every HPA now (as the controller's resync would), without moving time."""
        with self._lock:
            self.hpa.start_new()
            for key, _ in list(self.store.items("horizontalpodautoscalers")):
                self.hpa.sync(key)
            self.settle()

    def compact(self) -> None:
        """Drop the watch history (etcd compaction): watches from older resourceVersions get 410 Gone."""
        with self._lock:
            self.store.compact()

    def install_cnpg(self, **timings: float) -> CnpgOperator:
        """Serve postgresql.cnpg.io/v1 and run a CloudNativePG operator (cnpg.py); returns it."""
        with self._lock:
            self.cnpg = CnpgOperator(self, **timings)
            return self.cnpg

    def mutating_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.mutating]

    def objects(self, plural: str, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [copy.deepcopy(o) for (_, p, ns, _), o in sorted(self.store.objects.items(),
                                                                   key=lambda kv: str(kv[0]))
                    if p == plural and (namespace is None or ns == namespace)]

    def get(self, plural: str, name: str, namespace: str | None = None) -> Obj | None:
        with self._lock:
            for (_, p, ns, n), obj in self.store.objects.items():
                if p == plural and n == name and ns == namespace:
                    return copy.deepcopy(obj)
        return None

    # -- for the controllers
    def now_iso(self, at: float | None = None) -> str:
        return now_iso(at)

    def in_controller(self, fn: Callable[[], None]) -> None:
        """Run a timer's work under the server lock, then let every controller catch up."""
        with self._lock:
            fn()
            self.settle()

    def settle(self) -> None:
        """Run the controllers until nothing changes (each writes only what differs)."""
        for _ in range(50):
            before = self.store.rv
            self.workloads.sync_node_taints()
            self.workloads.collect_garbage()
            self.workloads.reconcile_deployments()
            self.jobs.sync()
            self.scheduler.schedule_pending()
            self.workloads.start_bound_pods()
            self.workloads.update_deployment_status()
            self.disruption.sync()
            self.hpa.start_new()
            if self.cnpg is not None:
                self.cnpg.sync()
            if self.store.rv == before:
                return
        raise RuntimeError("the fake's controllers did not settle (a controller keeps rewriting an object)")

    def record_event(self, ns: str, obj: Obj, reason: str, message: str, event_type: str = "Normal",
                     component: str = "fake-kube-api", dedupe: bool = False) -> None:
        meta = obj.get("metadata") or {}
        involved = {"kind": obj.get("kind", "Pod"), "name": meta.get("name"), "namespace": ns,
                    **({"uid": meta["uid"]} if meta.get("uid") else {})}
        if dedupe and any(e.get("involvedObject", {}).get("name") == involved["name"] and e.get("reason") == reason
                          and e.get("message") == message for e in self.store.values("events", ns)):
            return
        name = f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:16]}"
        stamp = now_iso()
        self.store.put(("api/v1", "events", ns, name), {
            "apiVersion": "v1", "kind": "Event", "metadata": {},
            "involvedObject": involved, "reason": reason, "message": message, "type": event_type, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": component},
            "reportingComponent": component,
        })

    # -- HTTP
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = parse_qs(parts.query)
        content_type = handler.headers.get("Content-Type")
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, parts.path, query, content_type))
        query = {**query, "manager": [query.get("fieldManager", [""])[0] or
                                      (handler.headers.get("User-Agent") or "unknown").split("/")[0]]}
        if proxy.PROXY_PATH.match(parts.path) or proxy.LOG_PATH.match(parts.path):
            proxy.serve_text(self, handler, parts.path, parts.query, raw)
            return
        if handler.command == "GET" and query.get("watch", [""])[0] in TRUE:
            serve_watch(self, handler, parts.path, query)
            return
        with self._lock:
            try:
                code, body = self._dispatch(handler.command, parts.path, query, content_type, raw)
            except ApiError as exc:
                code, body = exc.code, exc.status()
            finally:
                self.settle()
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, path: str) -> tuple[str, str | None, str, str | None, str | None]:
        m = PATH.match(path)
        if not m or m.group("plural") not in KIND_OF or (m.group("plural") == "clusters") != (
                self.cnpg is not None and m.group("prefix") == CNPG_PREFIX) or (m.group("plural") == "prometheusrules") != (
                self.monitoring is not None and m.group("prefix") == MONITORING_PREFIX):
            raise ApiError(404, "NotFound", f"the fake API server does not serve {path}")
        prefix, ns, plural, name, sub = m.group("prefix", "ns", "plural", "name", "sub")
        return prefix, (None if plural in CLUSTER_SCOPED else ns), plural, name, sub

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], content_type: str | None,
                  raw: bytes) -> tuple[int, Obj]:
        if path == "/version":
            return 200, {"major": "1", "minor": "29", "gitVersion": "v1.29.0-fake"}
        if path == f"/{CNPG_PREFIX}":  # API discovery of CloudNativePG's group: 404 until its CRDs are installed
            if self.cnpg is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return 200, self.cnpg.discovery()
        if path == f"/{MONITORING_PREFIX}":  # the Prometheus Operator's group: 404 until install_monitoring
            if self.monitoring is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return 200, self.monitoring.discovery()
        prefix, ns, plural, name, sub = self._route(path)
        body = yaml.safe_load(raw) if raw else None
        if name is None:
            if method == "GET":
                return 200, self._list(prefix, plural, ns, query)
            if method == "POST" and isinstance(body, dict):
                if plural == "clusters" and self.cnpg is not None:
                    self.cnpg.validate(body)
                return 201, self._create(prefix, plural, ns, record_update(None, body, query["manager"][0]))
            raise ApiError(405, "MethodNotAllowed", f"{method} {path} is not supported by the fake")
        key: Key = (prefix, plural, ns, name)
        if sub == "eviction" and method == "POST" and plural == "pods":
            return self._evict(key, body if isinstance(body, dict) else {})
        if sub is not None:
            raise ApiError(404, "NotFound", f"subresource {sub} is not served by the fake")
        if method == "GET":
            return 200, copy.deepcopy(self.store.require(key))
        if method == "PATCH":
            return self._patch(key, content_type or "", body, query)
        if method == "PUT":
            if isinstance(body, dict):
                body = record_update(self.store.get(key), body, query["manager"][0])
            return self._replace(key, body)
        if method == "DELETE":
            return 200, self._delete(key, query, body if isinstance(body, dict) else {})
        raise ApiError(405, "MethodNotAllowed", f"{method} {path} is not supported by the fake")

    # -- verbs
    def _list(self, prefix: str, plural: str, ns: str | None, query: dict[str, list[str]]) -> Obj:
        labels = query.get("labelSelector", [""])[0]
        fields = query.get("fieldSelector", [""])[0]
        items = [copy.deepcopy(o) for (p, pl, n, _), o in self.store.objects.items()
                 if p == prefix and pl == plural and (ns is None or n == ns) and selected(o, labels, fields)]
        api_version = prefix[len("apis/"):] if prefix.startswith("apis/") else "v1"
        return {"kind": f"{KIND_OF[plural]}List", "apiVersion": api_version,
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": items}

    def _create(self, prefix: str, plural: str, ns: str | None, body: Obj) -> Obj:
        name = body.get("metadata", {}).get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name is required")
        key: Key = (prefix, plural, ns, name)
        if key in self.store.objects:
            raise ApiError(409, "AlreadyExists", f'{qualified_resource(prefix, plural)} "{name}" already exists',
                           {"name": name, "group": group_of(prefix), "kind": plural})
        obj = copy.deepcopy(body)
        obj.get("metadata", {}).pop("resourceVersion", None)
        if plural == "pods":
            obj.setdefault("status", {"phase": "Pending", "conditions": []})
        return copy.deepcopy(self.store.put(key, obj))

    def _replace(self, key: Key, body: Any) -> tuple[int, Obj]:
        """PUT: an update; with metadata.resourceVersion it is conditional (409 when stale)."""
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of a PUT must be an object")
        if body.get("metadata", {}).get("name") not in (None, key[3]):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        existing = self.store.require(key)
        expect = body.get("metadata", {}).get("resourceVersion")
        replacement = copy.deepcopy(body)
        if "status" in existing:
            replacement["status"] = copy.deepcopy(existing["status"])  # status is the controllers' (subresource)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if field in existing["metadata"]:
                replacement.setdefault("metadata", {})[field] = existing["metadata"][field]
        return 200, copy.deepcopy(self.store.put(key, replacement, expect_rv=expect))

    def _patch(self, key: Key, content_type: str, body: Any, query: dict[str, list[str]]) -> tuple[int, Obj]:
        if not isinstance(body, dict):
            raise ApiError(415, "UnsupportedMediaType", f"the fake accepts object patches only, got {content_type}")
        existing = self.store.get(key)
        expect = (body.get("metadata") or {}).get("resourceVersion")
        if content_type.startswith("application/apply-patch"):
            if not query.get("fieldManager"):
                raise ApiError(422, "Invalid", "fieldManager is required for apply patches")
            if existing is None:
                if expect:
                    raise conflict(key)
                return 201, self._create(key[0], key[1], key[2], created_by_apply(body, query["fieldManager"][0]))
            applied = apply(existing, {k: v for k, v in body.items() if k != "status"}, query["fieldManager"][0],
                            force=query.get("force", [""])[0] in TRUE)
            return 200, copy.deepcopy(self.store.put(key, applied, expect_rv=expect))
        elif content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(415, "UnsupportedMediaType", f"the fake does not support {content_type}")
        if existing is None:
            raise not_found(key)
        patch = {k: v for k, v in body.items() if k != "status"}
        if isinstance(patch.get("metadata"), dict):
            patch["metadata"] = {k: v for k, v in patch["metadata"].items() if k != "resourceVersion"}
        updated = record_update(existing, merge(existing, patch), query["manager"][0])
        return 200, copy.deepcopy(self.store.put(key, updated, expect_rv=expect))

    def _delete(self, key: Key, query: dict[str, list[str]], options: Obj) -> Obj:
        obj = self.store.require(key)
        preconditions = options.get("preconditions") or {}
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != \
                obj["metadata"]["resourceVersion"]:
            raise conflict(key, f"the ResourceVersion in the precondition ({preconditions['resourceVersion']}) does "
                                f"not match the ResourceVersion in record ({obj['metadata']['resourceVersion']}). "
                                "The object might have been modified")
        if preconditions.get("uid") and preconditions["uid"] != obj["metadata"]["uid"]:
            raise conflict(key, f"the UID in the precondition ({preconditions['uid']}) does not match the UID in "
                                f"record ({obj['metadata']['uid']}). The object might have been deleted and then "
                                "recreated")
        grace_text = query.get("gracePeriodSeconds", [None])[0]
        grace = int(grace_text) if grace_text is not None else options.get("gracePeriodSeconds")
        if key[1] == "pods":
            return self.workloads.delete_pod(key, None if grace is None else int(grace))
        if key[1] in ("deployments", "jobs"):
            orphan_dependents(self, key, query.get("propagationPolicy", [None])[0] or options.get("propagationPolicy"))
        removed = copy.deepcopy(self.store.remove(key))
        if key[1] == "namespaces":
            for other in [k for k in self.store.objects if k[2] == key[3]]:
                self.store.remove(other)
        return removed

    def _evict(self, key: Key, eviction: Obj) -> tuple[int, Obj]:
        pod = self.store.require(key)
        self.disruption.check_eviction(key, pod)
        grace = (eviction.get("deleteOptions") or {}).get("gracePeriodSeconds")
        self.workloads.delete_pod(key, None if grace is None else int(grace), reason="Killing")
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
