"""pgBackRest in the local stack: config generation, the schedule, `info`/`verify` output parsing, settings."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from resilience.backup_verify import latest_backup, orders_checksum_sql, parse_verify_output
from resilience.config import BackupSettings, StackSettings, load_settings
from resilience.errors import UserError
from resilience.targets.local import backup_config as bc
from resilience.targets.local.services import StackLayout
from resilience.targets.local.topology import POSTGRES

# `pgbackrest info --output=json` (2.45) after a full backup in repo1 and a full + incremental in repo2
INFO = json.dumps([{
    "archive": [{"database": {"id": 1, "repo-key": 1}, "id": "15-1", "max": "00000001000000000000000E",
                 "min": "000000010000000000000001"},
                {"database": {"id": 1, "repo-key": 2}, "id": "15-1", "max": "00000001000000000000000E",
                 "min": "000000010000000000000001"}],
    "backup": [
        {"archive": {"start": "000000010000000000000002", "stop": "000000010000000000000003"},
         "database": {"id": 1, "repo-key": 1}, "error": False,
         "info": {"delta": 30898627, "repository": {"delta": 6175276, "size": 6175276}, "size": 30898627},
         "label": "20261206-152128F", "prior": None, "timestamp": {"start": 1796570488, "stop": 1796570491},
         "type": "full"},
        {"archive": {"start": "000000010000000000000004", "stop": "000000010000000000000005"},
         "database": {"id": 1, "repo-key": 2}, "error": False,
         "info": {"delta": 30898626, "repository": {"delta": 6175272, "size": 6175272}, "size": 30898626},
         "label": "20261206-152132F", "prior": None, "timestamp": {"start": 1796570492, "stop": 1796570495},
         "type": "full"},
        {"archive": {"start": "000000010000000000000009", "stop": "00000001000000000000000A"},
         "database": {"id": 1, "repo-key": 2}, "error": False,
         "info": {"delta": 8458, "repository": {"delta": 493, "size": 6175273}, "size": 30898627},
         "label": "20261206-152132F_20261206-152139I", "prior": "20261206-152132F",
         "timestamp": {"start": 1796570499, "stop": 1796570500}, "type": "incr"}],
    "name": "rsl-meals",
    "repo": [{"cipher": "none", "key": 1, "status": {"code": 0, "message": "ok"}},
             {"cipher": "none", "key": 2, "status": {"code": 0, "message": "ok"}}],
    "status": {"code": 0, "message": "ok"}}])

# `pgbackrest verify --log-level-console=info` (2.45) on a backup with two flipped bytes: exit code 0
VERIFY_BAD = """\
2026-12-06 15:19:10.182 P00   INFO: verify command begin 2.45: --config=/x/pgbackrest.conf --repo=1 --stanza=rsl-meals
2026-12-06 15:19:10.272 P01   INFO: invalid checksum '20261206-151903F/pg_data/base/5/2838.lz4'
2026-12-06 15:19:10.279 P00   INFO: stanza: rsl-meals
                                    status: error
                                      backup: 20261206-151903F, status: invalid, total files checked: 1267, total valid files: 1266
                                        checksum invalid: 1
