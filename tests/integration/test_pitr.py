"""Point-in-time restore to just before a corruption, against scratch instances (root, PostgreSQL 15, pgbackrest)."""

from __future__ import annotations

import os
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from resilience.errors import HarnessError
from resilience.targets.local.backup_config import parse_info
from resilience.targets.local.pitr import ENDED_EARLY, REACHED, first_usable_target, recovery_outcome, restore_to_time
from resilience.targets.local.scratch_pg import ScratchPostgres

from test_backups import Live, insert_orders, live_instance  # noqa: E402  (same folder)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("pgbackrest"), reason="needs root and pgbackrest")


@pytest.fixture
def live() -> Iterator[Live]:
    with live_instance("rsl-pitr-test-") as instance:
        yield instance


def _wait_outcome(pg: ScratchPostgres, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = recovery_outcome((pg.home / "postgres.log").read_text(errors="replace"))
        if outcome:
            return outcome
        time.sleep(0.2)
    raise AssertionError(pg.log_tail(30))


def _wait_clock_past(epoch: float, timeout: float = 5) -> None:
    assert epoch - time.time() < timeout, "a target more than a few seconds ahead: a bug in the test"
    while time.time() < epoch:
        time.sleep(0.05)


def _wait_archived(pg: ScratchPostgres, segment: str, timeout: float = 30) -> None:
    """Until PostgreSQL reports `segment` (or a later one) archived: archive-push returned for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment:
            return
        time.sleep(0.1)
    raise AssertionError(f"WAL segment {segment} not archived within {timeout} s: {pg.log_tail(20)}")


def test_restore_to_just_before_a_corruption_brings_back_what_it_deleted(live: Live) -> None:
    live.pgbackrest("stanza-create")
    live.pgbackrest("backup", "--type=full", "--repo=1")
    insert_orders(live.pg, 300)  # after the backup: only in the archived WAL
    backup_stop = parse_info(live.pgbackrest("info", "--output=json"))[1].backups[-1].stop
    _wait_clock_past(first_usable_target(backup_stop))
    t_corruption = datetime.now(timezone.utc)
    _wait_clock_past(t_corruption.timestamp() + 0.2)  # the delete commits after the target, not in its microsecond
    live.pg.sql("DELETE FROM orders WHERE seq % 3 = 0", db="meals")  # the corruption (replicates; a backup does not)
    _wait_archived(live.pg, live.pg.sql("SELECT pg_walfile_name(pg_switch_wal())"))
    scratch = ScratchPostgres(live.root / "restored")
    scratch.prepare_home()
    t0 = time.monotonic()
    restore_to_time(live.conf, scratch.data, t_corruption, repo=1)
    scratch.configure(archive_mode="off")
    scratch.start()
    try:
        assert _wait_outcome(scratch) == REACHED
        scratch.wait_promoted(30)
        restore_s = time.monotonic() - t0
        assert scratch.sql("SELECT count(*) FROM orders", db="meals") == "2300"
        assert live.pg.sql("SELECT count(*) FROM orders", db="meals") == str(2300 - 2300 // 3)
        print(f"\npoint-in-time restore + replay + promote: {restore_s:.2f} s")
    finally:
        scratch.stop()


def test_a_target_after_the_archive_ends_is_detected_not_taken_for_a_restore(live: Live) -> None:
    live.pgbackrest("stanza-create")
    live.pgbackrest("backup", "--type=full", "--repo=1")
    scratch = ScratchPostgres(live.root / "restored")
    scratch.prepare_home()
    restore_to_time(live.conf, scratch.data, datetime.now(timezone.utc) + timedelta(hours=1), repo=1)
    scratch.configure(archive_mode="off")
    try:
        try:
            scratch.start()
        except HarnessError:
            pass  # it may already have shut down
        assert _wait_outcome(scratch) == ENDED_EARLY
    finally:
        scratch.stop()


def test_a_target_before_every_backup_is_refused(live: Live) -> None:
    live.pgbackrest("stanza-create")
    live.pgbackrest("backup", "--type=full", "--repo=1")
    with pytest.raises(HarnessError, match="exit 75|before|older"):
        restore_to_time(live.conf, live.root / "restored" / "data", datetime.now(timezone.utc) - timedelta(days=1))
