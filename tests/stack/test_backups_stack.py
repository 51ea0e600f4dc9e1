"""Backups on the real local stack: `up` not slower, the first full backup in the background, archiving,
the posture in `resilience status`, and `resilience backup verify` passing against the live primary.

Prints the figures (up without/with backups, first backup, archive lag, verify) for the notes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from resilience.cli import main
from resilience.config import BackupSettings
from resilience.targets.local.processes import zombie_children
from resilience.targets.local.target import LocalTarget
from stack_helpers import Traffic, stack_settings, wait_until

pytestmark = [pytest.mark.stack, pytest.mark.own_stack]


def _repos(target: LocalTarget) -> dict[int, dict[str, Any]]:
    backup = target.status().detail.get("backup") or {}
    return {r["repo"]: r for r in backup.get("repos", [])}


def test_backups_run_in_the_background_and_verify_passes(capsys: Any, tmp_path: Path) -> None:
    off = LocalTarget(stack_settings(backup=BackupSettings(enabled=False)))
    t0 = time.monotonic()
    try:
        assert off.up().healthy
        up_off = time.monotonic() - t0
    finally:
        off.down()
    target = LocalTarget(stack_settings())
    try:
        t0 = time.monotonic()
        assert target.up().healthy
        up_on = time.monotonic() - t0
        assert up_on < up_off + 5, f"up took {up_on:.1f} s with backups, {up_off:.1f} s without"
        first = wait_until(lambda: all(r["last_full"] for r in _repos(target).values()) and len(_repos(target)) == 2,
                           120, "the first full backup in both repositories")
        with Traffic(target.url()) as traffic:
            time.sleep(target.s.backup.archive_timeout_s + 3)
            lags = [r["archive_lag_s"] for r in _repos(target).values()]
        assert traffic.acked, "no order was acknowledged"
        assert all(lag is not None and lag <= target.s.backup.archive_timeout_s + 3 for lag in lags), lags
        # archive-push detaches a process the supervisor adopts (its subreaper): it must be reaped, not pile up
        supervisor = target.local.supervisor_pid()
        assert supervisor is not None
        wait_until(lambda: not zombie_children(supervisor, "pgbackrest"), 10,
                   "no exited pgBackRest left unreaped under the supervisor")
        assert main(["status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        posture = status["detail"]["backup"]
        assert [r["role"] for r in posture["repos"]] == ["in region", "second region"]
        assert posture["scheduler"]["stanza_ready"] is True
        t0 = time.monotonic()
        code = main(["backup", "verify", "--json", "--reports-dir", str(tmp_path)])
        verify_s = time.monotonic() - t0
        out = capsys.readouterr().out
        result = json.loads(out[out.index("{"):])
        assert code == 0 and result["verdict"] == "pass", result
        assert main(["verify", result["run_dir"]]) == 0
        print(f"\nup without backups {up_off:.1f} s, with {up_on:.1f} s; first full backup (both repos) "
              f"{first:.1f} s after up; archive lag under traffic {lags} s; backup verify {verify_s:.1f} s "
              f"({[(c['name'], c['seconds']) for c in result['checks']]})")
    finally:
        target.down()
