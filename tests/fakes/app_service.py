"""A fake of the school-meal API as users reach it (the Ingress URL), for end-to-end tests of the cloud targets.

A test double, not the platform: orders and payments live in memory, there is no
database or cache behind it. It answers the endpoints the load and the read-back
use, with the JSON shapes and status codes of `resilience/platform/app.py`:

    GET  /menu                          200 [{item_id, name, description, price, currency, vegetarian}]
    POST /orders                        201 order (200 for a replayed idempotency key), 422 on bad input
    GET  /orders/{id}                   200 order, 404
    GET  /orders/by-key/{key}           200 order, 404
    POST /orders/lookup {keys}          200 {found: {key: {order_id, seq, created_at, items, total_paise}}, missing: [...]}
    POST /payments                      201 payment (200 for a second payment of an order), 404, 422
    GET  /health/live, /health/ready    200

Its availability follows a fake cluster (tests/fakes/kube_api.py) through a fake
ALB (tests/fakes/kube/alb.py): requests go to the pods in its target group; a pod
removed from the endpoints still gets requests until the deregistration reaches
the ALB (or health checks fail), and answers 502 if it no longer accepts
connections; with no target at all, 503. So a fault that leaves no API pod serving
shows in the load, and so does the lag of a load balancer behind a pod's removal.

With `cpu_percent_per_rps`, it also plays metrics-server for the cluster's HPA:
every `METRICS_PERIOD_S` fake seconds it reports each API pod's CPU as that many
percent of its request per request per second the pod served (spread evenly over
the ready pods), and a constant memory use. A cost model for tests, not a
measurement: it lets a traffic spike make the HPA scale.

With `backends` (tests/fakes/app_backends.py) it has a database and a cache behind it:
FakeAws' RDS cluster and ElastiCache group. A request that needs PostgreSQL is answered
503 while the cluster fails over and until the pods have reconnected to the new writer;
the menu falls back to PostgreSQL while the cache fails over (as the platform does).

Serves on 127.0.0.1 with an ephemeral port (`with FakeAppService(...) as app:`, `app.url`).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from resilience.targets.kubernetes.manifests import APP_NAME, APP_SELECTOR

from .app_backends import FakeBackends
from .clock import FakeClock
from .kube.alb import FakeAlb
from .kube_api import FakeKubeApi, matches_labels
from .serving import ServedFake

# (item_id, name, price in paise, vegetarian): a few items of the platform's menu (resilience/platform/db.py)
MENU = ((1, "Bisi Bele Bath", 4500, True), (2, "Lemon Rice", 3000, True), (3, "Curd Rice", 3000, True),
        (4, "Idli Vada", 3500, True), (5, "Masala Dosa", 5000, True), (12, "Egg Curry with Rice", 5500, False))
PRICES = {item_id: paise for item_id, _, paise, _ in MENU}
MAX_LOOKUP_KEYS = 5000  # as the platform
METRICS_PERIOD_S = 15.0  # fake seconds between metric reports (metrics-server's default resolution)
MEMORY_PERCENT = 40.0  # of the pods' memory request: steady, under the HPA's 80 %


def ready_api_pods(kube: FakeKubeApi, namespace: str) -> list[str]:
    """Names of the API pods the fake cluster reports Ready in `namespace` (the Ingress's endpoints)."""
    return [p["metadata"]["name"] for p in kube.objects("pods", namespace)
            if matches_labels(APP_SELECTOR, p["metadata"].get("labels") or {})
            and not p["metadata"].get("deletionTimestamp")
            and any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (p.get("status") or {}).get("conditions") or [])]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _rupees(paise: int) -> float:
    return round(paise / 100, 2)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # listen() backlog: the default 5 drops SYNs when users connect at once (1 s retry)


class Reply(Exception):
    """Refuse the request with this status and JSON body."""

    def __init__(self, code: int, body: Any) -> None:
        super().__init__(code)
        self.code, self.body = code, body


