"""The process table: one `Executor` per service, and what faults did to them.

It starts, signals, kills, restarts and stops the services (etcd, Patroni, Redis,
Sentinel, HAProxy; the API replicas are the replica set's), knows which are frozen
(`paused`) or killed by a fault (`stopped`), and reaps the orphans it inherits
(postmasters, pgBackRest's detached archive-push). Every change happens under the stack lock; reads take copies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from . import own_children
from .events import EventLog
from .executor import Executor, wait_for
from .probes import Probes
from .services import StackLayout
from .topology import API, POSTGRES, STOP_WAVES, ComponentId


ORPHAN_NAMES = ("postgres", "pgbackrest")  # what is re-parented to us by design (see ProcessTable.reap)


def reap_orphans() -> list[int]:
    """Reap our exited orphans (ORPHAN_NAMES) that we did not start ourselves; the PIDs reaped."""
    me = os.getpid()
    zombies = [pid for name in ORPHAN_NAMES for pid in zombie_children(me, name)]
    return own_children.reap_orphans(zombies, _wait_quietly)


def _wait_quietly(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped meanwhile by whoever waited for it
        pass


class ProcessTable:
    def __init__(self, layout: StackLayout, probes: Probes, events: EventLog, lock: threading.RLock,
                 started: Callable[[], None]) -> None:
        self.layout = layout
        self.probes = probes
        self.events = events
        self.lock = lock
        self.started = started  # called after each start: the state file must name every PID at once
        self.services: dict[ComponentId, Executor] = {}
        self.paused: set[ComponentId] = set()  # frozen by a fault (SIGSTOP)
        self.stopped: set[ComponentId] = set()  # killed by a fault; not restarted until a rollback says so
        self.restart_marks: dict[ComponentId, int] = {}  # its log's size when it was last restarted

    # -- reads -------------------------------------------------------------------------
    def executor(self, c: ComponentId) -> Executor:
        return self.services[c]

    def present(self) -> list[ComponentId]:
        """The started services, in the topology's order."""
        with self.lock:
            return [c for c in self.layout.topology.services if c in self.services]

    def alive(self, c: ComponentId) -> bool:
        ex = self.services.get(c)
        return ex is not None and ex.alive()

    def running(self, c: ComponentId) -> bool:
        """Alive and not frozen by a fault."""
        return self.alive(c) and c not in self.paused

    def pid(self, c: ComponentId) -> int | None:
        ex = self.services.get(c)
        return ex.pid if ex is not None and ex.alive() else None

    def postmaster_pid(self, c: ComponentId) -> int | None:
        return _postmaster_pid(self.layout.root / c.name / "data")

    def log_since_restart(self, c: ComponentId) -> str:
        ex = self.services.get(c)
        if ex is None:
            return ""
        try:
            with ex.spec.log_path.open("rb") as f:
                f.seek(self.restart_marks.get(c, 0))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # -- starting ------------------------------------------------------------------------
    def launch(self, c: ComponentId, redis_master: str | None = None, postgres_role: str = "any") -> Executor:
        """Start a service (not waiting for it to be ready: `executor(c).wait_ready()` does)."""
        ex = Executor(self.layout.spec(c, redis_master), self.probes.ready_check(c, postgres_role))
        with self.lock:
            ex.start()
            self.services[c] = ex
        self.started()
        return ex

    def restart(self, c: ComponentId, redis_master: str | None = None) -> None:
        """Start a service again after a fault; its log from here on tells what it had to do to rejoin."""
        try:
            mark = self.layout.log(c.name).stat().st_size
        except OSError:
            mark = 0
        with self.lock:
            self.restart_marks[c] = mark
        self.launch(c, redis_master)
        with self.lock:
            self.stopped.discard(c)
        self.events("platform", "restart", component=c.name)

    # -- signals and faults ----------------------------------------------------------------
    def signal(self, c: ComponentId, sig: int) -> None:
        """Signal a service; for PostgreSQL, the postmaster and every backend by PID.

        Each PostgreSQL child calls setsid(), so the postmaster's process group does not
        reach the backends and WAL senders: a "dead" node would keep streaming otherwise.
        """
        self.services[c].signal(sig)
        if c.kind == POSTGRES:
            pid = self.postmaster_pid(c)
            if pid and pid_alive(pid):
                for target in [pid, *children(pid)]:
                    try:
                        os.kill(target, sig)
                    except ProcessLookupError:
                        pass

    def freeze(self, c: ComponentId) -> None:
        with self.lock:
            self.signal(c, signal.SIGSTOP)
            self.paused.add(c)

    def thaw(self, c: ComponentId) -> None:
        with self.lock:
            self.signal(c, signal.SIGCONT)
            self.paused.discard(c)

    def kill_frozen(self, c: ComponentId) -> None:
        """A frozen service dies as in a power loss: SIGKILL, then SIGCONT so the kill lands; no longer paused."""
        with self.lock:
            self.signal(c, signal.SIGKILL)
            self.signal(c, signal.SIGCONT)
            self.paused.discard(c)

    def kill(self, c: ComponentId, reap: bool = True) -> None:
        """SIGKILL a service as a fault: it stays down (`stopped`) until a rollback restarts it."""
        with self.lock:
            self.signal(c, signal.SIGKILL)
            if reap:
                self.services[c].kill()
            self.stopped.add(c)

    def reap_killed(self, c: ComponentId) -> None:
        """Make sure a killed service's processes are gone and reaped (the restart reuses its ports and data)."""
        with self.lock:
            if c in self.services:
                self.signal(c, signal.SIGKILL)
                self.services[c].kill()
        pid = self.postmaster_pid(c) if c.kind == POSTGRES else None
        if pid:
            wait_for(lambda: not pid_alive(pid), 10, f"the old postmaster of {c.name} to exit")

    def reap(self) -> None:
        """Reap the orphans re-parented to us once they exit (we are their subreaper).

        Patroni starts each postmaster detached, so it is re-parented to us; a killed
        Patroni leaves its postmaster behind too. Unreaped, an exited postmaster stays a
        zombie, and Patroni, which waits for it to vanish before pg_rewind, waits forever
        (seen: a rewind "in progress" for minutes after a zone came back). pgBackRest's
        asynchronous archive-push detaches a process from under the archiver in the same
        way. Only zombies with those names are reaped, and never one we started ourselves
        (own_children): a blanket waitpid(-1) would steal the exit codes of subprocess
        calls made by other threads.
        """
        reap_orphans()

    # -- stopping everything -------------------------------------------------------------------
    def stop_all(self, replicas: list[Executor]) -> None:
        """Stop every service (and the given API replicas) in waves of parallel stops (`STOP_WAVES`)."""
        with self.lock:
            for c in list(self.paused):
                self.signal(c, signal.SIGCONT)
            services = dict(self.services)
        for ex in replicas:
            ex.signal(signal.SIGCONT)
        postmasters = [pid for c in services if c.kind == POSTGRES and (pid := self.postmaster_pid(c))]
        for kinds, grace in STOP_WAVES:
            wave = [ex for c, ex in services.items() if c.kind in kinds]
            stop_together((replicas if API in kinds else []) + wave, timeout=grace)
        for pid in postmasters:  # Patroni stops PostgreSQL; make sure of it (backends are their own groups)
            for target in ([pid, *children(pid)] if pid_alive(pid) else []):
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.reap()


def stop_together(executors: list[Executor], timeout: float) -> None:
    """SIGTERM every process group at once, wait for all (bounded), then SIGKILL what is left."""
    for ex in executors:
        ex.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(ex.alive() for ex in executors):
        time.sleep(0.05)
    for ex in executors:
        ex.signal(signal.SIGKILL)
    for ex in executors:
        ex.stop(timeout=1.0)  # reaps


# -- /proc ------------------------------------------------------------------------------------
def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def zombie_children(parent: int, comm: str) -> list[int]:
    """PIDs of exited, unreaped children of `parent` whose program name is `comm`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                head, _, rest = f.read().rpartition(")")
        except OSError:
            continue
        fields = rest.split()
        if len(fields) > 1 and fields[0] == "Z" and int(fields[1]) == parent and head.partition("(")[2] == comm:
            found.append(int(entry.name))
    return found


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def become_subreaper() -> None:
    """Orphans (a killed Patroni's postmaster) are re-parented to us, so we reap them (PID 1 here is slow)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except OSError:
        pass
