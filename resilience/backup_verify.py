"""`resilience backup verify`: restore the latest backup into a scratch instance and check it, as evidence.

The steps, each one a check in result.json:
1. `pgbackrest verify` on the repository. It exits 0 even when it reports an invalid
   checksum (measured), so its output is read: any file or backup it calls invalid fails.
2. A restore of the latest backup set (`--type=immediate --target-action=promote`: the
   database as it was when the backup stopped) into a scratch instance with its own
   directory, port and socket, started as `postgres`, archiving off.
3. Integrity: the orders acknowledged before the backup started — rows with
   `created_at` before the backup's start time, which every copy taken later must hold —
   counted and checksummed (md5 over every column, in `seq` order) in the restored copy and
   on the live primary. Orders are never updated or deleted by the platform, so the two
   must be equal; a difference means the backup lost or changed acknowledged orders, or
   the live data changed since (a corruption: also worth failing on, and the detail says which).
The run is a sealed run directory (result.json, MANIFEST) with a ledger line, like any run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .config import Settings
from .errors import HarnessError, UserError

EXPERIMENT = "backup-verify"
# what `pgbackrest verify` prints about a bad file or backup (2.45, log-level-console=info)
_BAD = re.compile(r"invalid checksum|checksum invalid: [1-9]|size invalid: [1-9]|missing: [1-9]|other: [1-9]"
                  r"|status: (error|invalid)|ERROR:")


def parse_verify_output(text: str) -> list[str]:
    """The problems `pgbackrest verify` reports (its exit code is 0 even then); [] when it found none."""
    return [line.strip() for line in text.splitlines() if _BAD.search(line)]


def orders_checksum_sql(before_epoch: float) -> str:
    """Count and md5 of the orders created before `before_epoch`; '0|' when there is no orders table."""
    return ("SELECT CASE WHEN to_regclass('public.orders') IS NULL THEN '0|' ELSE ("
            "SELECT count(*) || '|' || coalesce(md5(string_agg(md5(o::text), '' ORDER BY o.seq)), '') "
            f"FROM public.orders o WHERE o.created_at < to_timestamp({before_epoch:.6f})) END")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass
class Verification:
    """What one verification found."""

    repo: int
    backup: dict[str, Any] | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "pass" if self.checks and all(c.ok for c in self.checks) else "fail"

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": 1, "experiment": EXPERIMENT, "verdict": self.verdict, "repo": self.repo,
                "backup": self.backup, "checks": [vars(c) for c in self.checks]}


@dataclass
class Sources:
    """Where the backups are and how to ask the live primary: the stack's, or a test's scratch instances."""

    repo_paths: tuple[Path, Path]
    live_sql: Callable[[str], str]  # one query against the live primary's `db`, psql -At output
    db: str = "meals"


def latest_backup(info_json: str, repo: int) -> dict[str, Any]:
    """The newest backup set in `repo` from `pgbackrest info --output=json`; UserError when there is none."""
    from .targets.local.backup_config import parse_info
    repos = parse_info(info_json)
    found = repos.get(repo)
    if found is None or not found.backups:
        raise UserError(f"repo{repo} holds no backup yet: the stack takes the first one in the background after "
                        f"`up` (see `resilience status`); try again when it shows one.")
    b = found.backups[-1]
    return {"label": b.label, "type": b.type, "start": b.start, "stop": b.stop, "size_bytes": b.size_bytes,
            "wal_start": b.wal_start, "wal_stop": b.wal_stop}


def verify_backup(sources: Sources, repo: int, work_root: Path | None = None, timeout: float = 300.0) -> Verification:
    """Run the three steps against the latest backup in `repo`; the scratch instance is removed in every case."""
    from .targets.local import backup_config as bc
    from .targets.local.scratch_pg import ScratchPostgres, run_as_postgres
    result = Verification(repo)
    scratch_home = Path(tempfile.mkdtemp(prefix="rsl-verify-", dir=work_root))
    os.chmod(scratch_home, 0o711)  # postgres passes through to its own 0700 directory inside
    pg = ScratchPostgres(scratch_home / "pg")
    pg.prepare_home()
    conf = _scratch_conf(sources.repo_paths, pg)
    try:
        info = run_as_postgres(bc.command(conf, "info", "--output=json", f"--repo={repo}"), timeout=60)
        if info.returncode != 0:
            raise UserError(f"pgbackrest info on repo{repo} failed: {info.stdout.strip()[-400:]}")
        result.backup = backup = latest_backup(info.stdout, repo)
        t = time.monotonic()
        out = run_as_postgres(bc.command(conf, "verify", f"--repo={repo}", "--log-level-console=info"), timeout=timeout)
        problems = parse_verify_output(out.stdout) + ([f"exit code {out.returncode}"] if out.returncode else [])
        result.checks.append(Check("pgbackrest verify", not problems, "; ".join(problems[:10]) or
                                   "every file's checksum and size as recorded", round(time.monotonic() - t, 3)))
        t = time.monotonic()
        out = run_as_postgres(bc.command(conf, "restore", f"--repo={repo}", f"--set={backup['label']}",
                                         "--type=immediate", "--target-action=promote"), timeout=timeout)
        if out.returncode != 0:
            result.checks.append(Check("restore", False, out.stdout.strip()[-600:], round(time.monotonic() - t, 3)))
            return result
        pg.configure(archive_mode="off", synchronous_standby_names="", primary_conninfo="", primary_slot_name="",
                     hot_standby="on")
        pg.start(timeout=60)
        pg.wait_promoted(timeout=timeout)
        result.checks.append(Check("restore", True, f"{backup['label']} restored and recovered to its stop point "
                                   f"in a scratch instance (port {pg.port})", round(time.monotonic() - t, 3)))
        result.checks.append(_integrity(sources, pg.sql, backup))
    except HarnessError as exc:
        result.checks.append(Check("restore", False, str(exc)[-800:]))
    finally:
        pg.stop()
        shutil.rmtree(scratch_home, ignore_errors=True)
    return result


def _integrity(sources: Sources, restored_sql: Callable[..., str], backup: dict[str, Any]) -> Check:
    t = time.monotonic()
    query = orders_checksum_sql(backup["start"])
    restored = restored_sql(query, db=sources.db)
    live = sources.live_sql(query)
    rc, rsum = restored.split("|", 1)
    lc, lsum = live.split("|", 1)
    ok = restored == live
    when = datetime.fromtimestamp(backup["start"], timezone.utc).isoformat()
    detail = (f"orders created before {when}: restored {rc} (md5 {rsum or '-'}), live primary {lc} "
              f"(md5 {lsum or '-'})" + ("" if ok else ": they differ — the backup lost or changed acknowledged "
                                        "orders, or the live orders were changed since"))
    return Check("orders integrity", ok, detail, round(time.monotonic() - t, 3))


def _scratch_conf(repo_paths: tuple[Path, Path], pg: Any) -> Path:
    """A pgbackrest.conf of the scratch instance's own: the repositories read, its own data, spool, lock, log."""
    from .targets.local import backup_config as bc
    from .targets.local.scratch_pg import chown_postgres
    own = pg.home / "pgbackrest"
    for sub in ("spool", "lock", "log"):
        (own / sub).mkdir(parents=True, exist_ok=True)
    conf = own / "pgbackrest.conf"
    conf.write_text("\n".join([
        "[global]", f"repo1-path={repo_paths[0]}", f"repo2-path={repo_paths[1]}", "process-max=1",
        f"spool-path={own / 'spool'}", f"lock-path={own / 'lock'}", f"log-path={own / 'log'}",
        "log-level-console=warn", "log-level-file=info", "",
        f"[{bc.STANZA}]", f"pg1-path={pg.data}", f"pg1-port={pg.port}", f"pg1-socket-path={pg.home}", ""]))
    chown_postgres(pg.home)
    return conf


