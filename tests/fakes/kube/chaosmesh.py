"""Chaos Mesh for the fake API server: `NetworkChaos` (chaos-mesh.org/v1alpha1) served only once "installed", its
admission webhook's refusals, its status conditions, and its effect on the modelled API <-> database path.

`ChaosMeshKubeApi` is a FakeKubeApi that, after `install_chaos_mesh(path=...)`, serves the group
(discovery and `networkchaos`); before, `GET /apis/chaos-mesh.org/v1alpha1` is 404 as for any group
whose CRDs are absent. What it does, after https://chaos-mesh.org/docs/simulate-network-chaos-on-kubernetes/
(fields) and the API reference's ChaosStatus (conditions):
- the webhook refuses (422 Invalid) an unknown `action`, a `delay` without `delay.latency`, a `loss`
  without `loss.loss`, a `duration` that is not a Go duration, and a `direction` other than to / from / both;
- the conditions `Selected`, `AllInjected`, `AllRecovered`, `Paused` (status "True" / "False"):
  Selected once the selector's pods are found (False, and nothing injected, when none match),
  AllInjected `inject_s` (1) fake seconds later, and at `duration`'s end AllInjected False,
  AllRecovered True, `spec`... `status.experiment.desiredPhase` Stop;
- deleting the object recovers the pods (the fake removes it at once; the real controller's finalizer
  holds it until recovered).
While injected, a NetworkChaos whose selector picks the app's pods (`app_labels`) towards a peer
(`target` or `externalTargets`) sets the modelled path (netpath_app.PathState): delay (latency and
jitter), loss (percent), partition (a blackhole).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ..netpath_app import PathState
from .server import FakeKubeApi
from .store import API_VERSION_OF, KIND_OF, ApiError, Key, Obj

PREFIX = "apis/chaos-mesh.org/v1alpha1"
PLURAL = "networkchaos"
KIND_OF.setdefault(PLURAL, "NetworkChaos")  # served only after install_chaos_mesh() (see _route)
API_VERSION_OF.setdefault(PLURAL, "chaos-mesh.org/v1alpha1")
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
ACTIONS = ("netem", "delay", "loss", "duplicate", "corrupt", "partition", "bandwidth")
CONDITIONS = ("Selected", "AllInjected", "AllRecovered", "Paused")


def go_seconds(text: str) -> float:
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * units[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|ms|s|m|h)", text))


class ChaosMeshController:
    def __init__(self, fake: "ChaosMeshKubeApi", path: PathState, app_labels: dict[str, str],
                 inject_s: float = 1.0) -> None:
        self.fake, self.path, self.app_labels, self.inject_s = fake, path, app_labels, inject_s
        self.seen: set[Key] = set()
        self.injected: dict[str, Obj] = {}  # name -> the spec it injected (what tests read)

    def discovery(self) -> Obj:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "chaos-mesh.org/v1alpha1",
                "resources": [{"name": PLURAL, "singularName": PLURAL, "namespaced": True, "kind": "NetworkChaos",
                               "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]}

    def validate(self, body: Obj) -> None:
        spec = body.get("spec") or {}
        problems = []
        if spec.get("action") not in ACTIONS:
            problems.append(f"spec.action: Invalid value: {spec.get('action')!r}: action is invalid")
        if spec.get("action") == "delay" and not (spec.get("delay") or {}).get("latency"):
            problems.append("spec.delay.latency: Required value")
        if spec.get("action") == "loss" and not (spec.get("loss") or {}).get("loss"):
            problems.append("spec.loss.loss: Required value")
        if spec.get("duration") is not None and not GO_DURATION.match(str(spec["duration"])):
            problems.append(f"spec.duration: Invalid value: {spec['duration']!r}: time: invalid duration")
        if spec.get("direction", "to") not in ("to", "from", "both"):
            problems.append(f"spec.direction: Invalid value: {spec.get('direction')!r}")
        if problems:
            raise ApiError(422, "Invalid", 'admission webhook "vnetworkchaos.kb.io" denied the request: '
                                           + "; ".join(problems))

    def sync(self) -> None:
        """New objects start their life; deleted ones are recovered (called in the fake's settle loop)."""
        present = {k for k, _ in self.fake.store.items(PLURAL, prefix=PREFIX)}
        for key in sorted(self.seen - present):
            self.seen.discard(key)
            self._recover(key[3])
        for key in sorted(present - self.seen):
            self.seen.add(key)
            self._start(key)

    # -- one NetworkChaos
    def _start(self, key: Key) -> None:
        obj = self.fake.store.require(key)
        spec = obj.get("spec") or {}
        selector = spec.get("selector") or {}
        pods = self._selected(key[2], selector.get("labelSelectors") or {})
        self._conditions(key, Selected=bool(pods), AllInjected=False, AllRecovered=False, Paused=False)
        if not pods:
            return
        self.fake.clock.call_later(self.inject_s, lambda: self._locked(key, lambda: self._inject(key)))
        if spec.get("duration"):
            end = self.inject_s + go_seconds(str(spec["duration"]))
            self.fake.clock.call_later(end, lambda: self._locked(key, lambda: self._end(key)))

    def _selected(self, namespace: str | None, labels: dict[str, str]) -> list[Obj]:
        return [p for p in self.fake.store.values("pods", namespace)
                if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
                and (p.get("status") or {}).get("phase") == "Running"]

    def _inject(self, key: Key) -> None:
        spec = self.fake.store.require(key).get("spec") or {}
        self._conditions(key, AllInjected=True)
        self.injected[key[3]] = copy.deepcopy(spec)
        labels = (spec.get("selector") or {}).get("labelSelectors") or {}
        towards_peer = spec.get("target") or spec.get("externalTargets")
        if not towards_peer or any(self.app_labels.get(k) != v for k, v in labels.items()):
            return  # not the API <-> database path this fake models
        action = spec["action"]
        if action == "delay":
            self.path.inject(key[3], delay_ms=go_seconds(spec["delay"]["latency"]) * 1000,
                             jitter_ms=go_seconds(spec["delay"].get("jitter") or "0ms") * 1000)
        elif action == "loss":
            self.path.inject(key[3], loss_pct=float(spec["loss"]["loss"]))
        elif action == "partition":
            self.path.inject(key[3], blackhole=True)

    def _end(self, key: Key) -> None:
        self._recover(key[3])
        self._conditions(key, AllInjected=False, AllRecovered=True)
        obj = copy.deepcopy(self.fake.store.require(key))
        obj.setdefault("status", {}).setdefault("experiment", {})["desiredPhase"] = "Stop"
        self.fake.store.put(key, obj)

    def _recover(self, name: str) -> None:
        self.path.clear(name)

    def _locked(self, key: Key, fn: Any) -> None:
        with self.fake._lock:
            if self.fake.store.get(key) is not None:
                fn()

    def _conditions(self, key: Key, **values: bool) -> None:
        obj = copy.deepcopy(self.fake.store.require(key))
        status = obj.setdefault("status", {})
        current = {c["type"]: c for c in status.get("conditions") or []}
        for kind, value in values.items():
            current[kind] = {"type": kind, "status": "True" if value else "False"}
        status["conditions"] = [current[k] for k in CONDITIONS if k in current]
        status.setdefault("experiment", {"desiredPhase": "Run"})
        self.fake.store.put(key, obj)


class ChaosMeshKubeApi(FakeKubeApi):
    """FakeKubeApi that can have Chaos Mesh installed (`install_chaos_mesh`)."""

    chaos_mesh: ChaosMeshController | None = None

    def install_chaos_mesh(self, path: PathState, app_labels: dict[str, str] | None = None,
                           inject_s: float = 1.0) -> ChaosMeshController:
        with self._lock:
            self.chaos_mesh = ChaosMeshController(
                self, path, app_labels or {"app.kubernetes.io/name": "school-meals-api"}, inject_s)
            return self.chaos_mesh

    def _route(self, path: str) -> tuple[str, str | None, str, str | None, str | None]:
        if path.startswith(f"/{PREFIX}/") or f"/{PLURAL}" in path:
            if self.chaos_mesh is None or not path.startswith(f"/{PREFIX}/"):
                raise ApiError(404, "NotFound", f"the fake API server does not serve {path}")
            parts = path[len(PREFIX) + 2:].split("/")  # namespaces/NS/networkchaos[/NAME]
            if len(parts) < 3 or parts[0] != "namespaces" or parts[2] != PLURAL:
                raise ApiError(404, "NotFound", f"the fake API server does not serve {path}")
            return PREFIX, parts[1], PLURAL, parts[3] if len(parts) > 3 else None, None
        return super()._route(path)

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], content_type: str | None,
                  raw: bytes) -> tuple[int, Obj]:
        if path == f"/{PREFIX}":
            if self.chaos_mesh is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return 200, self.chaos_mesh.discovery()
        if self.chaos_mesh is not None and method == "POST" and path.startswith(f"/{PREFIX}/") and raw:
            import yaml
            self.chaos_mesh.validate(yaml.safe_load(raw) or {})
        return super()._dispatch(method, path, query, content_type, raw)

    def settle(self) -> None:
        super().settle()
        if self.chaos_mesh is not None:
            self.chaos_mesh.sync()
