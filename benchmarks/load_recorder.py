"""How much does recording every request cost? Plain Locust vs our worker, on one core.

A script, not a test: it prints figures and asserts nothing about speed.

    .venv/bin/python benchmarks/load_recorder.py [--seconds 10] [--users 50] [--repeat 1]

It starts a fast stand-in of the platform (a bare ASGI app under uvicorn with
uvloop + httptools, pinned to CPU 1 when there are two), then runs the same
scenario with users that never wait, pinned to CPU 0 so that Locust is the
bottleneck:
  (a) plain Locust, headless, no recorder (requests counted from its CSV stats);
  (b) resilience.load.worker through LoadProcess, recording every request.
and prints requests/s of each and the overhead ratio. Ports: 19900-19949.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from resilience.load import LoadProcess, LoadSettings, Stage  # noqa: E402

LOCUSTFILE = REPO / "scenarios" / "lunch_rush.py"
OPS = {"GET /menu", "POST /orders", "GET /orders/{id}", "POST /payments"}
MENU = json.dumps([{"item_id": i, "name": f"item {i}", "price": 30.0 + i} for i in range(1, 6)]).encode()


# ---- the stand-in platform (runs in its own process: `load_recorder.py --serve PORT`)

ORDERS: dict[str, bytes] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The four endpoints, in memory, as cheap as an ASGI app gets."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    method, path = scope["method"], scope["path"]
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    code, payload = 404, b"{}"
    if method == "GET" and path == "/menu":
        code, payload = 200, MENU
    elif method == "POST" and path == "/orders":
        order = json.loads(body)
        seq = len(ORDERS) + 1
        payload = json.dumps({"order_id": f"o{seq}", "seq": seq, "idempotency_key": order["idempotency_key"],
                              "total": 42.0, "created_at": time.time()}).encode()
        code, ORDERS[f"o{seq}"] = 201, payload
    elif method == "GET" and path.startswith("/orders/"):
        found = ORDERS.get(path[len("/orders/"):])
        code, payload = (200, found) if found else (404, b"{}")
    elif method == "POST" and path == "/payments":
        code, payload = 201, b'{"payment_id":"p1"}'
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, lifespan="off")


# ---- the benchmark

def free_port(first: int = 19900, last: int = 19949) -> int:
    for port in range(first, last + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free port in {first}-{last}")


def pin(pid: int, cpu: int) -> None:
    """Like `taskset -c CPU` for an already started process (threads it starts later inherit it)."""
    if cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(pid, {cpu})


def start_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    pin(server.pid, 1)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"stand-in server exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.05)
    stop_group(server)
    raise SystemExit(f"stand-in server did not listen on {port} within 15 s")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def quiet_env() -> dict[str, str]:
    """Users that never wait: the load generator, not the scenario, sets the pace."""
    return {**os.environ, "RESILIENCE_LOAD_WAIT_MIN_S": "0", "RESILIENCE_LOAD_WAIT_MAX_S": "0",
            "PYTHONPATH": str(REPO)}


def children_cpu_s() -> float:
    """CPU seconds used by this script's finished (reaped) children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_plain_locust(url: str, users: int, seconds: int, workdir: Path) -> int:
    """Requests made by plain headless Locust (from its CSV stats)."""
    prefix = workdir / "plain"
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "LunchRushUser", "--headless",
               "-u", str(users), "-r", str(users * 10), "-t", f"{seconds}s", "--host", url, "--csv", str(prefix),
               "--only-summary", "--loglevel", "WARNING"]
    with (workdir / "plain.log").open("wb") as log:
        locust = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=quiet_env(), cwd=workdir,
                                  start_new_session=True)
    try:
        pin(locust.pid, 0)
        locust.wait(seconds + 30)
    finally:
        stop_group(locust)
    with (workdir / "plain_stats.csv").open() as f:
        aggregated = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    return int(aggregated["Request Count"])


def run_worker(url: str, users: int, seconds: int, workdir: Path) -> int:
    """Requests made by resilience.load.worker (recording every request), from its rows."""
    settings = LoadSettings(stages=(Stage(seconds, users, users * 10),), wait_min_s=0, wait_max_s=0,
                            locustfile=str(LOCUSTFILE))
    load = LoadProcess(url, settings, workdir, time.monotonic(), run_id="bench")
    try:
        load.start()
        assert load.pid is not None
        pin(load.pid, 0)
        load.wait(seconds + 30)
    finally:
        load.stop()
    return sum(1 for r in load.records() if r.op in OPS)


def measure(run: Any, *args: Any) -> tuple[int, float]:
    """(requests, CPU seconds of the Locust process) of one run."""
    cpu_before = children_cpu_s()
    requests = run(*args)
    return requests, children_cpu_s() - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=1, help="alternate (a) and (b) this many times")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        workdir = Path(tmp)
        server = start_server(port, workdir / "server.log")
        url = f"http://127.0.0.1:{port}"
        plain: list[tuple[int, float]] = []
        recorded: list[tuple[int, float]] = []
        try:
            for i in range(args.repeat):
                plain_dir = workdir / f"plain-{i}"
                plain_dir.mkdir()
                plain.append(measure(run_plain_locust, url, args.users, args.seconds, plain_dir))
                recorded.append(measure(run_worker, url, args.users, args.seconds, workdir / f"worker-{i}"))
                print(f"round {i + 1}: plain Locust {describe(plain[-1], args.seconds)}", flush=True)
                print(f"         worker+recorder {describe(recorded[-1], args.seconds)}", flush=True)
        finally:
            stop_group(server)
    cpus = "Locust on CPU 0, server on CPU 1" if (os.cpu_count() or 1) > 1 else "one CPU shared"
    print(f"\n{args.users} users, no wait, {args.seconds} s per run, {cpus}; best of {args.repeat}:")
    best_plain = max(plain, key=lambda m: m[0])
    best_recorded = max(recorded, key=lambda m: m[0])
    print(f"  plain Locust (no recorder):     {describe(best_plain, args.seconds)}")
    print(f"  resilience worker + recorder:   {describe(best_recorded, args.seconds)}")
    rps_ratio = best_recorded[0] / best_plain[0]
    efficiency_ratio = max(r / cpu for r, cpu in recorded) / max(r / cpu for r, cpu in plain)
    print(f"  ratio worker/plain: {rps_ratio:.3f} by requests/s, {efficiency_ratio:.3f} by requests per CPU-second")
    print(f"  recorder overhead: {100 * (1 - efficiency_ratio):+.1f}% per request (CPU), "
          f"{100 * (1 - rps_ratio):+.1f}% in requests/s (wall clock; noisy on a shared machine)")


def describe(measured: tuple[int, float], seconds: int) -> str:
    requests, cpu_s = measured
    return f"{requests / seconds:8.1f} req/s, {cpu_s:5.2f} CPU-s, {requests / cpu_s:8.1f} req per CPU-s"


if __name__ == "__main__":
    main()
