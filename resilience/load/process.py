"""The harness's handle on the Locust process: start it, watch it, stop it, read its rows.

Locust runs in its own process (`resilience.load.worker`) because importing it
monkey-patches the interpreter with gevent, which breaks ssl in a process that
already imported requests, kubernetes or boto3. So this module never imports
locust or gevent; it talks to the worker through files in `run_dir/load/`:

    stages.json   the stages to run (written here)
    rows.jsonl    one history row per request (written by the worker, flushed ≤ 0.25 s)
    status.json   live figures, rewritten atomically every second
    worker.log    the worker's stdout and stderr
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

from ..errors import HarnessError, UserError
from ..history import Record
from .shape import LoadSettings

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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LoadStats":
        return cls(t=float(data["t"]), users=int(data["users"]), target_users=int(data.get("target_users", 0)),
                   requests=int(data["requests"]), rps=float(data["rps"]), error_pct=float(data["error_pct"]),
                   p99_ms=None if data.get("p99_ms") is None else float(data["p99_ms"]),
                   stage=int(data.get("stage", 0)), done=bool(data.get("done", False)),
                   locust_requests=None if data.get("locust_requests") is None else int(data["locust_requests"]))


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


class LoadProcess:
    """One Locust worker process driving load at `url` for one run.

    Usage:
        with LoadProcess(url, settings, run_dir, history.origin_monotonic, run_id) as load:
            ...                  # load.stats(), load.new_records()
        history.extend(load.records())
    """

    def __init__(self, url: str, settings: LoadSettings, run_dir: Path, origin_monotonic: float, run_id: str):
        if not url.startswith(("http://", "https://")):
            raise UserError(f"load target URL {url!r} must start with http:// or https://, e.g. http://127.0.0.1:8080.")
        if not run_id or any(c.isspace() for c in run_id):
            raise UserError(f"load run id {run_id!r} must be non-empty without spaces: it prefixes idempotency keys.")
        self.url = url.rstrip("/")
        self.settings = settings
        self.locustfile = check_locustfile(settings)
        self.origin_monotonic = origin_monotonic
        self.run_id = run_id
        self.dir = Path(run_dir) / "load"
        self.rows_path = self.dir / "rows.jsonl"
        self.status_path = self.dir / "status.json"
        self.stages_path = self.dir / "stages.json"
        self.log_path = self.dir / "worker.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._offset = 0  # of new_records() in rows.jsonl

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def command(self) -> list[str]:
        s = self.settings
        return [sys.executable, "-m", WORKER_MODULE, "--host", self.url, "--locustfile", str(self.locustfile),
                "--user-class", s.user_class, "--stages", str(self.stages_path), "--out", str(self.rows_path),
                "--status", str(self.status_path), "--origin", repr(self.origin_monotonic), "--run-id", self.run_id,
                "--timeout", str(s.timeout_s), "--wait-min", str(s.wait_min_s), "--wait-max", str(s.wait_max_s)]

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the worker and return once it reports that the load is running."""
        if self._process is not None:
            raise HarnessError("LoadProcess.start() called twice; create a new LoadProcess for a new load.")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.status_path.unlink(missing_ok=True)
        stages = [stage.to_json() for stage in self.settings.effective_stages()]
        self.stages_path.write_text(json.dumps({"stages": stages}, indent=1), encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, cwd=self.dir, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not self.status_path.exists():
            code = self._process.poll()
            if code is not None:
                self._close_log()
                tail = self.log_tail()
                if code == EXIT_BAD_INPUT:  # the worker printed "error: <what to fix>"
                    reasons = [line[len("error: "):] for line in tail.splitlines() if line.startswith("error: ")]
                    raise UserError(reasons[-1] if reasons else f"the load generator refused its input (exit {code}); "
                                    f"its log {self.log_path} ends with:\n{tail}")
                raise HarnessError(f"the load generator exited with code {code} before starting; its log "
                                   f"{self.log_path} ends with:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"the load generator did not start within {timeout_s:.0f} s (no {self.status_path}); "
                                   f"its log {self.log_path} ends with:\n{self.log_tail()}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stats(self) -> LoadStats | None:
        """The worker's latest status report; None before the first one."""
        try:
            return LoadStats.from_json(json.loads(self.status_path.read_text(encoding="utf-8")))
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the worker to finish its stages; its exit code, or None if still running."""
        if self._process is None:
            return None
        try:
            code = self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self._close_log()
        return code

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM (the worker flushes and exits), then SIGKILL the process group after `timeout_s`."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                process.wait()
        self._signal_group(signal.SIGKILL)  # anything the worker left in its group
        self._close_log()
        return process.returncode

    def records(self) -> list[Record]:
        """Every complete row the worker has written so far."""
        return read_new_rows(self.rows_path, 0)[0]

    def new_records(self) -> list[Record]:
        """Rows written since the previous call (for watching the load live)."""
        records, self._offset = read_new_rows(self.rows_path, self._offset)
        return records

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def _signal_group(self, signum: int) -> None:
        assert self._process is not None
        try:
            os.killpg(self._process.pid, signum)  # start_new_session: the group id is the worker's pid
        except ProcessLookupError:
            pass

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "LoadProcess":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
