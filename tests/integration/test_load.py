"""LoadProcess end to end: a real Locust worker against a tiny in-memory stand-in of the platform.

The stand-in (`StandInPlatform`) implements the platform's endpoints in memory
and can be told to answer 503 or to hang, so the test can see "fail" and
"unknown" rows appear while the worker keeps going.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from resilience.errors import UserError
from resilience.history import Record
from resilience.load import LoadProcess, LoadSettings, parse_stages
from resilience.load.process import read_new_rows
from resilience.checkers.generator import deviations, generator_report
from resilience.load.recorder import request_outcome

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = str(REPO / "scenarios" / "lunch_rush.py")
MENU = [{"item_id": 1, "name": "idli", "price": 30.0}, {"item_id": 2, "name": "dosa", "price": 45.0},
        {"item_id": 3, "name": "curd rice", "price": 35.0}]
PRICES = {item["item_id"]: item["price"] for item in MENU}
OPS = {"GET /menu", "POST /orders", "GET /orders/{id}", "POST /payments"}


class StandInPlatform:
    """The platform API in memory, on a thread; `mode` is "normal", "fail" (503) or "hang"."""

    def __init__(self, hang_s: float = 3.0):
        self.mode = "normal"
        self.hang_s = hang_s
        self.orders: dict[str, dict[str, Any]] = {}  # by order_id
        self.by_key: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.seq = itertools.count(1)
        self.server = _bind_free_port(self._handler_class())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def __enter__(self) -> "StandInPlatform":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mode = "normal"
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def create_order(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = body["idempotency_key"]
        with self.lock:
            if key in self.by_key:
                return 200, self.by_key[key]
            seq = next(self.seq)
            total = sum(PRICES.get(line["item_id"], 0.0) * line["qty"] for line in body["items"])
            order = {"order_id": f"o{seq}", "seq": seq, "idempotency_key": key, "total": total,
                     "created_at": time.time()}
            self.orders[order["order_id"]] = order
            self.by_key[key] = order
        return 201, order

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        platform = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as behind a real load balancer

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.handle_request()

            def do_POST(self) -> None:
                self.handle_request()

            def handle_request(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body: dict[str, Any] = json.loads(self.rfile.read(length)) if length else {}
                if platform.mode == "hang":
                    time.sleep(platform.hang_s)
                if platform.mode == "fail":
                    return self.reply(503, {"error": "unavailable"})
                if self.command == "GET" and self.path == "/menu":
                    return self.reply(200, MENU)
                if self.command == "POST" and self.path == "/orders":
                    return self.reply(*platform.create_order(body))
                if self.command == "GET" and self.path.startswith("/orders/"):
                    order = platform.orders.get(self.path.rsplit("/", 1)[1])
                    return self.reply(200, order) if order else self.reply(404, {"error": "no such order"})
                if self.command == "POST" and self.path == "/payments":
                    ok = body.get("order_id") in platform.orders
                    return self.reply(201, {"payment_id": "p1", **body}) if ok else self.reply(404, {})
                self.reply(404, {"error": "not found"})

            def reply(self, code: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): that is the point of "hang"

        return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs when 20 users connect at once (1 s retransmit)


def _bind_free_port(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server on the first free port in 19000-19099 (our range)."""
    for port in range(19000, 19100):
        try:
            server = _Server(("127.0.0.1", port), handler)
        except OSError:
            continue
        return server
    raise RuntimeError("no free port in 19000-19099 for the stand-in platform")


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail the test naming `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def pid_gone(pid: int) -> bool:
    """No such process, or only its zombie (an orphan that PID 1 has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture
def platform() -> Iterator[StandInPlatform]:
    with StandInPlatform() as stand_in:
        yield stand_in


@pytest.fixture
def loads() -> Iterator[list[LoadProcess]]:
    """Every LoadProcess a test starts is stopped, even when the test fails."""
    started: list[LoadProcess] = []
    try:
        yield started
    finally:
        for load in started:
            load.stop(timeout_s=5)


def records_between(records: list[Record], start: float, end: float) -> list[Record]:
    return [r for r in records if r.source == "load" and r.op in OPS and start <= r.t < end]


def test_load_records_every_request_through_failure_and_hang(platform: StandInPlatform, loads: list[LoadProcess],
                                                             tmp_path: Path) -> None:
    origin = time.monotonic()
    settings = LoadSettings(users=20, spawn_rate=40, stages=tuple(parse_stages("1s:10@40,60s:20@40")),
                            timeout_s=0.8, wait_min_s=0.05, wait_max_s=0.2, locustfile=LOCUSTFILE)
    load = LoadProcess(platform.url, settings, tmp_path, origin, run_id="itest-run")
    loads.append(load)
    load.start()
    assert load.running() and load.pid is not None
    pid = load.pid

    first = wait_for(lambda: (s := load.stats()) and s.requests > 0 and s, 10, "the first status with requests")
    wait_for(lambda: platform.orders, 5, "orders at the stand-in")
    time.sleep(1.0)
    fail_start = time.monotonic() - origin
    platform.mode = "fail"
    time.sleep(1.2)
    fail_end = time.monotonic() - origin
    platform.mode = "hang"  # 3 s > the 0.8 s client timeout
    time.sleep(1.2)
    hang_end = time.monotonic() - origin
    platform.mode = "normal"
    time.sleep(1.2)
    later = wait_for(lambda: (s := load.stats()) and s.t > first.t and s, 5, "a newer status")
    live = load.new_records()  # readable while the worker runs
    assert live and all(r.t >= 0 for r in live)

    code = load.stop()
    assert code == 0, load.log_tail()
    assert pid_gone(pid), "worker still alive after stop()"
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # nothing left in its process group either
    final = load.stats()
    assert final is not None and final.done and final.requests >= later.requests > first.requests
    assert later.rps > 0 and later.users == 20

    records = load.records()
    requests = [r for r in records if r.op in OPS]
    assert final.requests == len(requests)
    assert {r.op for r in requests} == OPS
    assert all(r.source == "load" and r.status in ("ok", "fail", "unknown") and r.latency is not None
               for r in requests)
    # the load shape: 10 users, then 20, then 0 when stopped
    users_rows = [r.detail["users"] for r in records if r.op == "users" and r.detail]
    assert users_rows == [10, 20, 0]

    # acknowledged orders: order_id and seq, matching what the stand-in stored under that key
    acked = [r for r in requests if r.op == "POST /orders" and r.status == "ok"]
    assert len(acked) > 20
    for r in acked:
        assert r.detail is not None and r.key is not None
        assert platform.by_key[r.key]["order_id"] == r.detail["order_id"]
        assert platform.by_key[r.key]["seq"] == r.detail["seq"]

    # idempotency keys: unique, "{run_id}-{user_no}-{n}", n counting 1, 2, 3... per user
    order_rows = sorted((r for r in requests if r.op == "POST /orders"), key=lambda r: r.t)
    keys = [r.key for r in order_rows]
    assert len(keys) == len(set(keys))
    per_user: dict[str, list[int]] = defaultdict(list)
    for key in keys:
        match = re.fullmatch(r"itest-run-(\d+)-(\d+)", key or "")
        assert match, key
        per_user[match.group(1)].append(int(match.group(2)))
    assert len(per_user) == 20
    for numbers in per_user.values():
        assert numbers == list(range(1, len(numbers) + 1))

    # the 503 window: failures with the code; the hang window: outcome unknown
    during_fail = records_between(records, fail_start + 0.1, fail_end - 0.1)
    assert during_fail and all(r.status == "fail" and r.detail == {"code": 503} for r in during_fail)
    during_hang = records_between(records, fail_end + 0.1, hang_end - 0.1)
    assert during_hang and all(r.status == "unknown" for r in during_hang)
    assert all(r.latency is not None and r.latency >= 0.75 for r in during_hang)
    after = records_between(records, hang_end + 0.3, float("inf"))
    assert after and all(r.status == "ok" for r in after)


def test_load_stops_by_itself_when_the_stages_end(platform: StandInPlatform, loads: list[LoadProcess],
                                                  tmp_path: Path) -> None:
    settings = LoadSettings(stages=tuple(parse_stages("2s:5@10")), wait_min_s=0.1, wait_max_s=0.2,
                            user_class="WriteHeavyUser", locustfile=LOCUSTFILE)
    load = LoadProcess(platform.url, settings, tmp_path, time.monotonic(), run_id="itest-end")
    loads.append(load)
    load.start()
    assert load.wait(timeout_s=15) == 0, load.log_tail()
    stats = load.stats()
    assert stats is not None and stats.done and stats.users == 0
    records = load.records()
    orders = [r for r in records if r.op == "POST /orders"]
    menus = [r for r in records if r.op == "GET /menu"]
    assert len(orders) > len(menus)  # one menu read per user at start, then 9 orders to 1 menu
    users_rows = [r for r in records if r.op == "users"]
    assert [r.detail["users"] for r in users_rows if r.detail] == [5, 0]
    assert 1.9 < users_rows[1].t - users_rows[0].t < 3.0  # the stage lasted its 2 s, then the worker ended
    assert all(r.t <= users_rows[1].t for r in records)


ORPHANING_HARNESS = """
import sys, time, os
from pathlib import Path
from resilience.load import LoadProcess, LoadSettings
load = LoadProcess(sys.argv[1], LoadSettings(users=2, locustfile=sys.argv[2]), Path(sys.argv[3]), time.monotonic(), "orphan")
load.start()
print(load.pid, flush=True)
os._exit(0)  # a harness that crashes without stopping its load
"""


def test_worker_stops_when_the_harness_dies(platform: StandInPlatform, tmp_path: Path) -> None:
    harness = subprocess.run([sys.executable, "-c", ORPHANING_HARNESS, platform.url, LOCUSTFILE, str(tmp_path)],
                             capture_output=True, text=True, timeout=30, cwd=REPO)
    assert harness.returncode == 0, harness.stderr
    pid = int(harness.stdout.split()[0])
    try:
        wait_for(lambda: pid_gone(pid), 10, f"the orphaned worker {pid} to stop")
    finally:
        if not pid_gone(pid):
            os.killpg(pid, signal.SIGKILL)
    status = json.loads((tmp_path / "load" / "status.json").read_text())
    assert status["done"] is True


def test_worker_refusing_its_input_is_a_user_error(platform: StandInPlatform, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import locust\nclass NotAUser:\n    pass\n")
    settings = LoadSettings(user_class="NotAUser", locustfile=str(broken))
    load = LoadProcess(platform.url, settings, tmp_path, time.monotonic(), run_id="itest-bad")
    with pytest.raises(UserError, match="no Locust user class 'NotAUser'"):
        load.start()
    assert load.pid is not None and pid_gone(load.pid)


def test_locustfile_and_user_class_are_checked_before_starting(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        LoadProcess("http://127.0.0.1:19001", LoadSettings(locustfile=str(tmp_path / "missing.py")),
                    tmp_path, 0.0, "r")
    with pytest.raises(UserError, match="Classes defined there: Student, LunchRushUser, WriteHeavyUser, LunchBreakStudent"):
        LoadProcess("http://127.0.0.1:19001", LoadSettings(user_class="LunchUser", locustfile=LOCUSTFILE),
                    tmp_path, 0.0, "r")
    with pytest.raises(UserError, match="http://"):
        LoadProcess("127.0.0.1:19001", LoadSettings(locustfile=LOCUSTFILE), tmp_path, 0.0, "r")


def test_partial_last_row_is_left_for_later(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('[1.0,"load","GET /menu","ok",0.01,null,null]\n[2.0,"load","GET /m')
    records, offset = read_new_rows(rows, 0)
    assert [r.t for r in records] == [1.0]
    with rows.open("a") as f:
        f.write('enu","fail",0.02,null,{"code":503}]\n')
    records, _ = read_new_rows(rows, offset)
    assert [(r.t, r.status, r.detail) for r in records] == [(2.0, "fail", {"code": 503})]


class _Named(Exception):
    """An exception whose class name is chosen, standing in for requests/urllib3 classes."""


def _exception(name: str, message: str = "boom") -> Exception:
    return type(name, (_Named,), {})(message)


@pytest.mark.parametrize("exception, code, expected", [
    (None, 201, ("ok", None)),
    (_exception("ReadTimeout"), 0, ("unknown", {"error": "timeout"})),
    (_exception("ProtocolError", "Read timed out."), 0, ("unknown", {"error": "timeout"})),
    (_exception("HTTPError", "503 Server Error"), 503, ("fail", {"code": 503})),
    (_exception("ConnectionRefusedError", "[Errno 111] Connection refused"), 0,
     ("fail", {"error": "ConnectionRefusedError: [Errno 111] Connection refused"})),
    (_exception("ConnectTimeoutError", "timed out"), 0, ("fail", {"error": "ConnectTimeoutError: timed out"})),
])
def test_request_outcome(exception: Exception | None, code: int, expected: tuple[str, Any]) -> None:
    assert request_outcome(exception, code) == expected


def test_stand_in_port_range() -> None:
    with StandInPlatform() as stand_in:
        port = int(stand_in.url.rsplit(":", 1)[1])
        assert 19000 <= port <= 19099
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass


def _all_gone(load: LoadProcess) -> bool:
    pids = [load.pid, *load.worker_pids().values()]
    return all(pid is not None and pid_gone(pid) for pid in pids)


def start_fleet(platform: StandInPlatform, loads: list[LoadProcess], tmp_path: Path, stages: str,
                run_id: str) -> tuple[LoadProcess, float]:
    """A master and two workers of impatient users on the stand-in, started; and the history origin."""
    origin = time.monotonic()
    settings = LoadSettings(stages=tuple(parse_stages(stages)), wait_min_s=0.05, wait_max_s=0.1,
                            locustfile=LOCUSTFILE, workers=2)
    load = LoadProcess(platform.url, settings, tmp_path, origin, run_id=run_id)
    loads.append(load)
    load.start()
    return load, origin


@pytest.mark.serial  # asserts a healthy generator (CPU, event-loop lag): never beside other tests
def test_distributed_load_records_every_request_of_every_worker_once(
        platform: StandInPlatform, loads: list[LoadProcess], tmp_path: Path) -> None:
    load, origin = start_fleet(platform, loads, tmp_path, "4s:20@40", "dist")
    assert set(load.worker_pids()) == {"worker-1", "worker-2"}
    assert json.loads((tmp_path / "load" / "processes.json").read_text()) == {
        "master": load.pid, **load.worker_pids()}
    assert load.wait(timeout_s=40) == 0, load.log_tail()
    end = time.monotonic() - origin
    load.stop()
    assert _all_gone(load), "a Locust process outlived stop()"

    stats = load.stats()
    records = load.records()
    requests = [r for r in records if r.op in OPS]
    assert stats is not None and stats.done and stats.workers_expected == 2 and stats.workers_lost == ()
    # nothing dropped, nothing twice: our rows = the workers' own counts = Locust's own tally
    assert len(requests) == stats.requests == stats.reported == stats.locust_requests > 200
    assert stats.dropped == 0
    assert [r.t for r in records] == sorted(r.t for r in records)
    assert all(0 < r.t < end for r in records)
    # both workers made requests, with keys that cannot collide, each user's orders numbered 1, 2, 3...
    per_user: dict[str, list[int]] = defaultdict(list)
    for r in sorted((r for r in requests if r.op == "POST /orders"), key=lambda r: r.t):
        match = re.fullmatch(r"dist-(w[12]u\d+)-(\d+)", r.key or "")
        assert match, r.key
        per_user[match.group(1)].append(int(match.group(2)))
    assert {user[:2] for user in per_user} == {"w1", "w2"} and len(per_user) == 20
    assert all(numbers == list(range(1, len(numbers) + 1)) for numbers in per_user.values())
    acked = [r for r in requests if r.op == "POST /orders" and r.status == "ok"]
    assert acked and all(platform.by_key[r.key]["order_id"] == r.detail["order_id"] for r in acked if r.detail)
    ready = [r.detail for r in records if r.op == "worker-ready" and r.detail]
    assert sorted(d["worker"] for d in ready) == ["w1", "w2"]
    assert all(d["clock"]["method"] == "shared CLOCK_MONOTONIC" for d in ready)
    health = [r.detail for r in records if r.op == "generator" and r.detail]
    assert health and all(set(h["workers"]) <= {"w1", "w2"} and h["cpu_pct"] >= 0 for h in health)
    assert deviations(generator_report(records)) == []


@pytest.mark.serial  # asserts the only generator deviation is the lost worker: never beside other tests
def test_a_killed_worker_is_reported_and_the_load_holds(platform: StandInPlatform, loads: list[LoadProcess],
                                                        tmp_path: Path) -> None:
    load, origin = start_fleet(platform, loads, tmp_path, "60s:20@40", "kill")
    wait_for(lambda: (s := load.stats()) and s.users == 20 and s.requests > 50, 20, "both workers loading")
    victim = load.worker_pids()["worker-2"]
    os.killpg(victim, signal.SIGKILL)
    killed_t = time.monotonic() - origin
    lost = wait_for(lambda: (s := load.stats()) and s.workers_lost and s, 15, "the master to notice the lost worker")
    assert lost.workers_lost == ("w2",) and lost.workers_live == 1
    # the load holds: the master spreads w2's users over w1, and requests keep coming
    held = wait_for(lambda: (s := load.stats()) and s.users == 20 and s.requests > lost.requests + 50 and s,
                    15, "the surviving worker to carry all 20 users")
    assert load.running()
    load.stop()
    records = load.records()
    lost_rows = [r for r in records if r.op == "worker-lost"]
    assert len(lost_rows) == 1 and lost_rows[0].detail is not None
    assert lost_rows[0].detail["worker"] == "w2" and lost_rows[0].t >= killed_t
    assert lost_rows[0].detail["last_rows_t"] <= killed_t + 0.5
    found = deviations(generator_report(records))
    assert len(found) == 1 and "load worker w2 was lost" in found[0]
    requests = [r for r in records if r.op in OPS]
    assert len(requests) >= held.requests
    assert len({(r.key, r.op, r.t) for r in requests}) == len(requests)  # nothing written twice
    assert _all_gone(load)
