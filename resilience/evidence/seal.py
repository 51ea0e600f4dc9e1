"""Sealing a run: manifest, optional signature, ledger line — in that order, the last thing a run does.

`EvidenceStore` is what a live `Run` is given to create its directory (with a
"started" ledger line, so a run that never finishes still shows) and to seal it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from .ledger import append_ledger, ledger_entry, record_start
from .manifest import write_manifest
from .rundir import new_run_dir
from .signature import sign_manifest


def seal_run(run_dir: Path, experiment: str, verdict: str, signing_key: Path | None = None,
             reports_dir: Path | None = None) -> str:
    """Manifest, optional signature, ledger line — the last thing a run does. Returns the manifest digest."""
    digest = write_manifest(run_dir)
    if signing_key is not None:
        sign_manifest(run_dir, signing_key)
    append_ledger(reports_dir or run_dir.parent, ledger_entry(run_dir, experiment, verdict, digest))
    return digest


class EvidenceStore:
    """Run directories under `reports_dir`, recorded in its ledger and sealed (signed with `signing_key`, if any)."""

    def __init__(self, reports_dir: Path, signing_key: Path | None = None) -> None:
        self.reports_dir = Path(reports_dir)
        self.signing_key = signing_key

    def open_run(self, experiment: str, started_at: datetime) -> Path:
        """A new run directory `<reports_dir>/<time>-<experiment>`, with its "started" ledger line."""
        run_dir = new_run_dir(self.reports_dir.resolve(), experiment, started_at)
        record_start(run_dir, experiment, started_at)
        return run_dir

    def seal(self, run_dir: Path, experiment: str, verdict: str) -> str:
        """Seal a finished run into this store's ledger; returns the manifest digest."""
        return seal_run(run_dir, experiment, verdict, self.signing_key, self.reports_dir)
