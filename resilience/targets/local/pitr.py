"""Point-in-time restore with pgBackRest: the building block of the data-corruption recovery (issue 19).

`restore_to_time` restores a repository's backups plus archived WAL into an empty data
directory, to just before `target` (`--type=time`, `--target-exclusive`, `--target-action=promote`:
the default action, `pause`, would leave a read-only database). Two ways it goes wrong, measured
here (FIELD-NOTES) and checked by `recovery_outcome` on the PostgreSQL log:
- a target before every backup: pgBackRest refuses (exit 75) — `restore_to_time` raises;
- a target after the last archived WAL: the restore and `pg_ctl -w` succeed, then PostgreSQL logs
  "recovery ended before configured recovery target was reached" and shuts down seconds later.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ...errors import HarnessError
from . import backup_config as bc
from .scratch_pg import run_as_postgres

REACHED = "reached"  # recovery stopped at the target and the database was promoted
ENDED_EARLY = "ended-early"  # the archive ended before the target: the restore is not what was asked for


def target_text(target: datetime) -> str:
    """The target as pgBackRest and PostgreSQL read it: UTC with microseconds and an explicit offset."""
    return target.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def first_usable_target(backup_stop: float) -> float:
    """The earliest epoch time a restore can target after a backup that stopped at `backup_stop`.

    pgBackRest keeps a backup's stop time in whole seconds and picks a backup only when that stop
    is strictly before the target (in whole seconds too): a target in the same second as the stop
    is refused with exit 75, though the backup came first (seen in CI).
    """
    return float(int(backup_stop) + 1)


def restore_command_line(conf: Path, data_dir: Path, target: datetime, repo: int) -> list[str]:
    return bc.command(conf, "restore", f"--repo={repo}", f"--pg1-path={data_dir}", "--type=time",
                      f"--target={target_text(target)}", "--target-exclusive", "--target-action=promote")


def restore_to_time(conf: Path, data_dir: Path, target: datetime, repo: int = 1, timeout: float = 600.0) -> str:
    """Restore into `data_dir` (empty or missing) to just before `target`; returns pgBackRest's output."""
    out = run_as_postgres(restore_command_line(conf, data_dir, target, repo), timeout=timeout)
    if out.returncode != 0:
        hint = (" (exit 75: no backup stopped in a whole second before the target)" if out.returncode == 75 else "")
        raise HarnessError(f"pgbackrest restore to {target_text(target)} from repo{repo} failed{hint}: "
                           f"{out.stdout.strip()[-600:]}")
    return out.stdout


def recovery_outcome(log_text: str) -> str | None:
    """From a PostgreSQL log: REACHED, ENDED_EARLY, or None while recovery is still going."""
    if "recovery ended before configured recovery target was reached" in log_text:
        return ENDED_EARLY
    if "recovery stopping before" in log_text and ("database system is ready to accept connections" in log_text
                                                   or "archive recovery complete" in log_text):
        return REACHED
    return None
