"""The API <-> database path as the cloud fakes model it: what a network fault injected in the API pods does to a
request that makes one database round trip (`GET /orders/by-key/<key>`, resilience/targets/netpath.py).

`PathState` is the path's network: the fake FIS (aws_fis_eks.py) and the fake Chaos Mesh
(kube/chaosmesh.py) set it while their fault is injected and clear it when it is recovered, as tc
netem in the pod's network namespace would. `FakePathApp` serves the API's probe endpoint over real
HTTP and answers 404 ("no order with this idempotency key": the database answered) after:
- `base_ms` (the round trip without a fault) plus `delay_ms` +- `jitter_ms` (uniform);
- with `loss_pct`: each of the request's packets to the database (`PACKETS`) lost with that
  probability costs one TCP retransmission (Linux's minimum RTO, 200 ms);
- with `blackhole`: no answer at all; the request is held until the client gives up (the app's own
  database timeout, `db_timeout_s`, ends it with 503 for clients that wait longer).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .clock import FakeClock
from .serving import ServedFake

PACKETS = 2  # a query and its answer
RTO_S = 0.2


@dataclass
class PathState:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    blackhole: bool = False
    by: str | None = None  # who injected it (an experiment id, a NetworkChaos name)
    history: list[tuple[str, str | None]] = field(default_factory=list)  # ("inject" | "clear", by)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inject(self, by: str, *, delay_ms: float = 0.0, jitter_ms: float = 0.0, loss_pct: float = 0.0,
               blackhole: bool = False) -> None:
        with self.lock:
            self.delay_ms, self.jitter_ms, self.loss_pct, self.blackhole, self.by = (
                delay_ms, jitter_ms, loss_pct, blackhole, by)
            self.history.append(("inject", by))

    def clear(self, by: str | None = None) -> None:
        with self.lock:
            if by is not None and self.by != by:
                return  # another fault's: not this one's to clear
            self.delay_ms, self.jitter_ms, self.loss_pct, self.blackhole, self.by = 0.0, 0.0, 0.0, False, None
            self.history.append(("clear", by))

    @property
    def faulty(self) -> bool:
        return bool(self.delay_ms or self.loss_pct or self.blackhole)

    def request_s(self, base_ms: float, rng: random.Random) -> float | None:
        """How long one probe request takes now; None: never answered."""
        with self.lock:
            if self.blackhole:
                return None
            seconds = (base_ms + self.delay_ms + rng.uniform(-self.jitter_ms, self.jitter_ms)) / 1000.0
            seconds += sum(RTO_S for _ in range(PACKETS) if rng.random() * 100 < self.loss_pct)
            return max(0.0, seconds)


class FakePathApp(ServedFake):
    """`with FakePathApp(state) as app:`; `app.url` is the API's URL for the path probe."""

    thread_name = "fake-path-app"

    def __init__(self, state: PathState, base_ms: float = 5.0, db_timeout_s: float = 10.0, seed: int = 7) -> None:
        super().__init__()
        self.clock = FakeClock(time_scale=1.0)
        self.state, self.base_ms, self.db_timeout_s = state, base_ms, db_timeout_s
        self.rng = random.Random(seed)
        self.requests = 0

    def _make_server(self) -> ThreadingHTTPServer:
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                app.requests += 1
                if not self.path.startswith("/orders/by-key/"):
                    self._answer(404, b'{"detail": "Not Found"}')
                    return
                seconds = app.state.request_s(app.base_ms, app.rng)
                if seconds is None:
                    time.sleep(app.db_timeout_s)
                    self._answer(503, b'{"detail": "database unavailable"}')
                    return
                time.sleep(seconds)
                self._answer(404, b'{"detail": "no order with this idempotency key"}')

            def _answer(self, code: int, body: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        return server
