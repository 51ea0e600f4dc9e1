"""pgBackRest for real against scratch PostgreSQL instances: archiving, the scheduler, posture, verify.

Needs root (PostgreSQL runs as `postgres`), PostgreSQL 15 and pgbackrest. Every instance
lives in its own temporary directory on a free port and is stopped by PID at the end.
"""

from __future__ import annotations

import json
import contextlib
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from resilience.backup_verify import Sources, verify_backup, write_evidence
from resilience.config import BackupSettings, StackSettings
from resilience.evidence.verify import verify as verify_evidence
from resilience.targets.local import backup_config as bc
from resilience.targets.local.backups import INFO_FILE, BackupScheduler, prepare_repos, read_posture, write_member_files
from resilience.targets.local.scratch_pg import PG_BIN, ScratchPostgres, chown_postgres, run_as_postgres

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not (PG_BIN / "initdb").exists() or not shutil.which("pgbackrest"),
                                reason="needs root, PostgreSQL 15 and pgbackrest")

ORDERS = """CREATE TABLE orders (order_id uuid PRIMARY KEY DEFAULT gen_random_uuid(), seq bigserial UNIQUE,
  items jsonb NOT NULL, total_paise bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"""


def insert_orders(pg: ScratchPostgres, n: int) -> None:
    pg.sql(f"INSERT INTO orders (items, total_paise) SELECT jsonb_build_array(i % 7), i * 100 "
           f"FROM generate_series(1, {n}) i", db="meals")


class Live:
    """A 'live primary' like a stack member: home/data, home/pgbackrest/pgbackrest.conf, archiving to two repos."""

    def __init__(self, root: Path, archive_timeout_s: int = 1) -> None:
        self.root = root
        self.settings = StackSettings(state_dir=str(root / "state"), backup=BackupSettings(
            region2_path=str(root / "region2"), archive_timeout_s=archive_timeout_s, full_every_s=3600,
            incremental_every_s=2, retention_full=2))
        (root / "state" / "logs").mkdir(parents=True)
        os.chmod(root / "state", 0o711)
        prepare_repos(self.settings)
        self.home = root / "state" / "pg-1"
        self.pg = ScratchPostgres(self.home)
        self.pg.initdb()
        self.conf = write_member_files(self.settings, self.home, self.pg.port, "unused")
        chown_postgres(self.home)
        self.pg.configure(wal_level="replica", **bc.archive_parameters(self.conf, self.settings))
        self.pg.start()
        self.pg.sql("CREATE DATABASE meals")
        self.pg.sql(ORDERS, db="meals")
        insert_orders(self.pg, 2000)

    def pgbackrest(self, *args: str) -> str:
        out = run_as_postgres(bc.command(self.conf, *args))
        assert out.returncode == 0, out.stdout
        return out.stdout


@contextlib.contextmanager
def live_instance(prefix: str) -> Iterator[Live]:
    """A scratch live primary with its repositories in a temporary folder, stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    instance = None
    try:
        instance = Live(root)
        yield instance
    finally:
        if instance is not None:
            instance.pg.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def live() -> Iterator[Live]:
    with live_instance("rsl-bk-test-") as instance:
        yield instance


def test_scheduler_takes_the_first_full_backup_into_both_repositories_and_the_posture_shows_it(live: Live) -> None:
    scheduler = BackupScheduler(live.settings, lambda *a, **k: None, lambda: "pg-1")  # type: ignore[arg-type]
    scheduler.start()
    deadline = time.monotonic() + 60
    t0 = time.monotonic()
    while scheduler.first_ready_at is None or not (live.root / "state" / INFO_FILE).exists():
        assert time.monotonic() < deadline, (live.root / "state" / "logs" / "backup.log").read_text()
        scheduler.tick()
        time.sleep(0.05)
    first_backup_s = time.monotonic() - t0
    posture = read_posture(live.settings)
    assert posture is not None
    repos = {r["repo"]: r for r in posture["repos"]}
    assert repos[1]["last_full"] and repos[2]["last_full"], posture
    assert repos[1]["role"] == "in region" and repos[2]["role"] == "second region"
    insert_orders(live.pg, 10)
    time.sleep(2.5)  # archive_timeout 1 s: a new segment reaches both repositories
    posture = read_posture(live.settings)
    assert posture is not None
    for r in posture["repos"]:
        assert r["archive_lag_s"] is not None and r["archive_lag_s"] < 5, posture
    # the schedule then asks for an incremental (every 2 s here)
    deadline = time.monotonic() + 60
    while True:
        scheduler.tick()
        info = bc.parse_info((live.root / "state" / INFO_FILE).read_text())
        if info[1].last("incr"):
            break
        assert time.monotonic() < deadline, (live.root / "state" / "logs" / "backup.log").read_text()
        time.sleep(0.1)
    scheduler.stop()
    print(f"first full backup into both repositories: {first_backup_s:.2f} s")


def test_verify_passes_on_a_good_backup_and_writes_sealed_evidence(live: Live, tmp_path: Path) -> None:
    live.pgbackrest("stanza-create")
    live.pgbackrest("backup", "--type=full", "--repo=1")
    insert_orders(live.pg, 500)  # after the backup: not in the copy, and not compared
    sources = Sources(bc.repo_paths(live.settings), lambda q: live.pg.sql(q, db="meals"))
    t = time.monotonic()
    result = verify_backup(sources, repo=1)
    seconds = time.monotonic() - t
    assert result.verdict == "pass", result.to_json()
    assert [c.name for c in result.checks] == ["pgbackrest verify", "restore", "orders integrity"]
    assert "restored 2000" in result.checks[2].detail
    run_dir = write_evidence(result, tmp_path / "reports", datetime.now(timezone.utc), seconds)
    assert json.loads((run_dir / "result.json").read_text())["verdict"] == "pass"
    assert verify_evidence(run_dir).ok
    assert not list(Path(tempfile.gettempdir()).glob("rsl-verify-*")), "the scratch instance was not removed"
    print(f"verify: {seconds:.2f} s")


def test_verify_fails_on_a_backup_with_flipped_bytes(live: Live) -> None:
    live.pgbackrest("stanza-create")
    live.pgbackrest("backup", "--type=full", "--repo=1")
    backup_dir = bc.repo_paths(live.settings)[0] / "backup" / bc.STANZA
    victim = max(backup_dir.glob("*F/pg_data/base/*/*.lz4"), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    data[len(data) // 2 + 1] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = verify_backup(Sources(bc.repo_paths(live.settings), lambda q: live.pg.sql(q, db="meals")), repo=1)
    assert result.verdict == "fail"
    check = result.checks[0]
    assert check.name == "pgbackrest verify" and not check.ok and "invalid checksum" in check.detail


def test_verify_fails_when_the_live_orders_differ_from_the_backup(live: Live) -> None:
    live.pgbackrest("stanza-create")
    live.pgbackrest("backup", "--type=full", "--repo=1")
    live.pg.sql("DELETE FROM orders WHERE seq % 10 = 0", db="meals")  # a corruption after the backup
    result = verify_backup(Sources(bc.repo_paths(live.settings), lambda q: live.pg.sql(q, db="meals")), repo=1)
    assert result.verdict == "fail"
    assert result.checks[-1].name == "orders integrity" and "restored 2000" in result.checks[-1].detail
    assert "live primary 1800" in result.checks[-1].detail