def write_evidence(result: Verification, reports_dir: Path, started: datetime, seconds: float,
                   signing_key: Path | None = None) -> Path:
    """A sealed run directory with result.json, in the reports directory's ledger."""
    from .evidence import EvidenceStore
    store = EvidenceStore(reports_dir, signing_key)
    run_dir = store.open_run(EXPERIMENT, started)
    data = {**result.to_json(), "started_at": started.isoformat(), "seconds": round(seconds, 3)}
    (run_dir / "result.json").write_text(json.dumps(data, indent=2) + "\n")
    store.seal(run_dir, EXPERIMENT, result.verdict)
    return run_dir


def stack_sources(settings: Settings) -> Sources:
    """The running local stack's repositories and its primary; UserError when there is none to verify against."""
    from .targets.local import LocalPlatform
    from .targets.local import backup_config as bc
    from .targets.local.scratch_pg import PG_BIN, run_as_postgres
    stack = settings.stack
    if not stack.backup.enabled:
        raise UserError("backups are off ('stack.backup.enabled: false'): there is nothing to verify.")
    platform = LocalPlatform(settings)
    status = platform.status()
    if not status.running:
        raise UserError(f"the local stack is not running (state in {stack.state_dir}); start it with "
                        f"`resilience up` and wait for its first backup (`resilience status`).")
    leader = status.detail.get("pg_leader")
    member = next((c for c in status.components if c.name == leader), None)
    if member is None:
        raise UserError("the stack has no PostgreSQL primary now (see `resilience status`); try again when it has.")
    home, port = stack.state_path / member.name, member.address.rsplit(":", 1)[1]
    pgpass = {"PGPASSFILE": str(home / "pgbackrest" / "pgpass")}

    def live_sql(query: str) -> str:
        out = run_as_postgres([str(PG_BIN / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(home),
                               "-p", port, "-U", "postgres", "-d", "meals", "-c", query], timeout=60, env=pgpass)
        if out.returncode != 0:
            raise HarnessError(f"the query on the live primary {member.name} failed: {out.stdout.strip()[-300:]}")
        return out.stdout.strip()
    return Sources(bc.repo_paths(stack), live_sql)


def run_verify_command(settings: Settings, repo: int, reports_dir: str | None, as_json: bool) -> int:
    """`resilience backup verify`: against the running local stack; exit 0 pass, 1 fail (UserError: 2)."""
    sources = stack_sources(settings)
    started, t = datetime.now(timezone.utc), time.monotonic()
    result = verify_backup(sources, repo)
    seconds = time.monotonic() - t
    key = settings.evidence.signing_key
    run_dir = write_evidence(result, Path(reports_dir or settings.evidence.reports_dir), started, seconds,
                             Path(key) if key else None)
    if as_json:
        print(json.dumps({**result.to_json(), "seconds": round(seconds, 3), "run_dir": str(run_dir)}, indent=2))
    else:
        b = result.backup or {}
        print(f"backup verify (repo{repo}, {b.get('label', '?')} {b.get('type', '')}): "
              f"{result.verdict.upper()} in {seconds:.1f} s")
        for c in result.checks:
            print(f"  {'ok  ' if c.ok else 'FAIL'} {c.name} ({c.seconds:.1f} s): {c.detail}")
        print(f"evidence: {run_dir} (sealed; `resilience verify {run_dir}`)")
    return 0 if result.verdict == "pass" else 1
