"""A scratch PostgreSQL instance: own directory, own port, socket only, run as `postgres`, stopped by PID.

Backup verification restores into one; the integration tests make their "live" database
with one. Nothing is shared with the running stack: the data directory, the socket
directory and the port are the instance's own, and it listens on no TCP address.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

from ...errors import HarnessError
from . import own_children

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_postgres(argv: list[str]) -> list[str]:
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def chown_postgres(path: Path) -> None:
    pw = pwd.getpwnam("postgres")
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


def run_as_postgres(argv: list[str], timeout: float = 120.0, env: dict[str, str] | None = None,
                    ) -> subprocess.CompletedProcess[str]:
    """Run a command as postgres in its own process group; the group is killed if it overruns."""
    proc = own_children.popen(as_postgres(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True, cwd="/", env={**os.environ, "PGTZ": "UTC", **(env or {})})
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise HarnessError(f"{argv[0]} {' '.join(argv[1:3])}… did not finish within {timeout:.0f} s") from None
    finally:
        own_children.forget(proc.pid)
    return subprocess.CompletedProcess(argv, proc.returncode, out, "")


class ScratchPostgres:
    """One instance in `home` (data in home/data, socket in home)."""

    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home
        self.data = home / "data"
        self.port = port or free_port()
        self.pid: int | None = None

    def prepare_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        chown_postgres(self.home)

    def initdb(self) -> None:
        self.prepare_home()
        r = run_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                             "--encoding=UTF8", "--locale=C.UTF-8"], timeout=60)
        if r.returncode != 0:
            raise HarnessError(f"initdb in {self.data} failed: {r.stdout[-800:]}")

    def configure(self, **parameters: str | int) -> None:
        """Append settings to postgresql.auto.conf (the last line wins): port, socket, no TCP, own hba."""
        hba = self.home / "pg_hba.conf"
        hba.write_text("local all postgres trust\n")
        base = {"port": self.port, "listen_addresses": "", "unix_socket_directories": str(self.home),
                "hba_file": str(hba), "ident_file": str(hba.with_name("pg_ident.conf"))}
        hba.with_name("pg_ident.conf").write_text("")
        lines = [f"{k} = '{v}'" for k, v in {**base, **parameters}.items()]
        with open(self.data / "postgresql.auto.conf", "a") as f:
            f.write("\n# scratch instance\n" + "\n".join(lines) + "\n")
        chown_postgres(self.home)

    def start(self, timeout: float = 60.0) -> None:
        r = run_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.home / "postgres.log"),
                             "-w", "-t", str(int(timeout)), "start"], timeout=timeout + 10)
        self.pid = self._postmaster_pid()
        if r.returncode != 0:
            raise HarnessError(f"the scratch PostgreSQL in {self.data} did not start: {r.stdout[-400:]}\n"
                               f"{self.log_tail()}")

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return self.pid

    def sql(self, query: str, db: str = "postgres", timeout: float = 60.0) -> str:
        """Run one query with psql -At; its output (stripped). Raises with psql's message on error."""
        r = run_as_postgres([str(PG_BIN / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(self.home),
                             "-p", str(self.port), "-U", "postgres", "-d", db, "-c", query], timeout=timeout)
        if r.returncode != 0:
            raise HarnessError(f"query on the scratch PostgreSQL failed: {r.stdout.strip()[-400:]}")
        return r.stdout.strip()

    def wait_promoted(self, timeout: float = 120.0) -> None:
        """Until recovery has ended (pg_is_in_recovery() false); raise with the log on a FATAL or a timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.sql("SELECT pg_is_in_recovery()", timeout=10) == "f":
                    return
            except HarnessError:
                if "FATAL" in self.log_tail(40) and not self.alive():
                    break
            time.sleep(0.2)
        raise HarnessError(f"the restored copy did not finish recovery within {timeout:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        pid = self._postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        """Fast shutdown; if it does not go, SIGKILL the postmaster by its PID (and its children)."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        run_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "10", "stop"],
                        timeout=20)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.alive():
            time.sleep(0.05)
        if self.alive():
            try:
                children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except OSError:
                children = []
            for p in [pid, *children]:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join((self.home / "postgres.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
