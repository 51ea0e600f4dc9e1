"""The compliance report's backup and disaster-recovery evidence: which runs really restored from backup.

SOC 2 A1.3, ISO/IEC 27001 A.8.13 and GDPR Art. 32(1)(c)-(d) ask for *tested
restores*. A failover keeps the data on a standby and restores nothing, so a
game-day of failovers says nothing about backups, whatever its RPO. This module
finds the runs that restored from backup (their result has the restore
checker's measurements) and the backup verifications (`resilience backup
verify` run directories), cites them per control, and says plainly when there
are none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ..errors import UserError
from ..evidence import manifest_digest

DR_CONTROLS = ("SOC 2 A1.3", "ISO/IEC 27001:2022 A.8.13", "GDPR Art. 32(1)(c)", "GDPR Art. 32(1)(d)")
VERIFY_EXPERIMENT = "backup-verify"  # resilience.backup_verify.EXPERIMENT
RESTORE_MEASURES = ("restore_throughput_mb_s", "runbook_s", "given_up_writes", "wal_replayed_bytes")

_RESTORE_TEST = [
    ("SOC 2 A1.3", "the recovery plan's restore procedure is run end to end from a backup and timed (RTO, RPO)"),
    ("SOC 2 A1.2", "the backup and recovery infrastructure (WAL archive, backup repositories) is exercised"),
    ("SOC 2 CC7.5", "recovery from a data-destroying incident is measured against the RTO/RPO targets"),
    ("ISO/IEC 27001:2022 A.8.13", "a backup is restored and every acknowledged order checked against it"),
    ("ISO/IEC 27001:2022 A.5.30", "ICT continuity readiness against the RTO/RPO objectives, from backup"),
    ("PCI DSS v4.0 12.10.1", "data back-up and recovery processes of the plan are exercised"),
    ("PCI DSS v4.0 12.10.2", "a recorded test of the incident response plan"),
    ("GDPR Art. 32(1)(c)", "restoration of availability and access to personal data after a loss, timed"),
    ("GDPR Art. 32(1)(d)", "a regular, recorded test of the restore's effectiveness (lost orders counted)"),
    ("DPDP Rules 2025 Rule 6(1)", "data back-ups are shown to restore personal data (clause (d))"),
]
# experiment kind -> [(control id, why)]: merged into compliance.COVERAGE
DR_COVERAGE: dict[str, list[tuple[str, str]]] = {
    "data-corruption": _RESTORE_TEST + [
        ("GDPR Art. 32(1)(b)", "integrity of personal data: corrupted orders come back as they were")],
    "database-loss": _RESTORE_TEST + [
        ("SOC 2 CC9.1", "mitigation of a business-disruption risk (loss of the whole database) is demonstrated")],
    "region-failure": _RESTORE_TEST + [
        ("SOC 2 CC9.1", "mitigation of a site-loss risk: recovery from the second region's repository only"),
        ("ISO/IEC 27001:2022 A.8.14", "the off-region backup copy is the redundancy under test")],
    VERIFY_EXPERIMENT: [
        ("SOC 2 A1.3", "the latest backup is restored into a scratch instance and checked"),
        ("ISO/IEC 27001:2022 A.8.13", "backup copies are tested: repository verified, restored copy checksummed"),
        ("GDPR Art. 32(1)(d)", "a regular, recorded test that the backups restore"),
    ],
}


def _result_json(run_dir: Path) -> dict[str, Any] | None:
    from ..inputs import RUN_FILE_BYTES, load_json
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    try:
        data = load_json(path, "result", RUN_FILE_BYTES, ours=True)
    except UserError:  # a damaged result has its own finding in the experiment's section
        return None
    return data if isinstance(data, dict) else None


def restore_citation(run_dir: Path, data: dict[str, Any]) -> dict[str, Any] | None:
    """What a run that restored from backup evidences, or None when it measured no restore."""
    measured = {m.get("name"): m for m in data.get("measurements") or [] if isinstance(m, dict)}
    if not any(name in measured for name in RESTORE_MEASURES):
        return None
    lost = measured.get("lost_writes") or {}
    detail = lost.get("detail") or {}
    judged = lost.get("status") in ("met", "breached")
    return {"experiment": data.get("experiment"), "run_dir": run_dir.name, "verdict": data.get("verdict"),
            "manifest_sha256": manifest_digest(run_dir), "restored": judged,
            "reason": None if judged else detail.get("reason") or "the restore was not judged",
            "backup_label": detail.get("backup_label"), "backup_type": detail.get("backup_type"),
            "repo": detail.get("repo"), "backup_age_s": detail.get("backup_age_s"),
            "target": (detail.get("target") or {}).get("kind"),
            "rpo_s": (measured.get("rpo_s") or {}).get("value"), "rto_s": (measured.get("rto_s") or {}).get("value"),
            "acknowledged": detail.get("acknowledged"), "kept": detail.get("kept"), "lost": detail.get("lost"),
            "given_up": detail.get("given_up")}


def verify_citation(run_dir: Path, data: dict[str, Any]) -> dict[str, Any]:
    """What a `resilience backup verify` run evidences."""
    backup = data.get("backup") or {}
    checks = [c for c in data.get("checks") or [] if isinstance(c, dict)]
    return {"run_dir": run_dir.name, "verdict": data.get("verdict"), "manifest_sha256": manifest_digest(run_dir),
            "repo": data.get("repo"), "backup_label": backup.get("label"), "started_at": data.get("started_at"),
            "checks": [f"{c.get('name')}: {'ok' if c.get('ok') else 'FAILED'}" for c in checks]}


def backup_and_dr(run_dirs: Iterable[Path | None]) -> dict[str, Any]:
    """Restore runs and backup verifications among the game-day's runs, cited per DR control, with a plain statement."""
    restores: list[dict[str, Any]] = []
    verifies: list[dict[str, Any]] = []
    for run_dir in run_dirs:
        data = None if run_dir is None else _result_json(run_dir)
        if run_dir is None or data is None:
            continue
        if data.get("experiment") == VERIFY_EXPERIMENT:
            verifies.append(verify_citation(run_dir, data))
        elif (cited := restore_citation(run_dir, data)) is not None:
            restores.append(cited)
    tested = [r for r in restores if r["restored"] and r["verdict"] == "pass"]
    verified = [v for v in verifies if v["verdict"] == "pass"]
    controls = {cid: {"restore_runs": [r["run_dir"] for r in restores],
                      "verify_runs": [v["run_dir"] for v in verifies]} for cid in DR_CONTROLS}
    return {"controls": controls, "restore_runs": restores, "verify_runs": verifies,
            "statement": _statement(restores, tested, verifies, verified)}


def _statement(restores: list[dict[str, Any]], tested: list[dict[str, Any]], verifies: list[dict[str, Any]],
               verified: list[dict[str, Any]]) -> str:
    controls = "SOC 2 A1.3, ISO/IEC 27001 A.8.13 and GDPR Art. 32(1)(c)-(d)"
    if not restores and not verifies:
        return (f"No run in this game-day restored from backup and no backup was verified: this report is no "
                f"evidence of tested restores for {controls}. Failover experiments keep the data on a standby and "
                f"restore nothing, whatever their RPO.")
    parts = []
    if tested:
        parts.append(f"{len(tested)} of {len(restores)} run(s) restored from backup and passed "
                     f"(every acknowledged order checked against the recovery target)")
    elif restores:
        parts.append(f"{len(restores)} run(s) attempted a restore from backup, none passed: no tested restore "
                     f"is evidenced")
    else:
        parts.append("no run restored from backup under load (the RTO/RPO of a restore is not evidenced)")
    if verifies:
        parts.append(f"{len(verified)} of {len(verifies)} backup verification(s) passed")
    else:
        parts.append("no backup verification (`resilience backup verify`) ran")
    return f"{controls}: " + "; ".join(parts) + "."
