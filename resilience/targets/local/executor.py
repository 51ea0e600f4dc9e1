"""One service process: started as our child, ready when its check passes, stopped by process group.

Like mirakuru's executors: the supervisor owns one `Executor` per component.
Processes run in their own session (so a stop reaches every child), optionally
inside a zone's network namespace (`ip netns exec` execs, so the PID stays the
real process), optionally as another user (`setpriv` execs too).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...errors import HarnessError

ReadyCheck = Callable[[], bool]


@dataclass
class ProcessSpec:
    """How to start one component."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None  # run as this user (setpriv)
    netns: str | None = None  # run inside this network namespace

    def command(self) -> list[str]:
        """The full argv: [ip netns exec NS] [setpriv ...] argv (each execs the next: one PID)."""
        cmd = list(self.argv)
        if self.user:
            cmd = ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", "--"] + cmd
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd


class Executor:
    """Starts, watches and stops one process (and everything in its process group)."""

    def __init__(self, spec: ProcessSpec, ready: ReadyCheck | None = None) -> None:
        self.spec = spec
        self.ready_check = ready
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.ready_error: BaseException | None = None  # what the ready check last raised (shown if never ready)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.spec.env}
        with open(self.spec.log_path, "ab") as log:
            log.write(f"\n--- start {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(self.spec.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.spec.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.spec.cwd, env=env, start_new_session=True, close_fds=True)
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        if not self.alive():
            return False
        if self.ready_check is None:
            return True
        try:
            ready = bool(self.ready_check())
        except Exception as exc:  # a check that raises means "not ready yet"; wait_ready names it on time-out
            self.ready_error = exc
            return False
        self.ready_error = None
        return ready

    def wait_ready(self, timeout: float) -> None:
        """Block until the ready check passes; raise with the log tail if it dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"{self.name} exited during start-up (code {self.proc.returncode if self.proc else '?'}). "
                                   f"Its log {self.spec.log_path} ends with:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        check = f" (its ready check last raised {type(self.ready_error).__name__}: {self.ready_error})" \
            if self.ready_error is not None else ""
        raise HarnessError(f"{self.name} was not ready within {timeout:.0f} s{check}. Its log {self.spec.log_path} "
                           f"ends with:\n{self.log_tail()}")

    def signal(self, sig: int) -> None:
        """Send a signal to the whole process group."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the process group and reap it (a fault, or the end of a stop)."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass  # frozen processes die when thawed; the caller thaws them

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the group, wait, then SIGKILL it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # children may outlive the leader: SIGKILL the group regardless
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.spec.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `condition` until true or raise HarnessError naming `what`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception as exc:  # mid-change a probe may fail: "not yet", named if it never comes
            last = exc
        time.sleep(interval)
    seen = f"; the check last raised {type(last).__name__}: {last}" if last is not None else ""
    raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}{seen}")
