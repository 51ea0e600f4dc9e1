"""A kube-prometheus-stack for the fake API server: the Prometheus Operator's PrometheusRule CRD, and a stand-in
Alertmanager and Prometheus behind their chart's Services, reached through the service proxy (proxy.py).

`install_monitoring(fake)` makes the API serve monitoring.coreos.com/v1 (discovery and `prometheusrules`;
before it, `GET /apis/monitoring.coreos.com/v1` is 404 as for any group the API server does not know), creates
namespace `monitoring` with the Services `kube-prometheus-stack-alertmanager` (port 9093, name http-web) and
`kube-prometheus-stack-prometheus` (9090, http-web) and one Running, Ready pod behind each, and serves the two
APIs on 127.0.0.1 (`serve_service`), so `.../services/NAME:PORT/proxy/api/v2/alerts` reaches them.

The stand-ins answer, after the documents they follow:
- Alertmanager `GET /api/v2/alerts` (https://github.com/prometheus/alertmanager/blob/v0.25.0/api/v2/openapi.yaml:
  `gettableAlerts`: labels, annotations, startsAt, endsAt, updatedAt, fingerprint, receivers, status {state:
  unprocessed|active|suppressed, silencedBy, inhibitedBy}); an alert whose endsAt has passed is left out (the
  API's filter: resolved alerts are not listed);
- Prometheus `GET /api/v1/rules` (https://prometheus.io/docs/prometheus/latest/querying/api/#rules): groups of
  the PrometheusRules stored in the fake, each alerting rule with `state` inactive|pending|firing, `duration`
  (its `for:` in seconds) and `alerts` with `activeAt` and `state`.
What fires is what the test says (`fire`, `pend`, `resolve`): no expression is evaluated. `down()` makes
both answer 503 (the pod is there but the program does not answer).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .store import Obj

if TYPE_CHECKING:
    from .server import FakeKubeApi

PREFIX = "apis/monitoring.coreos.com/v1"
NAMESPACE = "monitoring"
ALERTMANAGER, PROMETHEUS = "kube-prometheus-stack-alertmanager", "kube-prometheus-stack-prometheus"


def rfc3339(wall: float | None) -> str:
    if wall is None:
        return "0001-01-01T00:00:00.000Z"
    return datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class FakeMonitoring:
    def __init__(self, fake: "FakeKubeApi") -> None:
        self.fake = fake
        self.alerts: dict[str, dict[str, Any]] = {}  # alertname -> {state, active_at, fired_at, ends_at}
        self.answering = True
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-monitoring", daemon=True)

    # -- test hooks: alert states (wall-clock times; Prometheus and Alertmanager stamp real time)
    def pend(self, name: str, at: float | None = None) -> None:
        self.alerts[name] = {"state": "pending", "active_at": at or time.time(), "fired_at": None, "ends_at": None}

    def fire(self, name: str, at: float | None = None) -> None:
        now = at or time.time()
        alert = self.alerts.setdefault(name, {"active_at": now, "ends_at": None})
        alert.update(state="firing", fired_at=now, ends_at=None)

    def resolve(self, name: str, at: float | None = None) -> None:
        if name in self.alerts:
            self.alerts[name].update(state="inactive", ends_at=at or time.time())

    def down(self, answering: bool = False) -> None:
        self.answering = answering

    # -- the two APIs
    def alertmanager_alerts(self) -> list[Obj]:
        now = time.time()
        out = []
        for name, a in sorted(self.alerts.items()):
            if a.get("fired_at") is None or (a["ends_at"] is not None and a["ends_at"] <= now):
                continue
            out.append({"labels": {"alertname": name, "severity": "critical"}, "annotations": {},
                        "startsAt": rfc3339(a["fired_at"]), "endsAt": rfc3339(now + 240),  # Prometheus: 4 x resend
                        "updatedAt": rfc3339(now), "fingerprint": f"{abs(hash(name)) % 16**16:016x}",
                        "receivers": [{"name": "null"}], "generatorURL": "http://prometheus/graph",
                        "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}})
        return out

    def prometheus_rules(self) -> Obj:
        groups = []
        for rule_obj in self.fake.objects("prometheusrules"):
            for group in (rule_obj.get("spec") or {}).get("groups") or []:
                rules = []
                for rule in group.get("rules") or []:
                    if "alert" not in rule:
                        continue
                    a = self.alerts.get(rule["alert"])
                    live = a is not None and a["state"] in ("pending", "firing")
                    rules.append({"name": rule["alert"], "query": rule.get("expr"), "type": "alerting",
                                  "state": a["state"] if live else "inactive", "labels": rule.get("labels") or {},
                                  "alerts": [{"labels": {"alertname": rule["alert"]}, "state": a["state"],
                                              "activeAt": rfc3339(a["active_at"]), "value": "1e+00"}]
                                  if live and a is not None else []})
                groups.append({"name": group.get("name"), "file": rule_obj["metadata"]["name"], "interval": 30,
                               "rules": rules})
        return {"status": "success", "data": {"groups": groups}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        monitoring = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                monitoring.requests.append(self.path)
                if not monitoring.answering:
                    code, body = 503, {"error": "not answering"}
                elif self.path.startswith("/api/v2/alerts"):
                    code, body = 200, monitoring.alertmanager_alerts()
                elif self.path.startswith("/api/v1/rules"):
                    code, body = 200, monitoring.prometheus_rules()
                else:
                    code, body = 404, {"error": f"not found: {self.path}"}
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def discovery(self) -> Obj:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "monitoring.coreos.com/v1",
                "resources": [{"name": "prometheusrules", "singularName": "prometheusrule", "namespaced": True,
                               "kind": "PrometheusRule",
                               "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]}

    def start(self) -> "FakeMonitoring":
        self._thread.start()
        address = self._server.server_address
        with self.fake._lock:
            self.fake.store.put(("api/v1", "namespaces", None, NAMESPACE),
                                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            for name, port, app in ((ALERTMANAGER, 9093, "alertmanager"), (PROMETHEUS, 9090, "prometheus")):
                selector = {"app.kubernetes.io/name": app}
                self.fake.store.put(("api/v1", "services", NAMESPACE, name), {
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
                    "spec": {"selector": selector, "ports": [{"name": "http-web", "port": port}]}})
                self.fake.store.put(("api/v1", "pods", NAMESPACE, f"{app}-0"), {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": f"{app}-0", "namespace": NAMESPACE, "labels": selector},
                    "spec": {"containers": [{"name": app, "image": f"quay.io/prometheus/{app}"}],
                             "nodeName": next(iter(n["metadata"]["name"] for n in self.fake.store.values("nodes", None)))},
                    "status": {"phase": "Running", "podIP": "10.0.0.9",
                               "conditions": [{"type": "Ready", "status": "True"}]}})
                self.fake.serve_service(NAMESPACE, name, port, (str(address[0]), int(address[1])))
            self.fake.monitoring = self
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def install_monitoring(fake: "FakeKubeApi") -> FakeMonitoring:
    """Serve monitoring.coreos.com/v1 and start the stand-in Alertmanager and Prometheus (stop() them after)."""
    return FakeMonitoring(fake).start()
