"""What `check`, `report` and `verify` refuse before reading a run directory (exit 2, with what to do)."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

RUN_FILES = ("MANIFEST.sha256", "result.json", "history.jsonl", "history.partial.jsonl", "rollback.json",
             "compliance.json")


def refuse_reports_folder(path: Path) -> None:
    """`verify reports/` is a folder of runs, not a run that was 'never sealed': say what to run instead (exit 2)."""
    from .inputs import check_path
    path = check_path(path, "run directory")  # a path the system cannot hold is bad input, not a traceback
    if not path.is_dir():
        raise UserError(f"{path} is not a directory. Pass a run directory, e.g. reports/<UTC time>-<experiment>.")
    if any((path / name).exists() for name in RUN_FILES):
        return
    runs = [p for p in sorted(path.iterdir()) if p.is_dir() and any((p / n).exists() for n in RUN_FILES)]
    if runs or (path / "ledger.jsonl").exists():
        raise UserError(f"{path} holds run directories ({len(runs)}), it is not one: verify each, e.g. "
                        f"`for d in {path}/*/; do resilience verify \"$d\"; done`.")


def refuse_unsealed(run_dir: Path) -> None:
    """A killed run's directory has no result.json: say so, and how to seal it (exit 2), instead of 'missing file'."""
    from .inputs import check_path
    from .salvage import unsealed_message
    if not (check_path(run_dir, "run directory") / "result.json").is_file():
        message = unsealed_message(run_dir)
        if message:
            raise UserError(message)