class FakeAppService(ServedFake):
    """The platform's HTTP API in memory; serving while `kube` has a ready API pod in `namespace`."""

    thread_name = "fake-app-service"

    def __init__(self, kube: FakeKubeApi, namespace: str, *, cpu_percent_per_rps: float | None = None,
                 backends: FakeBackends | None = None) -> None:
        super().__init__()
        self.backends = backends
        self.kube, self.namespace = kube, namespace
        self.clock = FakeClock(time_scale=kube.clock.time_scale, manual=kube.clock.manual)  # the cluster's pace
        self.cpu_percent_per_rps = cpu_percent_per_rps
        self.alb = FakeAlb(kube, namespace, APP_SELECTOR)  # the Ingress: routes with an ALB's lag (kube/alb.py)
        self.lock = threading.Lock()
        self.orders: dict[str, dict[str, Any]] = {}  # by order_id
        self.by_key: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}  # by order_id
        self.seq = itertools.count(1)
        self.turn = itertools.count()
        self.answered: dict[int, int] = {}  # status code -> how many requests got it
        self._served = 0  # requests a pod served since the last metric report
        self._since = time.monotonic()

    def _make_server(self) -> ThreadingHTTPServer:
        return _Server(("127.0.0.1", 0), self._handler_class())

    def start(self) -> Self:
        super().start()
        if self.cpu_percent_per_rps is not None:
            self.clock.call_later(METRICS_PERIOD_S, self._report_metrics)
        return self

    def _report_metrics(self) -> None:
        """metrics-server's part: the pods' CPU from the requests they served since the last report."""
        assert self.cpu_percent_per_rps is not None
        with self.lock:
            served, self._served = self._served, 0
            seconds, self._since = time.monotonic() - self._since, time.monotonic()
        pods = len(ready_api_pods(self.kube, self.namespace))
        if pods and seconds > 0:
            self.kube.set_metric(APP_NAME, self.namespace, memory_utilization=MEMORY_PERCENT,
                                 cpu_utilization=round(served / seconds / pods * self.cpu_percent_per_rps, 1))
        self.clock.call_later(METRICS_PERIOD_S, self._report_metrics)

    # -- the API
    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        status, replica = self.alb.pick()  # kube/alb.py: a removed pod still gets requests for a while
        if replica is None:
            return 503, {"detail": "no ready API pod behind the ingress"}
        if status != 200:
            return status, {"detail": f"502 Bad Gateway: target {replica} refused the connection"}
        with self.lock:
            self._served += 1
        refused = self.backends.refusal(method, path) if self.backends is not None else None
        if refused is not None:
            return refused
        try:
            return self._route(method, path, headers, body, replica)
        except Reply as reply:
            return reply.code, reply.body

    def _route(self, method: str, path: str, headers: dict[str, str], body: Any, replica: str) -> tuple[int, Any]:
        if method == "GET" and path == "/menu":
            return 200, [{"item_id": i, "name": name, "description": name, "price": _rupees(paise),
                          "currency": "INR", "vegetarian": veg} for i, name, paise, veg in MENU]
        if method == "GET" and path == "/health/live":
            return 200, {"status": "live", "replica": replica}
        if method == "GET" and path == "/health/ready":
            return 200, {"status": "ready", "replica": replica}
        if method == "POST" and path == "/orders":
            return self._place_order(body, headers.get("idempotency-key"))
        if method == "POST" and path == "/orders/lookup":
            return self._lookup(body)
        if method == "GET" and path.startswith("/orders/by-key/"):
            return self._found(self.by_key.get(unquote(path[len("/orders/by-key/"):])),
                               "no order with this idempotency key")
        if method == "GET" and path.startswith("/orders/"):
            return self._found(self.orders.get(path[len("/orders/"):]), "no such order")
        if method == "POST" and path == "/payments":
            return self._pay(body)
        raise Reply(404, {"detail": "Not Found"})

    @staticmethod
    def _found(order: dict[str, Any] | None, missing: str) -> tuple[int, Any]:
        if order is None:
            raise Reply(404, {"detail": missing})
        return 200, order

    def _place_order(self, body: Any, header_key: str | None) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("student_id"), str) or not body["student_id"]:
            raise Reply(422, {"detail": "student_id is required"})
        items = body.get("items")
        if (not isinstance(items, list) or not 1 <= len(items) <= 20
                or not all(isinstance(i, dict) and isinstance(i.get("item_id"), int)
                           and isinstance(i.get("qty"), int) and 1 <= i["qty"] <= 20 for i in items)):
            raise Reply(422, {"detail": "items must list 1..20 {item_id, qty 1..20}"})
        key = body.get("idempotency_key") or header_key
        if header_key and body.get("idempotency_key") and header_key != body["idempotency_key"]:
            raise Reply(422, {"detail": "idempotency_key in the body and the Idempotency-Key header differ"})
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise Reply(422, {"detail": "an idempotency_key (body) or Idempotency-Key header is required"})
        unknown = sorted({i["item_id"] for i in items} - PRICES.keys())
        if unknown:
            raise Reply(422, {"detail": f"unknown item_id(s): {unknown}; see GET /menu"})
        with self.lock:
            if key in self.by_key:
                return 200, self.by_key[key]
            order = {"order_id": str(uuid.uuid4()), "seq": next(self.seq), "idempotency_key": key,
                     "student_id": body["student_id"],
                     "items": [{"item_id": i["item_id"], "qty": i["qty"]} for i in items],
                     "total": _rupees(sum(PRICES[i["item_id"]] * i["qty"] for i in items)), "currency": "INR",
                     "created_at": _now()}
            self.orders[order["order_id"]] = order
            self.by_key[key] = order
        return 201, order

    def _lookup(self, body: Any) -> tuple[int, Any]:
        keys = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(keys, list) or len(keys) > MAX_LOOKUP_KEYS or not all(isinstance(k, str) for k in keys):
            raise Reply(422, {"detail": f"keys must be a list of at most {MAX_LOOKUP_KEYS} strings"})
        keys = list(dict.fromkeys(keys))
        with self.lock:
            found = {k: {"order_id": o["order_id"], "seq": o["seq"], "created_at": o["created_at"],
                         "items": o["items"], "total_paise": round(o["total"] * 100)}
                     for k in keys if (o := self.by_key.get(k)) is not None}
        return 200, {"found": found, "missing": [k for k in keys if k not in found]}

    def _pay(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise Reply(422, {"detail": "a JSON object is required"})
        amount, method = body.get("amount"), body.get("method")
        if (isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount <= 100_000
                or not isinstance(method, str) or not 1 <= len(method) <= 32):
            raise Reply(422, {"detail": "amount must be 0 < amount <= 100000 and method 1..32 characters"})
        try:
            order_id = str(uuid.UUID(str(body.get("order_id"))))
        except ValueError:
            raise Reply(422, {"detail": "order_id must be a UUID"}) from None
        with self.lock:
            if order_id not in self.orders:
                raise Reply(404, {"detail": "no such order"})
            if order_id in self.payments:
                return 200, self.payments[order_id]
            payment = {"order_id": order_id, "amount": _rupees(round(amount * 100)), "currency": "INR",
                       "method": method, "created_at": _now()}
            self.payments[order_id] = payment
        return 201, payment

    # -- HTTP
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as behind a real load balancer

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    code, payload = 422, {"detail": "the body is not JSON"}
                else:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    code, payload = app.answer(self.command, urlsplit(self.path).path, headers, body)
                with app.lock:
                    app.answered[code] = app.answered.get(code, 0) + 1
                data = json.dumps(payload, separators=(",", ":")).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    if code == 503:
                        self.send_header("Retry-After", "1")
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

            do_GET = do_POST = _handle

        return Handler
