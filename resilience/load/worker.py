"""The Locust process: runs a locustfile as a library and records every request.

Started by `resilience.load.process.LoadProcess` (never imported by the harness,
which must not import Locust: gevent's monkey-patching breaks ssl in a process
that already imported requests/kubernetes/boto3):

    python -m resilience.load.worker --host URL --locustfile scenarios/lunch_rush.py \
        --user-class LunchRushUser --stages stages.json --out rows.jsonl \
        --origin <monotonic float> --status status.json --run-id ID

Every request becomes one history row (`resilience.history.Record.to_row()`):
`[t, "load", op, status, latency_s, key, detail]`, `t` = the request's start in
seconds since `--origin` on CLOCK_MONOTONIC (system-wide, so the harness can
read it). Locust's own stats keep only aggregates, hence our own recorder.

Outcome of a request: 2xx → "ok"; no answer within the client timeout →
"unknown" (the server may or may not have done it); an HTTP error, a refused or
reset connection, or a connect timeout (the request was never sent) → "fail".

Locust is imported inside `main()` only, so that the pure parts of this module
(`Recorder`, `request_outcome`) can be imported and tested anywhere.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from ..errors import UserError
from ..history import FAIL, INFO, LOAD, OK, UNKNOWN
from .shape import Stage, parse_stages

FLUSH_INTERVAL_S = 0.25  # rows reach the file at least this often
STATUS_INTERVAL_S = 1.0
WINDOW_S = 5.0  # status.json figures are over the last WINDOW_S seconds
EXIT_BAD_INPUT = 2

# Exception class names (anywhere in the exception's class hierarchy) by meaning.
# Names, not classes: importing requests here, before Locust, would break gevent.
_CONNECT_FAILURES = {"ConnectTimeout", "ConnectTimeoutError", "NewConnectionError", "ConnectionRefusedError"}
_TIMEOUTS = {"ReadTimeout", "ReadTimeoutError", "Timeout", "TimeoutError", "timeout"}


def op_name(request_type: str, name: str | None) -> str:
    """The history op: the request name if it already says the method ("GET /menu"), else "METHOD name"."""
    if name and " " in name:
        return name
    return f"{request_type} {name or ''}".strip()


def request_outcome(exception: BaseException | None, status_code: int) -> tuple[str, dict[str, Any] | None]:
    """(status, detail) of one finished request, from what Locust reports about it."""
    if exception is None:
        return OK, None
    class_names = {cls.__name__ for cls in type(exception).__mro__}
    if class_names & _CONNECT_FAILURES:
        return FAIL, {"error": _short(exception)}
    if class_names & _TIMEOUTS or "timed out" in str(exception).lower():
        return UNKNOWN, {"error": "timeout"}
    if status_code > 0:
        return FAIL, {"code": status_code}
    return FAIL, {"error": _short(exception)}


def _short(exception: BaseException) -> str:
    text = f"{type(exception).__name__}: {exception}"
    return text if len(text) <= 120 else text[:117] + "..."


class Recorder:
    """Request events → buffered history rows, plus the recent window for the status file.

    Runs on Locust's request event, so it stays cheap: one json.dumps and a few
    appends per request; the file is written by `flush()`, not per request.
    """

    def __init__(self, out: TextIO, origin_monotonic: float, clock: Callable[[], float] = time.monotonic):
        self.out = out
        self.origin = origin_monotonic
        self.clock = clock
        self.requests = 0
        self._pending: list[str] = []
        # (end time, latency, is_error) of recent requests, oldest first
        self._recent: collections.deque[tuple[float, float, bool]] = collections.deque()

    def on_request(self, request_type: str, name: str | None, response_time: float, response: Any = None,
                   context: dict[str, Any] | None = None, exception: BaseException | None = None,
                   **_: Any) -> None:
        """Locust's `request` event listener."""
        end = self.clock()
        latency = response_time / 1000.0
        op = op_name(request_type, name)
        status_code = getattr(response, "status_code", 0) or 0
        status, detail = request_outcome(exception, status_code)
        if status == OK and op == "POST /orders":
            status, detail = _acknowledged_order(response, status_code)
        key = (context or {}).get("key")
        self.add_row([round(end - latency - self.origin, 6), LOAD, op, status, round(latency, 6), key, detail])
        self.requests += 1
        self._recent.append((end, latency, status != OK))

    def add_row(self, row: list[Any]) -> None:
        self._pending.append(json.dumps(row, separators=(",", ":")) + "\n")

    def users_changed(self, users: int) -> None:
        """The `users` info row: the load shape changed to `users` users."""
        self.add_row([round(self.clock() - self.origin, 6), LOAD, "users", INFO, None, None, {"users": users}])

    def flush(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            self.out.write("".join(rows))
            self.out.flush()

    def window(self, window_s: float = WINDOW_S) -> dict[str, float | None]:
        """rps, error % and P99 (ms) of the requests that ended in the last `window_s` seconds."""
        horizon = self.clock() - window_s
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        count = len(self._recent)
        if count == 0:
            return {"rps": 0.0, "error_pct": 0.0, "p99_ms": None}
        errors = sum(1 for _, _, is_error in self._recent if is_error)
        latencies = sorted(latency for _, latency, _ in self._recent)
        p99 = latencies[max(0, math.ceil(0.99 * count) - 1)]
        return {"rps": round(count / window_s, 2), "error_pct": round(100.0 * errors / count, 3),
                "p99_ms": round(p99 * 1000.0, 3)}


def _acknowledged_order(response: Any, status_code: int) -> tuple[str, dict[str, Any]]:
    """An ok POST /orders is an acknowledged write only if the answer names the order."""
    try:
        body = response.json()
        return OK, {"order_id": body["order_id"], "seq": body["seq"]}
    except Exception:  # noqa: BLE001 - any unreadable answer is the same failure
        return FAIL, {"code": status_code, "error": "2xx without order_id and seq"}


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically: readers never see a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status), encoding="utf-8")
    tmp.replace(path)


