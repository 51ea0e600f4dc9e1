"""The database members as the disaster faults and the restore runbook handle them (issue 19).

Small operations, each on `StackParts`: SQL on one member (through its Unix socket, as
`postgres`), stopping every member (they stay down: `stopped`), wiping their data
directories, removing the Patroni cluster from the DCS (else the DCS keeps `initialize`
and a re-bootstrap waits forever: FIELD-NOTES), the in-region repository (repo1) moved
aside by a region loss and put back by its heal, and the backup sets a repository holds
(`pgbackrest info`). The disaster's recorded time lives in `parts.state[DISASTER]`.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import HarnessError
from . import backup_config as bc
from .probes import http_post
from .scratch_pg import PG_BIN, run_as_postgres
from .services import DB_NAME, PATRONI_SCOPE
from .stack_parts import StackParts
from .topology import ETCD, POSTGRES, ComponentId

DISASTER = "disaster"  # parts.state key: {"fault", "wall", "m"} of the last disaster (its effect's time)
REPO1_ASIDE = ".region-lost"  # repo1 renamed to <repo1>.region-lost while the region is lost


def members(parts: StackParts) -> list[ComponentId]:
    return list(parts.topology.members(POSTGRES))


def home(parts: StackParts, c: ComponentId) -> Path:
    return parts.settings.state_path / c.name


def data_dir(parts: StackParts, c: ComponentId) -> Path:
    return home(parts, c) / "data"


def conf(parts: StackParts, c: ComponentId) -> Path:
    return bc.conf_path(home(parts, c))


def wall_to_monotonic(wall: float) -> float:
    return wall - time.time() + time.monotonic()


def record_disaster(parts: StackParts, fault: str, wall: float, monotonic: float) -> None:
    with parts.lock:
        parts.state[DISASTER] = {"fault": fault, "wall": wall, "m": monotonic}


def resolve(parts: StackParts) -> None:
    """The recorded disaster has been restored from (a heal need not restore again)."""
    with parts.lock:
        if isinstance(parts.state.get(DISASTER), dict):
            parts.state[DISASTER]["resolved"] = True


def disaster(parts: StackParts) -> dict[str, Any] | None:
    with parts.lock:
        found = parts.state.get(DISASTER)
    return dict(found) if isinstance(found, dict) else None


def sql(parts: StackParts, c: ComponentId, query: str, db: str = DB_NAME, timeout: float = 30.0) -> str:
    """One query on member `c` through its socket as postgres (psql -At); raises with psql's message."""
    h = home(parts, c)
    port = parts.processes.layout.place(c).port
    r = run_as_postgres([str(PG_BIN / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(h), "-p", str(port),
                         "-U", "postgres", "-d", db, "-c", query], timeout=timeout,
                        env={"PGPASSFILE": str(h / "pgbackrest" / "pgpass"), "PGCONNECT_TIMEOUT": "3"})
    if r.returncode != 0:
        raise HarnessError(f"SQL on {c.name} failed: {r.stdout.strip()[-400:]}")
    return r.stdout.strip()


def stop_all(parts: StackParts) -> list[str]:
    """SIGKILL every member (Patroni and PostgreSQL) and reap it; they stay down until restarted."""
    names = []
    for c in members(parts):
        if c in parts.processes.services:
            parts.processes.kill(c)
            parts.processes.reap_killed(c)
        else:
            with parts.lock:
                parts.processes.stopped.add(c)
        names.append(c.name)
    return names


def wipe(parts: StackParts) -> None:
    """Remove every member's data directory (the members must be down)."""
    for c in members(parts):
        shutil.rmtree(data_dir(parts, c), ignore_errors=True)


def empty_data_dir(parts: StackParts, c: ComponentId) -> Path:
    """A new, empty data directory for `c`, owned by postgres, mode 0700 (what pgBackRest restores into)."""
    path = data_dir(parts, c)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True)
    pw = pwd.getpwnam("postgres")
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def remove_from_dcs(parts: StackParts) -> int:
    """Delete the Patroni cluster's keys (`/service/<scope>/`) in etcd: what `patronictl remove` does."""
    prefix = f"/service/{PATRONI_SCOPE}/".encode()
    body = {"key": base64.b64encode(prefix).decode(),
            "range_end": base64.b64encode(prefix[:-1] + bytes([prefix[-1] + 1])).decode()}
    errors = []
    for m in parts.topology.members(ETCD):
        address = parts.processes.layout.place(m).address
        status, reply = http_post(f"http://{address}/v3/kv/deleterange", body, timeout=5.0)
        if status == 200:
            return int(json.loads(reply or b"{}").get("deleted", 0))
        errors.append(f"{m.name}: HTTP {status}")
    raise HarnessError(f"could not remove the Patroni cluster {PATRONI_SCOPE} from etcd ({'; '.join(errors)}); "
                       f"is etcd up? (`resilience status`)")


