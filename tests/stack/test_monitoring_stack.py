"""Issue 20 on the real local stack: the monitoring is up with the stack, and a primary kill is alerted."""

from __future__ import annotations

import time

import pytest

from resilience.fault_registry import fault_call
from resilience.targets.local.target import LocalTarget

from stack_helpers import wait_until

pytestmark = pytest.mark.stack


def test_monitoring_is_listed_and_a_primary_kill_fires_and_resolves_database_down(stack: LocalTarget, traffic) -> None:
    status = stack.status()
    monitoring = {c.name: c for c in status.components if c.role == "monitoring"}
    assert {"prometheus", "alertmanager"} <= set(monitoring) and all(c.healthy for c in monitoring.values()), monitoring
    assert all(c.pid for c in monitoring.values())
    t_start = time.monotonic()
    stack.start_observing()
    try:
        with traffic():
            time.sleep(2.0)
            t0 = time.monotonic()
            step = stack.inject(fault_call("fail_over_database", {"mode": "kill"}))

            def notified(op: str) -> bool:
                return any(e.source == "alert" and e.op == op and e.detail.get("alert") == "DatabaseDown"
                           for e in stack.events_since(t0))

            fired = wait_until(lambda: notified("firing"), 30, "Alertmanager to notify DatabaseDown")
            cleared = wait_until(lambda: notified("resolved"), 60, "DatabaseDown to be resolved after the promotion")
            stack.rollback(step)
    finally:
        stack.stop_observing()
    ops = [e.op for e in stack.events_since(t_start) if e.source == "alert"]
    assert ops[0] == "watching" and "unreachable" not in ops, ops
    assert "pending" in ops and ops[-1] == "stopped"
    print(f"DatabaseDown notified {fired:.1f} s after the kill, resolved {cleared:.1f} s later")
