"""Issue 21, the Jepsen test on the real local stack: the PostgreSQL primary cut off from etcd and from the
standby while the API still reaches it (primary-partition, short profile). No acknowledged order may be lost
(the read-back of every acknowledged order) and no two members may be writable in the same polling round."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resilience.history import History
from resilience.targets.local.target import LocalTarget

from test_experiments import check_evidence, run, values

pytestmark = pytest.mark.stack


def test_primary_partition_loses_no_order_and_never_has_two_writable_primaries(stack: LocalTarget, capsys: Any,
                                                                               tmp_path: Path) -> None:
    code, summary = run(capsys, tmp_path, "primary-partition")
    check_evidence(summary)
    records = History.load(Path(summary["run_dir"]) / "history.jsonl").sorted()
    [effect] = [r for r in records if r.source == "fault" and r.op == "effect"]
    assert effect.status == "ok", effect  # the cut took effect: its nft counters dropped etcd and peer packets
    rounds = [r for r in records if r.source == "platform" and r.op == "pg_writable"]
    injected = next(r for r in records if r.source == "platform" and r.op == "fault:partition_primary"
                    and (r.detail or {}).get("phase") == "inject")
    v = values(summary)
    result = json.loads((Path(summary["run_dir"]) / "result.json").read_text())
    detail = {m["name"]: m["detail"] for m in result["measurements"]}
    print(f"\nprimary-partition: verdict {summary['verdict']}; cut {injected.detail}; effect {effect.detail}; "
          f"{len(rounds)} rounds; two writable {v['two_writable_primaries']} ({detail['two_writable_primaries']}); "
          f"demoted after {v.get('primary_demoted_s')} s, new primary after {v.get('new_primary_s')} s; "
          f"RTO {v['rto_s']} s; lost writes {v['lost_writes']} ({detail['lost_writes']}); "
          f"availability fault {v['availability_fault']}; P99 fault {v['p99_ms_fault']} ms; "
          f"longest {v['longest_request_ms']} ms ({detail['longest_request_ms']}); "
          f"recovered after {v['recovered_after_fault_s']} s")
    assert len(rounds) > 40 and any((r.detail or {}).get("after_heal") for r in rounds)  # it watched the rejoin
    assert v["two_writable_primaries"] == 0, detail["two_writable_primaries"]
    assert v["lost_writes"] == 0, detail["lost_writes"]
    assert v["primary_demoted_s"] is not None and v["new_primary_s"] is not None
    assert code in (0, 1)
