"""What the load acknowledged and what the read-back read: the content a restore is checked against."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from resilience.checkers.restore import measurements
from resilience.history import Record
from resilience.load.recorder import Recorder
from resilience.readback import readback

ITEMS = [{"item_id": 3, "qty": 2}]
STORED = {"a": {"order_id": "o-a", "seq": 1, "created_at": "x", "items": ITEMS, "total_paise": 24000},
          "refused": {"order_id": "o-r", "seq": 2, "created_at": "x", "items": ITEMS, "total_paise": 24000}}


class _Response:
    def __init__(self, body: object) -> None:
        self.status_code = 201
        self._body = body

    def json(self) -> object:
        return self._body


def test_the_recorder_keeps_what_was_acknowledged() -> None:
    out = io.StringIO()
    recorder = Recorder(out, origin_monotonic=0.0, clock=lambda: 10.0)
    body = {"order_id": "o1", "seq": 7, "items": ITEMS, "total": 240.35, "currency": "INR"}
    recorder.on_request("POST", "POST /orders", 20.0, _Response(body), {"key": "r-1-1"})
    recorder.on_request("POST", "POST /orders", 20.0, _Response({"order_id": "o2", "seq": 8, "total": True}),
                        {"key": "r-1-2"})
    recorder.flush()
    rows = [Record.from_row(json.loads(line)) for line in out.getvalue().splitlines()]
    assert rows[0].detail == {"order_id": "o1", "seq": 7, "items": ITEMS, "total_paise": 24035}
    assert rows[1].detail == {"order_id": "o2", "seq": 8}  # nothing usable to compare: presence only


class _Platform(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer({})

    def do_POST(self) -> None:  # noqa: N802
        keys = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["keys"]
        self._answer({"found": {k: STORED[k] for k in keys if k in STORED}})

    def _answer(self, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Platform)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_readback_carries_what_it_read_and_looks_up_unacknowledged_orders(url: str) -> None:
    load = [Record(1.0, "load", "POST /orders", "ok", 0.1, "a",
                   {"order_id": "o-a", "seq": 1, "items": ITEMS, "total_paise": 24000}),
            Record(2.0, "load", "POST /orders", "ok", 0.1, "b", {"order_id": "o-b", "seq": 3}),
            Record(3.0, "load", "POST /orders", "fail", 0.1, "refused", {"code": 422}),
            Record(4.0, "load", "GET /menu", "ok", 0.1, None, None)]
    out = {(r.op, r.key): r for r in readback(url, load, lambda: 50.0)}
    assert set(out) == {("readback", "a"), ("readback", "b"), ("readback-sent", "refused")}
    assert out[("readback", "a")].status == "ok"
    assert out[("readback", "a")].detail == {"order_id": "o-a", "ack_t": 1.1,
                                             "read": {"order_id": "o-a", "items": ITEMS, "total_paise": 24000}}
    assert out[("readback", "b")].status == "fail" and "read" not in (out[("readback", "b")].detail or {})
    assert out[("readback-sent", "refused")].status == "ok"
    assert out[("readback-sent", "refused")].detail["sent_status"] == "fail"

    restored = [Record(0.5, "fault", "effect", "ok", None, None, {}),
                Record(5.0, "recovery", "target", "info", None, None, {"kind": "latest", "target_t": None, "repo": 1}),
                Record(6.0, "recovery", "restore-start", "info", None, None, {"repo": 1, "backup_age_s": 60.0}),
                Record(7.0, "recovery", "restore-done", "ok", None, None, {"seconds": 1.0, "bytes": 10,
                                                                          "throughput_mb_s": 0.00001}),
                Record(8.0, "recovery", "serving", "info", None, None, {})]
    result = {m.name: m for m in measurements(load + restored + list(out.values()), rpo_target_s=300.0)}
    assert result["lost_writes"].value == 1 and result["unexpected_writes"].value == 1
    assert result["lost_writes"].detail["compared_content"] == 1
