"""The harness's handle on the Locust processes: start them, watch them, stop them, read their rows.

Locust runs in its own processes (`resilience.load.worker`) because importing it
monkey-patches the interpreter with gevent, which breaks ssl in a process that
already imported requests, kubernetes or boto3. So this module never imports
locust or gevent; it talks to Locust through files in `run_dir/load/`:

    stages.json   the stages to run (written here)
    rows.jsonl    one history row per request (flushed ≤ 0.25 s)
    status.json   live figures, rewritten atomically every second
    worker.log    with one process: its stdout and stderr
    master.log, worker-N.log, master.json   with --workers N >= 2: Locust's
                  master (which writes rows.jsonl and status.json from what
                  the workers send) and each worker; master.json holds the
                  port the workers connect to
    processes.json  {name: pid} of every Locust process started (each leads its process group)

With `workers` 1 a single Locust process makes the load; with N >= 2 a master
and N workers, each its own process group, all on this host (so every row is
stamped on the same CLOCK_MONOTONIC as the harness's).
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ..atomic import write_json_atomic
from ..errors import HarnessError, UserError
from ..history import FAIL, LOAD, OK, UNKNOWN, Record
from .clock_sync import ClockSync, shared
from .shape import LoadSettings

MASTER_INFO_TIMEOUT_S = 30.0

WORKER_MODULE = "resilience.load.worker"
EXIT_BAD_INPUT = 2  # the worker's exit code for a bad locustfile or stages
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the `resilience` package


@dataclass(frozen=True)
class LoadStats:
    """What the worker last reported in status.json (figures over its last 5 s)."""

    t: float  # history time of the report
    users: int  # users running now
    target_users: int  # users the current stage asks for
    requests: int  # requests recorded so far
    rps: float
    error_pct: float  # failed + unknown, percent
    p99_ms: float | None  # None when no request ended in the window
    stage: int  # index of the current stage
    done: bool  # the worker has finished and flushed everything
    locust_requests: int | None = None  # Locust's own count of requests (successes and failures)
    workers_expected: int = 1
    workers_live: int = 1
    workers_lost: tuple[str, ...] = ()
    dropped: int = 0  # rows a worker recorded that never reached the rows file
    reported: int | None = None  # requests the generator says it recorded (the workers' own counts, summed)
    cpu_pct: float | None = None  # the busiest generator process's CPU share (100 = one core)
    lag_ms: float | None = None  # the worst event-loop lag among them

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LoadStats":
        return cls(t=float(data["t"]), users=int(data["users"]), target_users=int(data.get("target_users", 0)),
                   requests=int(data["requests"]), rps=float(data["rps"]), error_pct=float(data["error_pct"]),
                   p99_ms=None if data.get("p99_ms") is None else float(data["p99_ms"]),
                   stage=int(data.get("stage", 0)), done=bool(data.get("done", False)),
                   locust_requests=None if data.get("locust_requests") is None else int(data["locust_requests"]),
                   workers_expected=int(data.get("workers_expected", 1)),
                   workers_live=int(data.get("workers_live", 1)),
                   workers_lost=tuple(str(w) for w in data.get("workers_lost") or ()),
                   dropped=int(data.get("dropped", 0)),
                   reported=int(data.get("reported", data["requests"])),
                   cpu_pct=None if data.get("cpu_pct") is None else float(data["cpu_pct"]),
                   lag_ms=None if data.get("lag_ms") is None else float(data["lag_ms"]))


def check_load_target(url: str, run_id: str) -> None:
    """The URL the load goes to and the run id its keys start with, before any Locust process starts."""
    if not url.startswith(("http://", "https://")):
        raise UserError(f"load target URL {url!r} must start with http:// or https://, e.g. http://127.0.0.1:8080.")
    if not run_id or any(c.isspace() for c in run_id):
        raise UserError(f"load run id {run_id!r} must be non-empty without spaces: it prefixes idempotency keys.")


def refusal_in(log: str) -> str | None:
    """What a Locust process that refused its input (exit EXIT_BAD_INPUT) said to fix: its last "error: " line."""
    reasons = [line[len("error: "):] for line in log.splitlines() if line.startswith("error: ")]
    return reasons[-1] if reasons else None


def load_summary(records: list[Record], stats: LoadStats | None) -> dict[str, Any]:
    """The `load/summary` row: request rows in the history vs. what the generator says it recorded.

    `reported` is the workers' own running count (the single process's count of
    rows it wrote); `locust_requests` is Locust's separate tally. With nothing
    lost on the way, recorded == reported, and Locust agrees unless a worker died
    between its stats report and its row batch.
    """
    recorded = sum(1 for r in records if r.source == LOAD and r.status in (OK, FAIL, UNKNOWN))
    reported = stats.reported if stats is not None else None
    return {"recorded": recorded, "reported": reported,
            "locust_requests": stats.locust_requests if stats is not None else None,
            "dropped": max(0, reported - recorded) if reported is not None else None,
            "workers_expected": stats.workers_expected if stats is not None else None,
            "workers_lost": list(stats.workers_lost) if stats is not None else []}


def user_classes_in(locustfile: Path) -> list[str]:
    """Names of the classes a locustfile defines at top level (read, not imported: no locust here)."""
    try:
        tree = ast.parse(locustfile.read_text(encoding="utf-8"), filename=str(locustfile))
    except SyntaxError as exc:
        raise UserError(f"locustfile {locustfile} is not valid Python (line {exc.lineno}: {exc.msg}). "
                        f"Fix the syntax error.") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # not UTF-8, NUL bytes, absurd nesting
        raise UserError(f"locustfile {locustfile} cannot be read as Python source ({type(exc).__name__}: "
                        f"{str(exc)[:200]}). Save it as UTF-8 Python.") from None
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


def check_locustfile(settings: LoadSettings, base: Path | None = None) -> Path:
    """The locustfile's absolute path, after checking it exists and defines the user class.

    A relative path is looked up in `base` (default: the current directory), then
    in the checkout that holds this package (where scenarios/ lives).
    """
    path = settings.locustfile_path(base)
    if not path.is_file() and settings.locustfile_path(_PACKAGE_ROOT).is_file():
        path = settings.locustfile_path(_PACKAGE_ROOT)
    if not path.is_file():
        raise UserError(f"{settings.source}: locustfile {path} does not exist. Set 'locustfile' to an existing "
                        f"file, e.g. scenarios/lunch_rush.py (relative paths start at the current directory).")
    classes = user_classes_in(path)
    if settings.user_class not in classes:
        raise UserError(f"{settings.source}: locustfile {path} defines no class {settings.user_class!r}. "
                        f"Classes defined there: {', '.join(classes) or 'none'}. Set 'user_class' to one of them.")
    return path


def read_new_rows(path: Path, offset: int) -> tuple[list[Record], int]:
    """Records from complete lines after byte `offset`, and the offset after the last complete line.

    The worker may be in the middle of writing a line: a last line without its
    newline is left for the next call.
    """
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = [Record.from_row(json.loads(line)) for line in data[:end].splitlines() if line.strip()]
    return records, offset + end


@dataclass
class _Child:
    """One Locust process of the load: its role, process and log."""

    name: str  # worker, master, worker-1, ...
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path


class LoadProcess:
    """The Locust process(es) driving load at `url` for one run.

    Usage:
        with LoadProcess(url, settings, run_dir, history.origin_monotonic, run_id) as load:
            ...                  # load.stats(), load.new_records()
        history.extend(load.records())
    """

    def __init__(self, url: str, settings: LoadSettings, run_dir: Path, origin_monotonic: float, run_id: str):
        check_load_target(url, run_id)
        self.url = url.rstrip("/")
        self.settings = settings
        self.workers = settings.worker_count()
        self.locustfile = check_locustfile(settings)
        self.origin_monotonic = origin_monotonic
        self.run_id = run_id
        self.dir = Path(run_dir) / "load"
        self.rows_path = self.dir / "rows.jsonl"
        self.status_path = self.dir / "status.json"
        self.stages_path = self.dir / "stages.json"
        self.master_info_path = self.dir / "master.json"
        self.processes_path = self.dir / "processes.json"  # {name: pid} of every Locust process, for operators
        self.log_path = self.dir / ("worker.log" if self.workers == 1 else "master.log")
        self._children: list[_Child] = []
        self._started = False
        self._offset = 0  # of new_records() in rows.jsonl

    @property
    def pid(self) -> int | None:
        """The process that writes the rows (the only one, or the master)."""
        return self._children[0].process.pid if self._children else None

    def worker_pids(self) -> dict[str, int]:
        """The worker processes by name (empty with a single process)."""
        return {c.name: c.process.pid for c in self._children[1:]}

    def _common_args(self) -> list[str]:
        s = self.settings
        return ["--host", self.url, "--locustfile", str(self.locustfile), "--user-class", s.user_class,
                "--run-id", self.run_id, "--timeout", str(s.timeout_s),
                *([] if s.wait_min_s is None else ["--wait-min", str(s.wait_min_s), "--wait-max", str(s.wait_max_s)])]

    def command(self) -> list[str]:
        """The command of the process that writes the rows."""
        role = ["--role", "local"] if self.workers == 1 else [
            "--role", "master", "--workers", str(self.workers), "--bind-host", "127.0.0.1", "--bind-port", "0",
            "--master-info", str(self.master_info_path)]
        return [sys.executable, "-m", WORKER_MODULE, *role, *self._common_args(), "--stages", str(self.stages_path),
                "--out", str(self.rows_path), "--status", str(self.status_path),
                "--origin", repr(self.origin_monotonic)]

    def worker_command(self, index: int, master_port: int) -> list[str]:
        return [sys.executable, "-m", WORKER_MODULE, "--role", "worker", *self._common_args(),
                "--master-host", "127.0.0.1", "--master-port", str(master_port), "--worker-id", f"w{index}",
                "--shared-clock"]

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the Locust process(es) and return once the load is running; on failure nothing is left running."""
        if self._started:
            raise HarnessError("LoadProcess.start() called twice; create a new LoadProcess for a new load.")
        self._started = True
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in (self.status_path, self.master_info_path):
            stale.unlink(missing_ok=True)
        stages = [stage.to_json() for stage in self.settings.effective_stages()]
        self.stages_path.write_text(json.dumps({"stages": stages}, indent=1), encoding="utf-8")
        try:
            first = self._spawn(self.log_path.stem, self.command())
            if self.workers > 1:
                port = self._wait_for_file(self.master_info_path, first, MASTER_INFO_TIMEOUT_S)["port"]
                for index in range(1, self.workers + 1):
                    self._spawn(f"worker-{index}", self.worker_command(index, int(port)))
            # a master waits up to 60 s for its workers; give it that on top
            self._wait_for_file(self.status_path, first, timeout_s + (60.0 if self.workers > 1 else 0.0))
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, command: list[str]) -> _Child:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
        log_path = self.dir / f"{name}.log"
        log = log_path.open("ab")
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=self.dir, env=env, start_new_session=True)
        child = _Child(name, process, log, log_path)
        self._children.append(child)
        write_json_atomic(self.processes_path, {c.name: c.process.pid for c in self._children})
        return child

    def _wait_for_file(self, path: Path, child: _Child, timeout_s: float) -> dict[str, Any]:
        """The JSON `path` once `child` wrote it; the child's own error if it exits first."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return dict(json.loads(path.read_text(encoding="utf-8")))
            except (FileNotFoundError, ValueError):
                pass
            code = child.process.poll()
            if code is not None:
                tail = self.log_tail(child=child)
                if code == EXIT_BAD_INPUT:  # the worker printed "error: <what to fix>"
                    raise UserError(refusal_in(tail) or f"the load generator refused its input (exit {code}); "
                                    f"its log {child.log_path} ends with:\n{tail}")
                raise HarnessError(f"the load generator ({child.name}) exited with code {code} before starting; its "
                                   f"log {child.log_path} ends with:\n{tail}")
            if time.monotonic() > deadline:
                raise HarnessError(f"the load generator did not start within {timeout_s:.0f} s (no {path}); "
                                   f"its log {child.log_path} ends with:\n{self.log_tail(child=child)}")
            time.sleep(0.05)

    def running(self) -> bool:
        """Whether the process that writes the rows still runs (a lost worker shows in stats(), not here)."""
        return bool(self._children) and self._children[0].process.poll() is None

    def stats(self) -> LoadStats | None:
        """The latest status report; None before the first one."""
        try:
            return LoadStats.from_json(json.loads(self.status_path.read_text(encoding="utf-8")))
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the load to finish its stages; the exit code of the row writer, or None if still running."""
        if not self._children:
            return None
        try:
            code = self._children[0].process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
        for child in self._children[1:]:  # the master told them to quit
            try:
                child.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        return code

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM the row writer (a master collects its workers' last rows), then the rest; SIGKILL each
        process group still there after `timeout_s`."""
        if not self._children:
            return None
        deadline = time.monotonic() + timeout_s
        for child in self._children:  # the writer first: a master asks its workers for their last rows
            if child.process.poll() is None:
                _signal_group(child.process, signal.SIGTERM)
                try:
                    child.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for child in self._children:
            if child.process.poll() is None:
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
            _signal_group(child.process, signal.SIGKILL)  # anything a process left in its group
            child.log.close()
        return self._children[0].process.returncode

    def clock_sync(self) -> ClockSync:
        """Every Locust process runs on this host: the rows are on the harness's own clock."""
        return shared()

    def records(self) -> list[Record]:
        """Every complete row written so far, in time order (workers' batches interleave)."""
        return sorted(read_new_rows(self.rows_path, 0)[0], key=lambda r: r.t)

    def new_records(self) -> list[Record]:
        """Rows written since the previous call (for watching the load live)."""
        records, self._offset = read_new_rows(self.rows_path, self._offset)
        return records

    def log_tail(self, lines: int = 20, child: _Child | None = None) -> str:
        """The end of a process's log (default: the row writer's), and which workers exited if any did."""
        path = child.log_path if child is not None else self.log_path
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        tail = "\n".join(text.splitlines()[-lines:]) or "(empty log)"
        if child is None:
            gone = [f"{c.name} (exit {c.process.returncode}, log {c.log_path})" for c in self._children[1:]
                    if c.process.poll() is not None]
            if gone:
                tail += "\nworkers that exited: " + ", ".join(gone)
        return tail

    def __enter__(self) -> "LoadProcess":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # start_new_session: the group id is the process's pid
    except ProcessLookupError:
        pass
