"""The Locust process: runs a locustfile as a library and records every request.

Started by `resilience.load.process.LoadProcess` (never imported by the harness,
which must not import Locust: gevent's monkey-patching breaks ssl in a process
that already imported requests/kubernetes/boto3). One module, three roles:

    --role local   (default) one process makes all the load and writes the rows:
        python -m resilience.load.worker --host URL --locustfile scenarios/lunch_rush.py \
            --user-class LunchRushUser --stages stages.json --out rows.jsonl \
            --origin <monotonic float> --status status.json --run-id ID
    --role master  Locust's master (master.py): drives the stages over N workers,
        writes the rows they send (add --workers N --bind-host H --bind-port P
        --master-info master.json [--http-port Q] [--linger])
    --role worker  a Locust worker (fleet_worker.py): makes requests, sends its
        rows to the master (--master-host H --master-port P --worker-id ID
        [--shared-clock]); needs no --stages/--out/--status/--origin

Rows are history rows (recorder.py). Locust's own stats keep only aggregates,
hence our own recorder; its count is kept beside ours in the status, and the
two must agree.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from .health import REPORT_INTERVAL_S, GeneratorHealth
from .recorder import EXIT_BAD_INPUT, FLUSH_INTERVAL_S, STATUS_INTERVAL_S, Recorder, write_status
from .runtime import UsersOutOfGc, drive_stages, end_load, raise_open_files_limit, stop_event_on_signals, watch_parent
from .shape import Stage, parse_stages

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
    parser.add_argument("--role", choices=("local", "master", "worker"), default="local")
    parser.add_argument("--host", required=True, help="base URL of the platform")
    parser.add_argument("--locustfile", required=True, type=Path)
    parser.add_argument("--user-class", required=True)
    parser.add_argument("--run-id", required=True, help="prefix of the idempotency keys")
    parser.add_argument("--timeout", type=float, default=2.0, help="client timeout per request, seconds")
    parser.add_argument("--wait-min", type=float, help="seconds between a user's tasks, at least (default: the class's)")
    parser.add_argument("--wait-max", type=float, help="seconds between a user's tasks, at most (default: the class's)")
    local = parser.add_argument_group("local and master")
    local.add_argument("--stages", type=Path, help="JSON file with the stages")
    local.add_argument("--out", type=Path, help="history rows (JSON lines), appended")
    local.add_argument("--status", type=Path, help="status JSON, rewritten every second")
    local.add_argument("--origin", type=float, help="run origin on time.monotonic()")
    master = parser.add_argument_group("master")
    master.add_argument("--workers", type=int, default=1, help="workers to wait for before the first stage")
    master.add_argument("--bind-host", default="127.0.0.1", help="where workers connect ('*' for all interfaces)")
    master.add_argument("--bind-port", type=int, default=0, help="0: any free port, written to --master-info")
    master.add_argument("--master-info", type=Path, help="JSON file the master writes its port to")
    master.add_argument("--http-port", type=int, help="serve /rows, /status and /clock over HTTP on this port")
    master.add_argument("--linger", action="store_true", help="after the stages, keep serving until SIGTERM")
    worker = parser.add_argument_group("worker")
    worker.add_argument("--master-host", default="127.0.0.1")
    worker.add_argument("--master-port", type=int)
    worker.add_argument("--worker-id", help="this worker's name in the rows and the status (w1, a pod name)")
    worker.add_argument("--shared-clock", action="store_true",
                        help="the master reads the same CLOCK_MONOTONIC (same host): no offset to measure")
    args = parser.parse_args(argv)
    needed = {"local": ("stages", "out", "status", "origin"), "master": ("stages", "out", "status", "origin"),
              "worker": ("master_port", "worker_id")}[args.role]
    missing = [f"--{name.replace('_', '-')}" for name in needed if getattr(args, name) is None]
    if missing:
        parser.error(f"--role {args.role} needs {', '.join(missing)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The scenario reads these when it is imported (see scenarios/lunch_rush.py).
    os.environ["RESILIENCE_RUN_ID"] = args.run_id
    os.environ["RESILIENCE_WORKER_ID"] = args.worker_id or ""
    os.environ["RESILIENCE_LOAD_TIMEOUT_S"] = str(args.timeout)
    if args.wait_min is not None and args.wait_max is not None:
        os.environ["RESILIENCE_LOAD_WAIT_MIN_S"] = str(args.wait_min)
        os.environ["RESILIENCE_LOAD_WAIT_MAX_S"] = str(args.wait_max)
    raise_open_files_limit()
    try:
        stages = read_stages(args.stages) if args.role != "worker" else []
        import locust  # noqa: F401  (monkey-patches with gevent: must come before anything uses sockets)
        from locust.log import setup_logging

        setup_logging("INFO")
        user_class = load_user_class(args.locustfile.resolve(), args.user_class)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    if args.role == "worker":
        from .fleet_worker import run_worker
        return run_worker(args, user_class)
    with args.out.open("a", encoding="utf-8") as out:
        recorder = Recorder(out, args.origin)
        if args.role == "master":
            from .master import run_master
            return run_master(args, stages, user_class, recorder)
        run_local(args, stages, user_class, recorder)
    return 0


def run_local(args: argparse.Namespace, stages: list[Stage], user_class: type, recorder: Recorder) -> None:
    """Drive the stages with a LocalRunner until they end, SIGTERM/SIGINT arrives, or the parent dies."""
    import gevent
    from locust.env import Environment

    env = Environment(user_classes=[user_class], host=args.host)
    env.events.request.add_listener(recorder.on_request)
    runner = env.create_local_runner()
    stop = stop_event_on_signals()
    health = GeneratorHealth()
    health.track_gc()
    current = {"stage": 0, "users": stages[0].users}

    def status(done: bool = False) -> dict[str, Any]:
        return {"t": round(time.monotonic() - args.origin, 3), "pid": os.getpid(), "users": runner.user_count,
                "target_users": current["users"], "requests": recorder.requests,
                # Locust's own count, kept apart from ours: the two must agree (nothing dropped, nothing twice)
                "locust_requests": env.stats.total.num_requests, **recorder.window(),
                "stage": current["stage"], "done": done, "workers_expected": 1, "workers_live": 1,
                "cpu_pct": last_health.get("cpu_pct"), "lag_ms": last_health.get("lag_ms")}

    last_health: dict[str, Any] = {}

    frozen = UsersOutOfGc()

    def housekeeping() -> None:
        next_status = next_health = 0.0
        while True:
            now = time.monotonic()
            if now >= next_health:
                frozen.after_spawning(runner.user_count)
                last_health.update(health.take())
                recorder.info("generator", {**last_health, "users": runner.user_count,
                                            "target_users": current["users"], "workers_live": 1})
                next_health = now + REPORT_INTERVAL_S
            recorder.flush()
            if now >= next_status:
                write_status(args.status, status())
                next_status = now + STATUS_INTERVAL_S
            gevent.sleep(FLUSH_INTERVAL_S)

    greenlets = [gevent.spawn(health.probe), watch_parent(stop)]
    keeper = None
    try:
        def first_stage_started() -> None:
            nonlocal keeper
            write_status(args.status, status())  # tells LoadProcess.start() that the load runs
            keeper = gevent.spawn(housekeeping)
        drive_stages(runner, stages, recorder, stop, first_stage_started, current)
    finally:
        for greenlet in greenlets + ([keeper] if keeper is not None else []):
            greenlet.kill()
        end_load(runner, recorder, current)
        write_status(args.status, status(done=True))


if __name__ == "__main__":
    sys.exit(main())
