"""The children this process started itself, so that reaping orphans never steals their exit codes.

The supervisor is the subreaper of everything it starts (processes.become_subreaper): a process whose
parent dies is re-parented to it and, once it exits, stays a zombie until the supervisor reaps it. Some
are orphans by design: Patroni starts each postmaster detached, and pgBackRest's asynchronous
archive-push (`archive-async=y`) forks a detached process from under PostgreSQL's archiver — about 12
zombies a minute under load, seen piling up to 82 in one test session. But the supervisor also starts
pgBackRest itself (the backup schedule, restores, checks) and waits for those: reaping one of them by
name would leave its `Popen` an ECHILD, which Python reports as exit code 0 — a failed backup read as a
good one. So every such child is started here, its PID kept until its waiter has its exit code, and the
reaper skips the PIDs kept here; starting and reaping share one lock, so no child is seen before it is
registered.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Any

_lock = threading.Lock()
_pids: set[int] = set()


def popen(argv: list[str], **options: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen, with the child's PID kept until `forget` (call it once its exit code is known)."""
    with _lock:
        proc: subprocess.Popen[Any] = subprocess.Popen(argv, **options)
        _pids.add(proc.pid)
    return proc


def forget(pid: int) -> None:
    """The child's waiter has its exit code: its PID may now be anyone's."""
    with _lock:
        _pids.discard(pid)


def reap_orphans(zombies: list[int], wait: Any) -> list[int]:
    """Call `wait(pid)` on each zombie this process did not start itself (under the lock); the PIDs reaped."""
    reaped = []
    with _lock:
        for pid in zombies:
            if pid not in _pids:
                wait(pid)
                reaped.append(pid)
    return reaped
