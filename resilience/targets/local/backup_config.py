"""pgBackRest in the local stack, as pure functions: its config, Patroni's archive settings, the schedule, the posture.

Two repositories: repo1 "in region" (`<state_dir>/backup-repo`, emptied by `down` like the
rest of the state) and repo2 standing for the second region (`stack.backup.region2_path`,
outside the state directory). repo2 is only a second path on the same disk: it survives
the loss of the primary region's data and repo1 (what the region-failure experiment
destroys), not the loss of this machine, and nothing here copies it elsewhere.

Rules measured here (docs FIELD-NOTES): `--config=` everywhere, also in archive_command;
each member has its own spool and lock path; every command runs as `postgres`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config import StackSettings

STANZA = "rsl-meals"  # the Patroni scope: one cluster, one stanza
PGBACKREST = "/usr/bin/pgbackrest"
REPO1_DIR = "backup-repo"
REPO_MARKER = ".resilience-repo"  # written in repo2: the stack may reset a repository that holds it


def repo_paths(s: StackSettings) -> tuple[Path, Path]:
    """(repo1 in region, repo2 the second region)."""
    return s.state_path / REPO1_DIR, s.region2_path


def conf_path(member_home: Path) -> Path:
    return member_home / "pgbackrest" / "pgbackrest.conf"


def render_conf(s: StackSettings, member_home: Path, pg_port: int) -> str:
    """One member's pgbackrest.conf: both repositories, its own data directory, spool, lock and log paths."""
    repo1, repo2 = repo_paths(s)
    own = member_home / "pgbackrest"
    lines = [
        "[global]",
        f"repo1-path={repo1}", f"repo1-retention-full={s.backup.retention_full}",
        f"repo2-path={repo2}", f"repo2-retention-full={s.backup.retention_full}",
        "compress-type=lz4", "process-max=1", "start-fast=y", "archive-async=y",
        f"spool-path={own / 'spool'}", f"lock-path={own / 'lock'}", f"log-path={own / 'log'}",
        "log-level-console=warn", "log-level-file=info",
        "",
        f"[{STANZA}]",
        f"pg1-path={member_home / 'data'}", f"pg1-port={pg_port}", f"pg1-socket-path={member_home}",
        "pg1-user=postgres",
        "",
    ]
    return "\n".join(lines)


def command(conf: Path, *args: str) -> list[str]:
    """A pgbackrest command line for one member's config (run it as postgres)."""
    return [PGBACKREST, f"--config={conf}", f"--stanza={STANZA}", *args]


def archive_parameters(conf: Path, s: StackSettings) -> dict[str, Any]:
    """PostgreSQL parameters for continuous archiving (Patroni's local `postgresql.parameters`)."""
    return {"archive_mode": "on",
            "archive_command": f"{PGBACKREST} --config={conf} --stanza={STANZA} archive-push %p",
            "archive_timeout": s.backup.archive_timeout_s}


def restore_command(conf: Path) -> str:
    """Patroni's `recovery_conf.restore_command`: a replica fetches WAL it missed from the repositories."""
    return f'{PGBACKREST} --config={conf} --stanza={STANZA} archive-get %f "%p"'


def next_backup(now: float, last_full: float | None, last_any: float | None, s: StackSettings) -> str | None:
    """'full', 'incr' or None: what the schedule asks for at `now` (times are wall-clock epoch seconds).

    The first backup is a full one; then a full every `full_every_s` and an incremental
    `incremental_every_s` after the last backup of any type.
    """
    if last_full is None:
        return "full"
    if now - last_full >= s.backup.full_every_s:
        return "full"
    if now - (last_any if last_any is not None else last_full) >= s.backup.incremental_every_s:
        return "incr"
    return None


@dataclass(frozen=True)
class BackupSet:
    """One backup in a repository, as `pgbackrest info --output=json` describes it."""

    label: str
    type: str  # full | diff | incr
    repo: int
    start: float  # epoch seconds
    stop: float
    size_bytes: int  # database size backed up
    repo_bytes: int  # what it takes in the repository (compressed, incremental)
    wal_start: str
    wal_stop: str


@dataclass
class RepoPosture:
    """What one repository holds: its backups (oldest first), the archived WAL range, its status."""

    repo: int
    ok: bool
    message: str
    backups: list[BackupSet] = field(default_factory=list)
    wal_min: str | None = None
    wal_max: str | None = None

    def last(self, *types: str) -> BackupSet | None:
        found = [b for b in self.backups if b.type in types]
        return found[-1] if found else None


