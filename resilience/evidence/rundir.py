"""A run directory: its name, created atomically, and the verdict it states now."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError
from ..inputs import RUN_FILE_BYTES, load_json

# every run (and game-day) directory name the harness makes: ASCII only, so no look-alike of another run's name
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def new_run_dir(reports_dir: Path, experiment: str, now: datetime) -> Path:
    """Create `<reports_dir>/<YYYYmmddTHHMMSSZ>-<experiment>`; add `-2`, `-3`... if taken.

    Creation is atomic (mkdir without exist_ok), so two runs starting in the
    same second never share a directory.
    """
    if not RUN_NAME.fullmatch(experiment):
        raise UserError(f"experiment name {experiment!r} cannot name a run directory: use letters, digits, '.', '_' "
                        f"and '-' only (e.g. 'zone-failure').")
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    reports_dir.mkdir(parents=True, exist_ok=True)
    base = f"{stamp}-{experiment}"
    for n in range(1, 1000):
        candidate = reports_dir / (base if n == 1 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise UserError(f"{reports_dir}: more than 999 run directories named {base}*; remove old ones.")


def run_verdict(run_dir: Path) -> str | None:
    """The verdict a run (result.json) or a game-day (compliance.json) states now; None when unreadable."""
    for name, key in (("result.json", "verdict"), ("compliance.json", "overall_verdict")):
        try:
            data = load_json(run_dir / name, "run file", RUN_FILE_BYTES, ours=True)
        except UserError:
            continue
        if isinstance(data, dict) and data.get(key) is not None:
            return str(data[key])
    return None
