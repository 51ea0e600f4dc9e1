"""Issue 20 item 6 on the real local stack: db-failover's RTO taken apart from the services' own signals
(Patroni's leader key in etcd, Sentinel's events, HAProxy's server states), each phase within its bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resilience.checkers.failover_phases import phases
from resilience.cli import main
from resilience.history import History
from resilience.targets.local.target import LocalTarget

from stack_helpers import wait_until

pytestmark = pytest.mark.stack


def test_db_failover_phases_come_from_the_services_signals(stack: LocalTarget, capsys: Any, tmp_path: Path) -> None:
    wait_until(lambda: stack.status().healthy and stack.ready_replicas() >= 3, 90, "a healthy stack")
    code = main(["run", "db-failover", "--profile", "short", "--keep-up", "--json", "--quiet",
                 "--reports-dir", str(tmp_path), "--seed", "3"])
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert code in (0, 1), summary
    records = History.load(Path(summary["run_dir"]) / "history.jsonl").sorted()
    signals = [r for r in records if r.source == "signal"]
    ops = [r.op for r in signals]
    assert ops[0] == "watching" and ops[-1] == "stopped" and "unreachable" not in ops, ops
    assert signals[-1].detail == {"alive": []}  # every watch thread ended with the run
    found = phases(records)
    assert found is not None, "no failover found in the history"
    pg = found["postgres"]
    print(json.dumps({k: v for k, v in pg.items() if k != "phases"}, indent=1))
    assert pg["sources"]["detect"].startswith("signal/leader deleted")
    assert pg["sources"]["promote"].startswith("signal/leader set")
    assert pg["sources"]["route"].startswith("signal/lb_server")
    for phase in pg["phases"]:
        assert phase["s"] is not None and phase["within"] is not False, phase
    detection = {m["name"]: (m["value"], m["target"], m["status"]) for m in summary["measurements"]
                 if m["name"] in ("detection_s", "alert_cleared_s")}
    print(detection)  # judged against db-failover's own targets (150 s, 360 s for production windows; / 30 here)
    failover = next(m for m in summary["measurements"] if m["name"] == "failover_s")
    assert abs(failover["value"] - (pg["detect_s"] + pg["promote_s"] + pg["reconnect_s"])) < 0.01
