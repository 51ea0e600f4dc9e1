"""The backup scheduler: a part of the supervisor that runs pgBackRest on the stack's schedule.

After `up` is ready it creates the stanza and takes the first full backup in the
background (so `up` does not wait for it), then takes full and incremental backups
as `backup_config.next_backup` says, each into repo1 and then repo2. One pgBackRest
command runs at a time, as `postgres`, in its own process group, tracked by PID
(state.json's `backup.pid`, so `down` finds it after a crash). After every backup
`pgbackrest info --output=json` is saved as `backup-info.json`: the posture
`resilience status` shows. Every step is an event in events.jsonl.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from ...config import StackSettings
from ...errors import UserError
from . import backup_config as bc
from . import own_children
from .events import EventLog
from .scratch_pg import as_postgres

INFO_FILE = "backup-info.json"
LOG_NAME = "backup.log"
RETRY_S = 10.0  # a failed stanza-create or backup is tried again after this long (never in a tight loop)


def prepare_repos(s: StackSettings) -> None:
    """Before the cluster exists: make both repositories, owned by postgres, and empty repo2's stanza.

    `up` makes a new cluster (a new system identifier), so the backups a previous stack
    left in repo2 cannot belong to it. repo2 is only emptied when it holds our marker or
    nothing at all; a foreign non-empty folder is refused.
    """
    import pwd
    pw = pwd.getpwnam("postgres")
    repo1, repo2 = bc.repo_paths(s)
    if repo2.exists() and any(repo2.iterdir()) and not (repo2 / bc.REPO_MARKER).exists():
        raise UserError(f"'stack.backup.region2_path' {repo2} holds files the stack did not make (no "
                        f"{bc.REPO_MARKER}); the stack resets that folder on `up`. Choose an empty or new folder.")
    for sub in ("archive", "backup"):
        shutil.rmtree(repo2 / sub / bc.STANZA, ignore_errors=True)
    for repo in (repo1, repo2):
        repo.mkdir(parents=True, exist_ok=True)
        os.chmod(repo, 0o750)
        os.chown(repo, pw.pw_uid, pw.pw_gid)
    (repo2 / bc.REPO_MARKER).touch()


class BackupScheduler:
    """Stanza, first full backup, then the schedule; one pgBackRest command at a time."""

    def __init__(self, settings: StackSettings, events: EventLog, leader: Callable[[], str | None]) -> None:
        self.s = settings
        self.root = settings.state_path
        self.events = events
        self.leader = leader  # the PostgreSQL leader's member name: backups run against the primary
        self.enabled = settings.backup.enabled
        self.queue: list[tuple[str, list[str]]] = []  # (what, pgbackrest arguments after --stanza)
        self.proc: subprocess.Popen[bytes] | None = None
        self.current: str | None = None
        self.started_at = 0.0
        self.stanza_ready = False
        self.started = False
        self.not_before = 0.0  # monotonic: after a failure, wait until then
        self.last_full: float | None = None  # wall-clock end of the last full backup in repo1
        self.last_any: float | None = None
        self.first_ready_at: float | None = None  # wall-clock: the first full backup is in both repositories

    # -- the loop ---------------------------------------------------------------------
    def start(self) -> None:
        """Called once the stack is ready: queue the stanza and the first full backup (both repositories)."""
        if not self.enabled or self.started:
            return
        self.started = True
        self.events("backup", "scheduled", first="full", full_every_s=self.s.backup.full_every_s,
                    incremental_every_s=self.s.backup.incremental_every_s)
        self.queue = [("stanza-create", ["stanza-create"])] + self._backup_jobs("full")

    def tick(self) -> None:
        """Reap a finished command, start the next one, or queue what the schedule asks for."""
        if not self.started:
            return
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return
            own_children.forget(self.proc.pid)
            self._finished(code)
        if time.monotonic() < self.not_before:
            return
        if not self.queue and self.stanza_ready:
            kind = bc.next_backup(time.time(), self.last_full, self.last_any, self.s)
            if kind:
                self.queue = self._backup_jobs(kind)
        if self.queue:
            self._launch(*self.queue[0])

    def _backup_jobs(self, kind: str) -> list[tuple[str, list[str]]]:
        return [(f"{kind} repo{r}", ["backup", f"--type={kind}", f"--repo={r}"]) for r in (1, 2)] + \
               [("info", ["info", "--output=json"])]

    def _launch(self, what: str, args: list[str]) -> None:
        leader = self.leader()
        if leader is None:
            return  # no primary now (a failover): try again on the next tick
        conf = bc.conf_path(self.root / leader)
        argv = as_postgres(bc.command(conf, *args))
        env = {**os.environ, "PGPASSFILE": str(self.root / leader / "pgbackrest" / "pgpass")}
        out_path = self.root / (INFO_FILE + ".tmp") if what == "info" else None
        log = open(self.root / "logs" / LOG_NAME, "ab")
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {what}: {' '.join(argv)}\n".encode())
        log.flush()
        stdout = open(out_path, "wb") if out_path else log
        try:
            self.proc = own_children.popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=log, env=env,
                                           start_new_session=True, close_fds=True)
        finally:
            log.close()
            if out_path:
                stdout.close()
        self.current, self.started_at = what, time.monotonic()
        if what != "info":
            self.events("backup", "started", what=what, member=leader, pid=self.proc.pid)

    def _finished(self, code: int) -> None:
        what = self.current or "?"
        seconds = round(time.monotonic() - self.started_at, 3)
        self.proc, self.current = None, None
        if code != 0:
            self.events("backup", "failed", what=what, code=code, seconds=seconds,
                        log=str(self.root / "logs" / LOG_NAME))
            self.not_before = time.monotonic() + RETRY_S
            if what.startswith(("full", "incr")):
                self.queue = [job for job in self.queue if job[0] != what] or [("info", ["info", "--output=json"])]
            return
        self.queue.pop(0)
        if what == "stanza-create":
            self.stanza_ready = True
        elif what == "info":
            (self.root / (INFO_FILE + ".tmp")).replace(self.root / INFO_FILE)
            return
        else:
            now = time.time()
            if what.endswith("repo1"):
                self.last_any = now
                if what.startswith("full"):
                    self.last_full = now
            elif what == "full repo2" and self.first_ready_at is None:
                self.first_ready_at = now
        self.events("backup", "done", what=what, seconds=seconds)

    # -- state and shutdown -------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """For state.json: what runs now (its PID, so `down` can stop it after a crash) and when backups began."""
        return {"enabled": self.enabled, "pid": self.proc.pid if self.proc else None, "running": self.current,
                "stanza_ready": self.stanza_ready, "first_backup_at": self.first_ready_at,
                "last_full_at": self.last_full, "last_any_at": self.last_any}

    def stop(self) -> None:
        """Stop a running command (its whole process group), wait for it."""
        self.started = False
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            own_children.forget(self.proc.pid)
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        own_children.forget(self.proc.pid)


def read_posture(s: StackSettings, now: float | None = None) -> dict[str, Any] | None:
    """The backup posture from the last saved `pgbackrest info` and the repositories' newest WAL; None if off."""
    if not s.backup.enabled:
        return None
    now = time.time() if now is None else now
    try:
        repos = bc.parse_info((s.state_path / INFO_FILE).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        repos = {}
    return bc.posture(repos, bc.repo_paths(s), s, now)


def write_member_files(s: StackSettings, member_home: Path, pg_port: int, superuser_password: str) -> Path:
    """One member's pgbackrest.conf and the pgpass its commands connect with; returns the config path."""
    own = member_home / "pgbackrest"
    for sub in ("spool", "lock", "log"):
        (own / sub).mkdir(parents=True, exist_ok=True)
    conf = bc.conf_path(member_home)
    conf.write_text(bc.render_conf(s, member_home, pg_port))
    pgpass = own / "pgpass"
    pgpass.write_text(f"*:*:*:postgres:{superuser_password}\n")
    os.chmod(pgpass, 0o600)
    return conf