# -- the in-region repository (repo1), lost with the region ----------------------------------------------
def repo1(parts: StackParts) -> Path:
    return bc.repo_paths(parts.settings)[0]


def repo1_aside(parts: StackParts) -> Path:
    return repo1(parts).with_name(repo1(parts).name + REPO1_ASIDE)


def lose_repo1(parts: StackParts) -> None:
    """Make repo1 unreadable to pgBackRest: the directory moved aside (what the region's loss took)."""
    if repo1(parts).exists():
        shutil.rmtree(repo1_aside(parts), ignore_errors=True)
        repo1(parts).rename(repo1_aside(parts))


def repo1_lost(parts: StackParts) -> bool:
    return repo1_aside(parts).exists() and not repo1(parts).exists()


def bring_back_repo1(parts: StackParts) -> bool:
    """Put repo1 back where it was (the heal of a region loss); True if it was aside."""
    if not repo1_aside(parts).exists():
        return False
    if repo1(parts).exists():  # something made a new one meanwhile: keep the original, set the new one aside
        repo1(parts).rename(repo1(parts).with_name(repo1(parts).name + f".made-{int(time.time())}"))
    repo1_aside(parts).rename(repo1(parts))
    return True


# -- backup sets ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backup:
    label: str
    type: str
    repo: int
    stop: float  # epoch seconds (whole)
    size_bytes: int
    lsn_start: str
    wal_start: str


def backups(parts: StackParts, c: ComponentId, repo: int) -> list[Backup]:
    """The backup sets in `repo`, oldest first; HarnessError saying why when the repository cannot be read."""
    r = run_as_postgres(bc.command(conf(parts, c), "info", "--output=json", f"--repo={repo}"), timeout=60)
    if r.returncode != 0:
        raise HarnessError(f"pgbackrest info on repo{repo} failed: {r.stdout.strip()[-400:]}")
    data = json.loads(r.stdout)
    stanza = data[0] if isinstance(data, list) and data else {}
    for status in stanza.get("repo", []):
        if status.get("key") == repo and status["status"]["code"] not in (0, 2):  # 2: no valid backups
            raise HarnessError(f"repo{repo} is not readable: {status['status']['message']}")
    found = [Backup(b["label"], b["type"], b["database"]["repo-key"], float(b["timestamp"]["stop"]),
                    int(b["info"]["size"]), str(b.get("lsn", {}).get("start") or ""), b["archive"]["start"] or "")
             for b in stanza.get("backup", []) if b["database"]["repo-key"] == repo]
    return sorted(found, key=lambda b: b.stop)


def choose(sets: list[Backup], target_wall: float | None) -> Backup | None:
    """The newest backup a restore to `target_wall` (None: latest) can start from.

    pgBackRest compares whole seconds: a backup serves a time target only when its stop
    is in an earlier whole second (pitr.first_usable_target).
    """
    usable = [b for b in sets if target_wall is None or int(b.stop) + 1 <= target_wall]
    return usable[-1] if usable else None


def wal_segment_number(name: str) -> int | None:
    """A WAL file name's segment number (16 MB segments): log * 256 + seg; None if not a WAL name."""
    if len(name) < 24:
        return None
    try:
        return int(name[8:16], 16) * 0x100 + int(name[16:24], 16)
    except ValueError:
        return None
