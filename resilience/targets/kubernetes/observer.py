"""What the cluster does during a run, as it happens: watches turned into platform events.

One thread per watched kind (the app's Deployment and HPA, its pods, the nodes, the
namespace's events) lists once, then watches from that list's resourceVersion; a 410
Gone (the version is too old) relists, as the Kubernetes docs' "efficient detection of
changes" prescribes. A relist is the whole truth: a pod or node missing from it was deleted
while we were not watching (its DELETED event is lost with the history) and is forgotten.
Watches ask for bookmarks (`allowWatchBookmarks`: the server sends the current
resourceVersion now and then, so a quiet watch resumes without a 410; "Watch bookmarks" in
the API concepts page) and have a client-side read timeout a little longer than the
server-side one, so a connection that died silently (a NAT or load balancer dropping it)
raises instead of waiting for ever. Each change is stamped with this process's monotonic clock when it
arrives, the clock the load's records use, and becomes a `PlatformEvent`:

- `controller/replicas` {ready, desired, current, metrics}: the Deployment's ready count and
  the HPA's desired/current replicas (what `autoscale_s` is measured from);
- `platform/pods` {ready_by_zone}: ready API pods per zone;
- `platform/node` {node, zone, unschedulable}: a cordon or uncordon;
- `controller/scale` and `platform/k8s:<Reason>` from Kubernetes events.

The state tracking is pure (`ReplicaState`, `ready_by_zone`), so it is unit-tested on
hand-built objects.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..base import PlatformEvent
from .manifests import APP_NAME, APP_SELECTOR, ZONE_LABEL

WATCH_TIMEOUT_S = 5  # a watch returns at least this often, so stop() is prompt
REQUEST_TIMEOUT_S = WATCH_TIMEOUT_S + 10  # client side: no byte for this long means the connection is dead
RESTART_PAUSE_S = 0.1  # between two watches of one kind
LISTED = "LISTED"  # an object from a (re)list: the state so far, not a change seen as it happened


@dataclass
class ReplicaState:
    """The Deployment's and the HPA's replica numbers; a change in what they say is one event."""

    ready: int | None = None
    spec_replicas: int | None = None
    hpa_desired: int | None = None
    hpa_current: int | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    _last: tuple[Any, ...] | None = None

    def deployment(self, obj: Any) -> dict[str, Any] | None:
        self.spec_replicas = _int(_get(obj, "spec", "replicas"))
        self.ready = _int(_get(obj, "status", "ready_replicas")) or 0
        return self._changed()

    def hpa(self, obj: Any) -> dict[str, Any] | None:
        self.hpa_desired = _int(_get(obj, "status", "desired_replicas"))
        self.hpa_current = _int(_get(obj, "status", "current_replicas"))
        self.metrics = [_metric(m) for m in (_get(obj, "status", "current_metrics") or [])]
        return self._changed()

    def both(self, deployment: Any, hpa: Any | None) -> dict[str, Any] | None:
        """The Deployment and (if there is one) the HPA read together: at most one event for both."""
        self.spec_replicas = _int(_get(deployment, "spec", "replicas"))
        self.ready = _int(_get(deployment, "status", "ready_replicas")) or 0
        if hpa is not None:
            return self.hpa(hpa)
        return self._changed()

    def _changed(self) -> dict[str, Any] | None:
        if self.ready is None:
            return None  # the Deployment has not been seen yet: no ready count to report
        desired = self.hpa_desired if self.hpa_desired is not None else self.spec_replicas
        key = (self.ready, desired, self.hpa_current)
        if key == self._last:
            return None
        self._last = key
        return {"ready": self.ready, "desired": desired, "current": self.hpa_current, "metrics": self.metrics}


def ready_by_zone(pods: Iterable[Any], node_zones: dict[str, str | None]) -> dict[str, int]:
    """Ready API pods per zone (a pod on a node without a zone label counts under '?')."""
    counts: dict[str, int] = {}
    for pod in pods:
        if _get(pod, "metadata", "deletion_timestamp"):
            continue
        conditions = _get(pod, "status", "conditions") or []
        if any(_get(c, "type") == "Ready" and _get(c, "status") == "True" for c in conditions):
            zone = node_zones.get(_get(pod, "spec", "node_name") or "") or "?"
            counts[zone] = counts.get(zone, 0) + 1
    return dict(sorted(counts.items()))


def event_from_k8s(event: Any, at: float) -> PlatformEvent:
    reason = _get(event, "reason")
    source, op = ("controller", "scale") if reason in ("ScalingReplicaSet", "SuccessfulRescale") \
        else ("platform", f"k8s:{reason}")
    involved = _get(event, "involved_object")
    return PlatformEvent(at, source, op, {"reason": reason, "message": _get(event, "message"),
                                          "type": _get(event, "type"),
                                          "object": f"{_get(involved, 'kind')}/{_get(involved, 'name')}"})


class KubernetesObserver:
    """Watches the app's namespace and the nodes from start() to stop(); `events()` is what they saw."""

    def __init__(self, api_client: Any, namespace: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api_client
        self.namespace = namespace
        self.clock = clock
        self._events: list[PlatformEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.replicas = ReplicaState()
        self.node_zones: dict[str, str | None] = {}
        self.unschedulable: dict[str, bool] = {}
        self.pods: dict[str, Any] = {}
        self._zones_reported: dict[str, int] | None = None
        self.started_wall = time.time()
        self._stopped_at: float | None = None

    def start(self) -> None:
        from kubernetes import client
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        hpa = client.AutoscalingV2Api(self.api)
        ns, by_name = self.namespace, f"metadata.name={APP_NAME}"
        watches: list[tuple[str, Callable[..., Any], tuple[Any, ...], dict[str, Any], Callable[[str, Any], None]]] = [
            ("nodes", core.list_node, (), {}, self._on_node),
            ("deployment", apps.list_namespaced_deployment, (ns,), {"field_selector": by_name}, self._on_deployment),
            ("hpa", hpa.list_namespaced_horizontal_pod_autoscaler, (ns,), {"field_selector": by_name}, self._on_hpa),
            ("pods", core.list_namespaced_pod, (ns,), {"label_selector": APP_SELECTOR}, self._on_pod),
            ("events", core.list_namespaced_event, (ns,), {}, self._on_event),
        ]
        for name, list_fn, args, kwargs, handle in watches:
            thread = threading.Thread(target=self._watch, args=(name, list_fn, args, kwargs, handle),
                                      name=f"watch-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Stop at once: a thread still waiting in an open watch ends at its timeout; what it sees is dropped."""
        with self._lock:
            self._stopped_at = self.clock()
        self._stop.set()

    def events(self) -> list[PlatformEvent]:
        with self._lock:
            end = self._stopped_at
            return [e for e in self._events if end is None or e.monotonic <= end]

    def _add(self, source: str, op: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(PlatformEvent(self.clock(), source, op, detail))

    # -- the watch loop --------------------------------------------------------------
    def _watch(self, name: str, list_fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
               handle: Callable[[str, Any], None]) -> None:
        """List, then watch from the list's resourceVersion; relist on 410 Gone; report other errors and retry."""
        from kubernetes import watch
        from kubernetes.client.rest import ApiException
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listing = list_fn(*args, _request_timeout=REQUEST_TIMEOUT_S, **kwargs)
                    self._relisted(name, listing.items, handle)
                    version = listing.metadata.resource_version
                stream = watch.Watch().stream(list_fn, *args, resource_version=version,
                                              timeout_seconds=WATCH_TIMEOUT_S, allow_watch_bookmarks=True,
                                              _request_timeout=REQUEST_TIMEOUT_S, **kwargs)
                for change in stream:
                    if self._stop.is_set():
                        break
                    obj = change["object"]
                    if change["type"] == "ERROR":
                        raise ApiException(status=_get(obj, "code") or 500, reason=_get(obj, "message"))
                    version = _get(obj, "metadata", "resource_version") or version
                    if change["type"] != "BOOKMARK":
                        handle(change["type"], obj)
                self._stop.wait(RESTART_PAUSE_S)  # a server that ends watches at once is not hammered
            except ApiException as exc:
                if exc.status == 410:
                    version = None  # too old: list again
                    continue
                self._add("platform", "watch-error", {"watch": name, "status": exc.status, "reason": str(exc.reason)})
                self._stop.wait(1.0)
            except Exception as exc:  # noqa: BLE001 - a broken watch is reported, and retried
                self._add("platform", "watch-error", {"watch": name, "error": f"{type(exc).__name__}: {exc}"})
                self._stop.wait(1.0)

    def _relisted(self, name: str, items: list[Any], handle: Callable[[str, Any], None]) -> None:
        """A (re)list: each item as the state so far, and what it no longer holds forgotten (deleted unseen)."""
        listed = {_get(item, "metadata", "name") for item in items}
        with self._lock:
            if name == "pods":
                for gone in [p for p in self.pods if p not in listed]:
                    del self.pods[gone]
            elif name == "nodes":
                for gone in [n for n in self.node_zones if n not in listed]:
                    self.node_zones.pop(gone, None)
                    self.unschedulable.pop(gone, None)
        for item in items:
            handle(LISTED, item)
        if name == "pods" and not items:
            self._report_zones()

    # -- handlers (one thread each; shared state under the lock) ----------------------------
    def _on_node(self, kind: str, node: Any) -> None:
        name = _get(node, "metadata", "name")
        with self._lock:
            self.node_zones[name] = (_get(node, "metadata", "labels") or {}).get(ZONE_LABEL)
            before = self.unschedulable.get(name)
            now = bool(_get(node, "spec", "unschedulable"))
            self.unschedulable[name] = now
        if before is not None and before != now:
            self._add("platform", "node", {"node": name, "zone": self.node_zones[name], "unschedulable": now})

    def _on_deployment(self, kind: str, deployment: Any) -> None:
        with self._lock:
            detail = self.replicas.deployment(deployment)
        if detail:
            self._add("controller", "replicas", detail)

    def _on_hpa(self, kind: str, hpa: Any) -> None:
        with self._lock:
            detail = self.replicas.hpa(hpa)
        if detail:
            self._add("controller", "replicas", detail)

    def _on_pod(self, kind: str, pod: Any) -> None:
        with self._lock:
            name = _get(pod, "metadata", "name")
            if kind == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = pod
        self._report_zones()

    def _report_zones(self) -> None:
        with self._lock:
            zones = ready_by_zone(self.pods.values(), self.node_zones)
            changed = zones != self._zones_reported
            self._zones_reported = zones
        if changed:
            self._add("platform", "pods", {"ready_by_zone": zones})

    def _on_event(self, kind: str, event: Any) -> None:
        """A Kubernetes event as it arrives; a listed one only if it happened since observing began.

        The API server keeps events for an hour: without this, a run right after another would
        take the old run's events as its own, stamped with the time it listed them.
        """
        if kind == "DELETED":
            return
        if kind == LISTED and not self._since_start(event):
            return
        with self._lock:
            self._events.append(event_from_k8s(event, self.clock()))

    def _since_start(self, event: Any) -> bool:
        moment = _get(event, "last_timestamp") or _get(event, "event_time") or _get(event, "first_timestamp")
        return moment is not None and hasattr(moment, "timestamp") and moment.timestamp() >= self.started_wall


def _get(obj: Any, *path: str) -> Any:
    """A field of a client model or of a plain dict (watch objects are models; tests use dicts)."""
    for key in path:
        if obj is None:
            return None
        if isinstance(obj, dict):
            obj = obj.get(key, obj.get(_camel(key)))
        else:
            obj = getattr(obj, key, None)
    return obj


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _metric(metric: Any) -> dict[str, Any]:
    resource = _get(metric, "resource")
    current = _get(resource, "current")
    return {"type": _get(metric, "type"), "name": _get(resource, "name"),
            "average_utilization": _get(current, "average_utilization"),
            "average_value": str(_get(current, "average_value")) if _get(current, "average_value") else None}
