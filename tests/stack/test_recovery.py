"""Issue 19's recovery experiments on the real local stack: data-corruption end to end (short profile).

One run (each costs minutes of the shared stack): the corruption deletes 30 % of the orders at T,
the restore runbook brings the cluster back from repo1 to just before T, and every order
acknowledged before the recovery target is back, the corrupted ones included. The other two
experiments (database-loss, region-failure) are run by hand; their figures are in docs/experiments.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resilience.cli import main
from resilience.history import History, Record
from resilience.targets.local.target import LocalTarget

from stack_helpers import wait_until

pytestmark = pytest.mark.stack

STEPS = ["detect", "target", "decide", "restore-start", "restore-done", "replay-done", "cluster-whole", "serving"]


def recovery(records: list[Record], op: str) -> Record:
    found = [r for r in records if r.source == "recovery" and r.op == op]
    assert found, f"no recovery/{op} record"
    return found[-1]


def test_data_corruption_is_undone_by_a_point_in_time_restore(stack: LocalTarget, capsys: Any,
                                                              tmp_path: Path) -> None:
    wait_until(lambda: stack.status().healthy and stack.ready_replicas() >= 3, 90, "a healthy stack")
    code = main(["run", "data-corruption", "--profile", "short", "--keep-up", "--json", "--quiet",
                 "--reports-dir", str(tmp_path), "--seed", "3"])
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert code in (0, 1), summary
    run_dir = Path(summary["run_dir"])
    records = History.load(run_dir / "history.jsonl").sorted()

    # the runbook's steps, in order, each once, as docs/recovery-records.md says
    ops = [r.op for r in records if r.source == "recovery" and r.op in STEPS]
    assert ops == STEPS, ops
    target = recovery(records, "target").detail or {}
    assert target["kind"] == "time" and target["repo"] == 1 and isinstance(target["target_t"], float), target
    start = recovery(records, "restore-start").detail or {}
    assert start["backup_label"] and start["backup_age_s"] > 0 and start["backup_stop_t"] < target["target_t"]
    done = recovery(records, "restore-done")
    assert done.status == "ok" and (done.detail or {})["bytes"] > 0, done
    replay = recovery(records, "replay-done")
    assert replay.status == "ok" and (replay.detail or {})["outcome"] == "reached", replay
    assert (replay.detail or {})["wal_bytes"] > 0 and (replay.detail or {})["wal_segments"] >= 1, replay
    whole = recovery(records, "cluster-whole")
    assert whole.status == "ok" and (whole.detail or {})["members"] == 2, whole

    # the corruption hit something, and it was seen on both members before the restore
    corrupted = recovery(records, "corrupted").detail or {}
    assert corrupted["count"] > 0 and len(corrupted["order_ids"]) == corrupted["count"], corrupted
    effect = [r for r in records if r.source == "fault" and r.op == "effect" and r.status == "ok"]
    assert effect and effect[0].t <= recovery(records, "restore-start").t

    # every order acknowledged before the recovery target is back (the corrupted ones included)
    acked = {r.key: r for r in records if r.source == "load" and r.op == "POST /orders" and r.status == "ok"
             and r.key and r.t + (r.latency or 0.0) < target["target_t"]}
    assert acked, "no order acknowledged before the corruption"
    readback = {r.key: r.status for r in records if r.source == "check" and r.op == "readback"}
    missing = sorted(k for k in acked if readback.get(k) != "ok")
    assert not missing, f"{len(missing)} of {len(acked)} orders acknowledged before the target not restored: {missing[:5]}"
    hit = {k for k, r in acked.items() if (r.detail or {}).get("order_id") in set(corrupted["order_ids"])}
    assert hit, "none of the corrupted orders was acknowledged by this run's load"
    assert all(readback.get(k) == "ok" for k in hit)
    assert all(step["status"] == "done" for step in json.loads((run_dir / "rollback.json").read_text())["steps"])
    wait_until(lambda: stack.status().healthy, 120, "a whole stack after the run")