def parse_info(text: str) -> dict[int, RepoPosture]:
    """Parse `pgbackrest info --output=json` (one stanza) into a posture per repository (key: repo number)."""
    data = json.loads(text)
    if not isinstance(data, list) or not data:
        return {}
    stanza = data[0]
    repos = {r["key"]: RepoPosture(r["key"], r["status"]["code"] == 0, r["status"]["message"])
             for r in stanza.get("repo", [])}
    for b in stanza.get("backup", []):
        repo = repos.setdefault(b["database"]["repo-key"], RepoPosture(b["database"]["repo-key"], True, "ok"))
        repo.backups.append(BackupSet(
            b["label"], b["type"], repo.repo, float(b["timestamp"]["start"]), float(b["timestamp"]["stop"]),
            int(b["info"]["size"]), int(b["info"]["repository"]["delta"]),
            b["archive"]["start"] or "", b["archive"]["stop"] or ""))
    for archive in stanza.get("archive", []):
        repo = repos.setdefault(archive["database"]["repo-key"],
                                RepoPosture(archive["database"]["repo-key"], True, "ok"))
        repo.wal_min, repo.wal_max = archive.get("min"), archive.get("max")
    for repo in repos.values():
        repo.backups.sort(key=lambda b: b.stop)
    return repos


def newest_wal_age(repo_path: Path, now: float) -> float | None:
    """Seconds since the newest WAL segment reached a repository (its file time): the archive lag.

    Data written after that segment was archived is what a restore from this repository
    would give up (with async archiving and `archive_timeout`, normally <= archive_timeout).
    None when the repository holds no WAL yet.
    """
    newest = None
    archive = repo_path / "archive" / STANZA
    if not archive.is_dir():
        return None
    for version in archive.iterdir():
        if not version.is_dir():
            continue
        for timeline_dir in version.iterdir():
            if not timeline_dir.is_dir():
                continue
            for wal in timeline_dir.iterdir():
                if len(wal.name) >= 24 and wal.name[:24].isalnum():
                    mtime = wal.stat().st_mtime
                    newest = mtime if newest is None or mtime > newest else newest
    return None if newest is None else max(0.0, now - newest)


def posture(repos: dict[int, RepoPosture], paths: tuple[Path, Path], s: StackSettings, now: float) -> dict[str, Any]:
    """The backup posture `resilience status` shows: ages of the last backups, archive lag, retention, per repo."""
    out: dict[str, Any] = {
        "schedule": {"full_every_s": s.backup.full_every_s, "incremental_every_s": s.backup.incremental_every_s,
                     "archive_timeout_s": s.backup.archive_timeout_s,
                     "retention_full": s.backup.retention_full,
                     "compression": "60x: 1 h of the platform's schedule is 1 min here "
                                    "(platform: full daily 02:00 IST, incremental every 4 h, 30 days)"},
        "repos": []}
    for number, path in enumerate(paths, start=1):
        repo = repos.get(number)
        full = repo.last("full") if repo else None
        incr = repo.last("incr", "diff") if repo else None
        out["repos"].append({
            "repo": number, "path": str(path), "role": "in region" if number == 1 else "second region",
            "ok": bool(repo and repo.ok), "message": repo.message if repo else "no information yet",
            "backups": len(repo.backups) if repo else 0,
            "last_full": full.label if full else None,
            "last_full_age_s": round(now - full.stop, 1) if full else None,
            "last_incremental": incr.label if incr else None,
            "last_incremental_age_s": round(now - incr.stop, 1) if incr else None,
            "wal_max": repo.wal_max if repo else None,
            "archive_lag_s": _round(newest_wal_age(path, now)),
        })
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def posture_lines(p: dict[str, Any]) -> list[str]:
    """The posture as `resilience status` prints it: one line for the schedule, one per repository."""
    sched, run = p["schedule"], p.get("scheduler") or {}
    lines = [f"backups: full every {sched['full_every_s']:.0f} s, incremental every {sched['incremental_every_s']:.0f} s, "
             f"keep {sched['retention_full']} full, archive_timeout {sched['archive_timeout_s']} s "
             f"({sched['compression']})" + (f"; running: {run['running']}" if run.get("running") else "")]
    for r in p["repos"]:
        def age(v: float | None) -> str:
            return "none" if v is None else f"{v:.0f} s ago"
        lines.append(f"  repo{r['repo']} ({r['role']}, {r['path']}): {r['backups']} backups, last full "
                     f"{age(r['last_full_age_s'])}, last incremental {age(r['last_incremental_age_s'])}, "
                     f"archive lag {'-' if r['archive_lag_s'] is None else str(r['archive_lag_s']) + ' s'}"
                     + ("" if r["ok"] else f" [{r['message']}]"))
    return lines
