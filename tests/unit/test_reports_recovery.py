"""The recovery section of the run report, on a hand-built run that restored from backup."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_fixtures import load_generator

from resilience.history import History, Record
from resilience.reports import load_run, render
from resilience.reports.recovery import recovery_section

ITEMS = [{"item_id": 1, "qty": 1}]


def recovery_records(restore_ok: bool = True) -> list[Record]:
    """Disaster at 20 s, a point-in-time restore to 19 s, serving at 50 s; orders a..c before, late1 after."""
    def rec(t: float, op: str, status: str = "info", **detail: object) -> Record:
        return Record(t, "recovery", op, status, None, None, dict(detail))

    def ack(t: float, key: str) -> Record:
        return Record(t, "load", "POST /orders", "ok", 0.05, key,
                      {"order_id": f"id-{key}", "seq": 1, "items": ITEMS, "total_paise": 9000})

    def read(key: str, found: bool) -> Record:
        detail: dict = {"order_id": f"id-{key}", "ack_t": None}
        if found:
            detail["read"] = {"order_id": f"id-{key}", "items": ITEMS, "total_paise": 9000}
        return Record(59.0, "check", "readback", "ok" if found else "fail", None, key, detail)

    return [
        Record(20.0, "fault", "effect", "ok", None, None, {"signal": "rows deleted"}),
        rec(20.0, "corrupted", mode="delete", count=1, order_ids=["id-b"]),
        rec(22.0, "detect"), rec(23.0, "decide"),
        rec(23.5, "target", kind="time", target_t=19.0, target_utc=None, repo=1),
        rec(24.0, "restore-start", repo=1, backup_label="20250310-052000F", backup_type="full", backup_stop_t=-580.0,
            backup_age_s=600.0),
        rec(40.0, "restore-done", "ok" if restore_ok else "fail", seconds=16.0, bytes=160_000_000,
            throughput_mb_s=10.0, **({} if restore_ok else {"error": "repo1 unreadable"})),
        rec(44.0, "replay-done", "ok", outcome="reached", wal_bytes=32 * 2**20, wal_segments=2, replayed_to_utc=None),
        rec(47.0, "cluster-whole", "ok", members=3, leader="pg-0"),
        rec(50.0, "serving"),
        ack(5.0, "a"), ack(10.0, "b"), ack(15.0, "c"), ack(21.0, "late1"),
        read("a", True), read("b", True), read("c", True), read("late1", False),
    ]


def restored_run(tmp_path: Path, restore_ok: bool = True) -> Path:
    """The fixture pass run, its own orders and read-backs replaced by the restore's."""
    run_dir = load_generator().make_run(tmp_path, "pass")
    loaded = History.load(run_dir / "history.jsonl")
    history = History(origin_monotonic=loaded.origin_monotonic, origin_wall=loaded.origin_wall)
    history.extend(r for r in loaded.records if r.op != "POST /orders" and r.source != "check")
    history.extend(recovery_records(restore_ok))
    history.dump(run_dir / "history.jsonl")
    return run_dir


def test_the_section_has_the_phases_counts_backup_set_and_rpo_window(tmp_path: Path) -> None:
    section = recovery_section(load_run(restored_run(tmp_path)))
    assert section is not None and section.problem is None
    assert [p["name"] for p in section.phases] == ["detect", "decide", "restore", "replay", "re-form", "serving"]
    assert [p["seconds"] for p in section.phases] == ["2.0", "1.0", "16.0", "4.0", "3.0", "3.0"]
    counts = dict(section.counts)
    assert counts["acknowledged"] == 4 and counts["restored as acknowledged"] == 3 and counts["lost"] == 0
    assert counts["given up (after the recovery target)"] == 1
    assert section.rpo_window == (19.0, 20.0)
    facts = dict(section.facts)
    assert facts["Backup set used"] == "20250310-052000F (full) from repo1"
    assert facts["Backup age at the disaster"] == "600 s"
    assert facts["Corrupted orders"].startswith("1 touched (delete); 0 still missing")


def test_html_markdown_and_pdf_show_the_recovery_section(tmp_path: Path) -> None:
    run_dir = restored_run(tmp_path)
    html = render(run_dir, "html").read_text()
    assert "<h2>Recovery from backup</h2>" in html and "20250310-052000F" in html
    assert "RPO window" in html and "given up (after the recovery target)" in html and "re-form" in html
    md = render(run_dir, "md").read_text()
    assert "**Recovery from backup**" in md and "1 given up (after the recovery target)" in md
    assert "RPO window: t = 19.0 s … 20.0 s (1.0 s)" in md
    assert render(run_dir, "pdf").stat().st_size > 0


def test_a_failed_restore_says_so_and_shows_no_counts(tmp_path: Path) -> None:
    run_dir = restored_run(tmp_path, restore_ok=False)
    section = recovery_section(load_run(run_dir))
    assert section is not None and section.problem == "the restore failed: repo1 unreadable"
    assert section.counts == [] and section.rpo_window is None
    assert "Not judged:</b> the restore failed: repo1 unreadable" in render(run_dir, "html").read_text()


@pytest.mark.parametrize("kind", ["pass", "fail"])
def test_a_failover_run_has_no_recovery_section(tmp_path: Path, kind: str) -> None:
    run_dir = load_generator().make_run(tmp_path, kind)
    assert recovery_section(load_run(run_dir)) is None
    assert "Recovery from backup" not in render(run_dir, "html").read_text()
    assert "Recovery from backup" not in render(run_dir, "md").read_text()