def read_stages(path: Path) -> list[Stage]:
    """Stages from the JSON file LoadProcess writes (`{"stages": [...]}` or a bare list)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read load stages from {path}: {exc}. Pass a JSON list of stages.") from None
    stages = parse_stages(data["stages"] if isinstance(data, dict) else data, where=str(path))
    if not stages:
        raise UserError(f"{path} has no stages. Give at least one stage, e.g. [{{'duration_s': 30, 'users': 10}}].")
    return stages


def load_user_class(locustfile: Path, class_name: str) -> type:
    """The user class from the locustfile (imported as a module, like Locust does)."""
    from locust import User

    if not locustfile.is_file():
        raise UserError(f"locustfile {locustfile} does not exist. Pass an existing file with --locustfile.")
    spec = importlib.util.spec_from_file_location(locustfile.stem, locustfile)
    if spec is None or spec.loader is None:
        raise UserError(f"locustfile {locustfile} cannot be imported; it must be a Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - whatever the locustfile raises, the fix is in the locustfile
        raise UserError(f"locustfile {locustfile} failed to import: {type(exc).__name__}: {exc}. "
                        f"Fix the locustfile (try `locust -f {locustfile} --help`).") from None
    user_class = getattr(module, class_name, None)
    if not (isinstance(user_class, type) and issubclass(user_class, User)):
        found = sorted(name for name, value in vars(module).items()
                       if isinstance(value, type) and issubclass(value, User) and not getattr(value, "abstract", False))
        raise UserError(f"locustfile {locustfile} has no Locust user class {class_name!r}. "
                        f"User classes there: {', '.join(found) or 'none'}. Pass one of them as the user class.")
    return user_class


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m resilience.load.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--host", required=True, help="base URL of the platform")
    parser.add_argument("--locustfile", required=True, type=Path)
    parser.add_argument("--user-class", required=True)
    parser.add_argument("--stages", required=True, type=Path, help="JSON file with the stages")
    parser.add_argument("--out", required=True, type=Path, help="history rows (JSON lines), appended")
    parser.add_argument("--status", required=True, type=Path, help="status JSON, rewritten every second")
    parser.add_argument("--origin", required=True, type=float, help="run origin on time.monotonic()")
    parser.add_argument("--run-id", required=True, help="prefix of the idempotency keys")
    parser.add_argument("--timeout", type=float, default=2.0, help="client timeout per request, seconds")
    parser.add_argument("--wait-min", type=float, default=0.5, help="seconds between a user's tasks, at least")
    parser.add_argument("--wait-max", type=float, default=1.5, help="seconds between a user's tasks, at most")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The scenario reads these when it is imported (see scenarios/lunch_rush.py).
    os.environ["RESILIENCE_RUN_ID"] = args.run_id
    os.environ["RESILIENCE_LOAD_TIMEOUT_S"] = str(args.timeout)
    os.environ["RESILIENCE_LOAD_WAIT_MIN_S"] = str(args.wait_min)
    os.environ["RESILIENCE_LOAD_WAIT_MAX_S"] = str(args.wait_max)
    try:
        stages = read_stages(args.stages)
        import locust  # noqa: F401  (monkey-patches with gevent: must come before anything uses sockets)
        from locust.log import setup_logging

        setup_logging("INFO")
        user_class = load_user_class(args.locustfile.resolve(), args.user_class)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    with args.out.open("a", encoding="utf-8") as out:
        run(args, stages, user_class, Recorder(out, args.origin))
    return 0


def run(args: argparse.Namespace, stages: list[Stage], user_class: type, recorder: Recorder) -> None:
    """Drive the stages with a LocalRunner until they end, SIGTERM/SIGINT arrives, or the parent dies."""
    import gevent
    import gevent.event
    from locust.env import Environment

    env = Environment(user_classes=[user_class], host=args.host)
    env.events.request.add_listener(recorder.on_request)
    runner = env.create_local_runner()
    stop = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)

    load_start = time.monotonic()
    current = {"stage": 0, "users": stages[0].users}

    def status(done: bool = False) -> dict[str, Any]:
        return {"t": round(time.monotonic() - args.origin, 3), "pid": os.getpid(), "users": runner.user_count,
                "target_users": current["users"], "requests": recorder.requests,
                # Locust's own count, kept apart from ours: the two must agree (nothing dropped, nothing twice)
                "locust_requests": env.stats.total.num_requests, **recorder.window(),
                "stage": current["stage"], "done": done}

    parent = os.getppid()

    def housekeeping() -> None:
        next_status = 0.0
        while True:
            if os.getppid() != parent:  # the harness died without stopping us: do not load the platform forever
                stop.set()
            recorder.flush()
            if time.monotonic() >= next_status:
                write_status(args.status, status())
                next_status = time.monotonic() + STATUS_INTERVAL_S
            gevent.sleep(FLUSH_INTERVAL_S)

    keeper = gevent.spawn(housekeeping)
    stage_end = load_start
    try:
        for index, stage in enumerate(stages):
            current.update(stage=index, users=stage.users)
            recorder.users_changed(stage.users)
            runner.start(stage.users, spawn_rate=stage.spawn_rate)
            if index == 0:
                write_status(args.status, status())  # tells LoadProcess.start() that the load runs
            stage_end += stage.duration_s
            if stop.wait(timeout=None if math.isinf(stage_end) else max(0.0, stage_end - time.monotonic())):
                break
    finally:
        keeper.kill()
        runner.quit()
        if current["users"] != 0:
            current["users"] = 0
            recorder.users_changed(0)
        recorder.flush()
        write_status(args.status, status(done=True))


if __name__ == "__main__":
    sys.exit(main())
