"""The Locust master (`--role master`): drives the stages over N workers and writes every row they send.

Locust's MasterRunner does the distribution (users spread over workers,
heartbeats, its own aggregated stats). What is ours:

1. it waits until all N workers said hello (their clocks measured) before the
   first stage, so no worker starts late or stamps rows on an unmeasured clock;
2. it appends each worker's row batches to the rows file as they arrive and
   keeps the books (fleet.py): rows received vs. requests each worker counted;
3. a worker Locust marks missing (no heartbeat for 3 s) or that quits is a
   `worker-lost` row in the history, and its users are spread over the others
   again, so the load holds and the run knows it lost a generator;
4. at the end it asks every worker for its last batch (FINISH) and waits for
   them all before quitting, so nothing in flight at the end is lost;
5. with --http-port it serves the rows, the status and its clock over HTTP,
   for a harness that is not on this host (workers in a cluster).

Runs only in the Locust process (imports gevent and Locust).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .fleet import FINISH, HELLO, PING, PONG, ROWS, FleetLedger
from .health import REPORT_INTERVAL_S, GeneratorHealth
from .recorder import FLUSH_INTERVAL_S, STATUS_INTERVAL_S, Recorder, write_status
from .shape import Stage
from .runtime import drive_stages, end_load, stop_event_on_signals, watch_parent

EXIT_ALL_WORKERS_LOST = 3  # the master's exit status when every worker was lost
WORKERS_CONNECT_TIMEOUT_S = 60.0
FINAL_BATCH_TIMEOUT_S = 15.0


def run_master(args: argparse.Namespace, stages: list[Stage], user_class: type, recorder: Recorder) -> int:
    import gevent
    from locust.env import Environment

    env = Environment(user_classes=[user_class], host=args.host)
    runner = env.create_master_runner(master_bind_host=args.bind_host, master_bind_port=args.bind_port)
    if args.master_info:
        write_status(args.master_info, {"port": runner.server.port, "pid": os.getpid()})
    ledger = FleetLedger(args.workers)
    stop = stop_event_on_signals()
    health = GeneratorHealth()
    current = {"stage": 0, "users": stages[0].users, "spawn_rate": 0}
    out = recorder.out
    history_now: Callable[[], float] = lambda: round(time.monotonic() - args.origin, 6)  # noqa: E731

    def on_ping(environment: Any, msg: Any, **_: Any) -> None:
        runner.send_message(PONG, {"sent": msg.data["sent"], "remote": time.monotonic(), "origin": args.origin},
                            client_id=msg.node_id)

    def on_hello(environment: Any, msg: Any, **_: Any) -> None:
        book = ledger.hello(msg.node_id, msg.data)
        recorder.info("worker-ready", {"worker": book.worker, "clock": book.clock.to_json()})

    def on_rows(environment: Any, msg: Any, **_: Any) -> None:
        text = ledger.receive(msg.node_id, msg.data, history_now())
        if text:
            out.write(text)

    for kind, listener in ((PING, on_ping), (HELLO, on_hello), (ROWS, on_rows)):
        runner.register_message(kind, listener)

    def status(done: bool = False) -> dict[str, Any]:
        return {"t": round(time.monotonic() - args.origin, 3), "pid": os.getpid(), "users": runner.user_count,
                "target_users": current["users"], "requests": ledger.requests(),
                "locust_requests": env.stats.total.num_requests, **ledger.window(), "stage": current["stage"],
                "done": done, **ledger.to_json(), "cpu_pct": fleet_health.get("cpu_pct"),
                "lag_ms": fleet_health.get("lag_ms")}

    fleet_health: dict[str, Any] = {}

    def notice_lost_workers() -> None:
        """Workers Locust marked missing or that left without their final batch: record them, spread their users."""
        present = {c.id: c.state for c in runner.clients.values()}
        lost = []
        for book in ledger.live():
            state = present.get(book.client_id)
            why = ("no heartbeat for 3 s (Locust marked it missing)" if state == "missing"
                   else "it left without sending its last rows" if state is None else None)
            if why and not book.final and ledger.lose(book.client_id, history_now(), why):
                lost.append(book)
        for book in lost:
            recorder.info("worker-lost", {"worker": book.worker, "why": book.lost_why, "rows": book.rows,
                                          "users": book.users, "workers_live": ledger.ready,
                                          "last_rows_t": book.last_t})
        if lost and ledger.ready and current["users"]:
            # spread the lost users over the rest, within about a second (they were running a moment ago);
            # in its own greenlet, as a master's start() blocks while it hands users out
            rate = max(current["spawn_rate"], sum(book.users for book in lost), 1)
            gevent.spawn(runner.start, current["users"], spawn_rate=rate)
        if ledger.ready == 0 and ledger.books:
            stop.set()

    def housekeeping() -> None:
        next_status = next_health = 0.0
        while True:
            now = time.monotonic()
            if now >= next_health:
                fleet_health.clear()
                fleet_health.update(ledger.health(health.take()))
                recorder.info("generator", {**fleet_health, "users": runner.user_count,
                                            "target_users": current["users"]})
                next_health = now + REPORT_INTERVAL_S
            notice_lost_workers()
            recorder.flush()
            out.flush()  # the workers' batches are written as they come; make them visible
            if now >= next_status:
                write_status(args.status, status())
                next_status = now + STATUS_INTERVAL_S
            gevent.sleep(FLUSH_INTERVAL_S)

    greenlets = [gevent.spawn(health.probe), watch_parent(stop)]
    finished = {"done": False}

    def stop_stages() -> None:
        """POST /stop: end the stages now (once they are over it changes nothing: only SIGTERM ends a linger)."""
        if not finished["done"]:
            stop.set()

    if args.http_port:
        greenlets.append(serve_http(args.http_port, args.out, args.status, stop_stages))
    keeper = None
    try:
        if not wait_until(lambda: ledger.ready >= args.workers or stop.is_set(), WORKERS_CONNECT_TIMEOUT_S):
            print(f"error: only {ledger.ready} of {args.workers} load workers connected within "
                  f"{WORKERS_CONNECT_TIMEOUT_S:.0f} s; see the workers' logs", flush=True)
            return EXIT_ALL_WORKERS_LOST
        if stop.is_set():
            return 0

        def first_stage_started() -> None:
            nonlocal keeper
            write_status(args.status, status())  # tells LoadProcess.start() that the load runs
            keeper = gevent.spawn(housekeeping)

        def on_stage(stage: Stage) -> None:
            current["spawn_rate"] = int(stage.spawn_rate)

        drive_stages(runner, stages, recorder, stop, first_stage_started, current, on_stage)
        if keeper is not None:
            keeper.kill()
        collect_final_batches(runner, ledger, recorder, history_now)
    finally:
        if keeper is not None:
            keeper.kill()
        end_load(runner, recorder, current)
        out.flush()
        write_status(args.status, status(done=True))
        finished["done"] = True
    if args.linger:
        stop.clear()
        stop.wait()  # keep serving /rows until the harness has them and stops us
    for greenlet in greenlets:
        greenlet.kill()
    return EXIT_ALL_WORKERS_LOST if ledger.books and ledger.ready == 0 else 0


def collect_final_batches(runner: Any, ledger: FleetLedger, recorder: Recorder,
                          history_now: Callable[[], float]) -> None:
    """Ask each live worker to stop and send its last rows; wait for all of them (a deadline, then lost)."""
    for book in ledger.live():
        runner.send_message(FINISH, {}, client_id=book.client_id)
    if not wait_until(ledger.all_final, FINAL_BATCH_TIMEOUT_S):
        for book in ledger.live():
            if not book.final and ledger.lose(book.client_id, history_now(),
                                              f"no last batch within {FINAL_BATCH_TIMEOUT_S:.0f} s of the end"):
                recorder.info("worker-lost", {"worker": book.worker, "why": book.lost_why, "rows": book.rows,
                                              "users": book.users, "workers_live": ledger.ready})


def wait_until(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    """Poll `condition` on the gevent loop until it holds (True) or `timeout_s` passes (False)."""
    import gevent

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(poll_s)
    return True


def serve_http(port: int, rows_path: Path, status_path: Path, stop_stages: Callable[[], None]) -> Any:
    """A greenlet serving GET /rows?offset=N, /status, /clock and POST /stop (for a harness on another host)."""
    import gevent
    from gevent.pywsgi import WSGIServer

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        headers = [("Content-Type", "application/json")]
        if path == "/stop" and environ.get("REQUEST_METHOD") == "POST":
            stop_stages()
            start_response("202 Accepted", headers)
            return [b'{"stopping": true}']
        if path == "/rows":
            query = dict(part.partition("=")[::2] for part in environ.get("QUERY_STRING", "").split("&") if part)
            offset = int(query.get("offset") or 0)
            try:
                with rows_path.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            data = data[:data.rfind(b"\n") + 1]  # complete lines only
            start_response("200 OK", headers + [("X-Next-Offset", str(offset + len(data)))])
            return [data]
        if path == "/status":
            try:
                body = status_path.read_bytes()
            except FileNotFoundError:
                start_response("503 Service Unavailable", headers)
                return [b'{"error": "no status yet"}']
            start_response("200 OK", headers)
            return [body]
        if path == "/clock":
            start_response("200 OK", headers)
            return [json.dumps({"monotonic": time.monotonic()}).encode()]
        start_response("404 Not Found", headers)
        return [b'{"error": "GET /rows?offset=N, /status or /clock, or POST /stop"}']

    server = WSGIServer(("0.0.0.0", port), app, log=None)
    return gevent.spawn(server.serve_forever)