2026-12-06 15:19:10.280 P00   INFO: verify command end: completed successfully (99ms)
"""
VERIFY_GOOD = """\
2026-12-06 15:23:52.154 P00   INFO: verify command begin 2.45: --config=/x/pgbackrest.conf --repo=1 --stanza=rsl-meals
2026-12-06 15:23:52.492 P00   INFO: verify command end: completed successfully (340ms)
"""


def settings(tmp: Path, **backup: object) -> StackSettings:
    return StackSettings(state_dir=str(tmp / "state"), backup=BackupSettings(**backup))  # type: ignore[arg-type]


def test_member_config_names_both_repositories_and_its_own_spool_lock_and_data(tmp_path: Path) -> None:
    s = settings(tmp_path, region2_path=str(tmp_path / "r2"), retention_full=7)
    text = bc.render_conf(s, tmp_path / "state" / "pg-1", 5441)
    assert f"repo1-path={tmp_path}/state/backup-repo" in text and f"repo2-path={tmp_path}/r2" in text
    assert "repo1-retention-full=7" in text and "repo2-retention-full=7" in text
    home = tmp_path / "state" / "pg-1"
    for line in (f"spool-path={home}/pgbackrest/spool", f"lock-path={home}/pgbackrest/lock",
                 f"pg1-path={home}/data", "pg1-port=5441", f"pg1-socket-path={home}", "archive-async=y",
                 "[rsl-meals]"):
        assert line in text.splitlines()


def test_archive_and_restore_commands_pass_the_config_everywhere(tmp_path: Path) -> None:
    s = settings(tmp_path, archive_timeout_s=7)
    conf = bc.conf_path(tmp_path / "pg-2")
    params = bc.archive_parameters(conf, s)
    assert params["archive_mode"] == "on" and params["archive_timeout"] == 7
    assert params["archive_command"] == f"/usr/bin/pgbackrest --config={conf} --stanza=rsl-meals archive-push %p"
    assert bc.restore_command(conf) == f'/usr/bin/pgbackrest --config={conf} --stanza=rsl-meals archive-get %f "%p"'


def test_patroni_config_archives_each_member_with_its_own_config(tmp_path: Path) -> None:
    layout = StackLayout(settings(tmp_path), lambda z: "127.0.0.1", lambda z: None)
    for member in layout.topology.members(POSTGRES):
        pg = layout.patroni_config(member)["postgresql"]
        conf = tmp_path / "state" / member.name / "pgbackrest" / "pgbackrest.conf"
        assert f"--config={conf}" in pg["parameters"]["archive_command"]
        assert pg["parameters"]["archive_timeout"] == 10
        assert f"--config={conf}" in pg["recovery_conf"]["restore_command"]
    off = StackLayout(settings(tmp_path, enabled=False), lambda z: "127.0.0.1", lambda z: None)
    pg = off.patroni_config(off.topology.members(POSTGRES)[0])["postgresql"]
    assert "archive_command" not in pg["parameters"] and "recovery_conf" not in pg


def test_schedule_full_first_then_incrementals_then_full_again(tmp_path: Path) -> None:
    s = settings(tmp_path, full_every_s=1440.0, incremental_every_s=240.0)
    assert bc.next_backup(1000.0, None, None, s) == "full"
    assert bc.next_backup(1000.0, 900.0, 900.0, s) is None
    assert bc.next_backup(1140.0, 900.0, 900.0, s) == "incr"
    assert bc.next_backup(1200.0, 900.0, 1140.0, s) is None
    assert bc.next_backup(900.0 + 1440.0, 900.0, 2300.0, s) == "full"


def test_parse_info_gives_each_repository_its_backups_and_wal_range() -> None:
    repos = bc.parse_info(INFO)
    assert set(repos) == {1, 2}
    full1 = repos[1].last("full")
    assert full1 is not None and full1.label == "20261206-152128F" and full1.stop == 1796570491.0
    assert repos[1].last("incr") is None
    incr2 = repos[2].last("incr", "diff")
    assert incr2 is not None and incr2.repo_bytes == 493 and incr2.size_bytes == 30898627
    assert repos[2].wal_max == "00000001000000000000000E"
    assert latest_backup(INFO, 2)["label"] == "20261206-152132F_20261206-152139I"
    with pytest.raises(UserError, match="repo3 holds no backup"):
        latest_backup(INFO, 3)


def test_posture_reports_ages_and_the_archive_lag_per_repository(tmp_path: Path) -> None:
    s = settings(tmp_path, region2_path=str(tmp_path / "r2"))
    repo1, repo2 = bc.repo_paths(s)
    wal = repo1 / "archive" / "rsl-meals" / "15-1" / "0000000100000000"
    wal.mkdir(parents=True)
    segment = wal / "00000001000000000000000E-5a2e1b0c.lz4"
    segment.write_bytes(b"x")
    now = time.time()
    os.utime(segment, (now - 4, now - 4))
    p = bc.posture(bc.parse_info(INFO), (repo1, repo2), s, now=1796570491.0 + 60)
    r1, r2 = p["repos"]
    assert r1["role"] == "in region" and r2["role"] == "second region"
    assert r1["last_full_age_s"] == 60.0 and r1["last_incremental_age_s"] is None
    assert r2["last_incremental"] == "20261206-152132F_20261206-152139I"
    assert bc.newest_wal_age(repo1, now) == pytest.approx(4, abs=0.5)
    assert r2["archive_lag_s"] is None  # no WAL in repo2 (here)
    assert "60x" in p["schedule"]["compression"]
    lines = bc.posture_lines(p)
    assert lines[0].startswith("backups: full every 1440 s, incremental every 240 s, keep 30 full")
    assert "repo2 (second region" in lines[2]


def test_verify_output_with_an_invalid_checksum_is_a_failure_although_the_exit_code_is_0() -> None:
    problems = parse_verify_output(VERIFY_BAD)
    assert any("invalid checksum" in p for p in problems) and any("checksum invalid: 1" in p for p in problems)
    assert parse_verify_output(VERIFY_GOOD) == []


def test_orders_checksum_compares_only_orders_before_the_backup_started() -> None:
    sql = orders_checksum_sql(1796570488.5)
    assert "created_at < to_timestamp(1796570488.500000)" in sql and "ORDER BY o.seq" in sql
    assert "to_regclass('public.orders') IS NULL" in sql


def test_region2_must_lie_outside_the_state_directory(tmp_path: Path) -> None:
    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"stack:\n  state_dir: {tmp_path}/state\n  backup:\n    region2_path: {tmp_path}/state/r2\n")
    with pytest.raises(UserError, match="outside 'stack.state_dir'"):
        load_settings(cfg)
    cfg.write_text(f"stack:\n  state_dir: {tmp_path}/state\n  backup:\n    incremental_every_s: 5000\n")
    with pytest.raises(UserError, match="incremental_every_s"):
        load_settings(cfg)
    cfg.write_text(f"stack:\n  state_dir: {tmp_path}/state\n")
    assert load_settings(cfg).stack.region2_path == Path(f"{tmp_path}/state-region2")


def test_backup_verify_without_a_running_stack_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from resilience.cli import main
    monkeypatch.setenv("RESILIENCE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RESILIENCE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["backup", "verify"]) == 2
    assert "not running" in capsys.readouterr().err


def test_a_restore_target_must_fall_in_a_whole_second_after_the_backups_stop() -> None:
    from resilience.targets.local.pitr import first_usable_target
    assert first_usable_target(1000.0) == 1001.0  # pgBackRest: stop (whole seconds) strictly before the target
    assert first_usable_target(1000.95) == 1001.0
