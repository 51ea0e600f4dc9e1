"""Issue 21 on the real local stack: cpu-starved-replicas (short profile). The kernel's throttling of the starved
replicas (cpu.stat nr_throttled) is the effect the run counts; the P99 and availability it causes are judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resilience.history import History
from resilience.targets.local.target import LocalTarget

from test_experiments import check_evidence, run, values

pytestmark = pytest.mark.stack


def test_cpu_starved_replicas_are_throttled_and_the_p99_shows_it(stack: LocalTarget, capsys: Any,
                                                                   tmp_path: Path) -> None:
    code, summary = run(capsys, tmp_path, "cpu-starved-replicas")
    check_evidence(summary)
    records = History.load(Path(summary["run_dir"]) / "history.jsonl").sorted()
    [effect] = [r for r in records if r.source == "fault" and r.op == "effect"]
    undo = next(r for r in records if r.source == "platform" and r.op == "fault:starve_cpu"
                and (r.detail or {}).get("phase") == "undo")
    v = values(summary)
    print(f"\ncpu-starved-replicas: verdict {summary['verdict']}; effect {effect.detail}; throttled by the undo "
          f"{undo.detail}; P99 steady {v['p99_ms_steady']} ms, fault {v['p99_ms_fault']} ms, recovery "
          f"{v['p99_ms_recovery']} ms; availability fault {v['availability_fault']}; longest "
          f"{v['longest_request_ms']} ms; recovered after {v['recovered_after_fault_s']} s")
    assert effect.status == "ok", effect
    assert v["p99_ms_fault"] > v["p99_ms_steady"], v
    assert code in (0, 1)
