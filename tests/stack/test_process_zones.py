"""Zones as process groups (no network namespaces): a lost zone is frozen; traffic continues.
Runs on a stack of its own (the shared one is stopped first: same HAProxy port)."""

from __future__ import annotations

import time

import pytest

from resilience.fault_registry import fault_call
from resilience.targets.local.target import LocalTarget
from stack_helpers import Traffic, stack_settings, wait_until  # noqa: I001

pytestmark = [pytest.mark.stack, pytest.mark.own_stack]


def test_process_mode_zone_loss_freezes_the_zone_and_traffic_continues() -> None:
    target = LocalTarget(stack_settings(zone_mode="process", state_dir="/var/lib/resilience-test-proc"))
    target.down()
    try:
        status = target.up()
        assert status.healthy and status.zone_mode == "process"
        assert {c.address.split(":")[0] for c in status.components} == {"127.0.0.1"}
        zone_c_replicas = {c.name for c in status.components if c.kind == "api" and c.zone == "zone-c"}
        with Traffic(target.url()) as t:
            time.sleep(1.0)
            t0 = time.monotonic()
            step = target.inject(fault_call("lose_zone", {"zone": "zone-c"}))
            wait_until(lambda: not any(c.healthy for c in target.status().components if c.name in zone_c_replicas),
                       10, "zone-c's replicas to leave the load balancer")
            wait_until(lambda: t.successes_since(time.monotonic() - 1.0) > 10, 15, "orders to flow again")
        assert t.failures_since(t0) <= 5
        target.rollback(step)
        wait_until(lambda: target.status().healthy, 60, "zone-c back and the stack healthy")
    finally:
        target.down()
    assert not target.running()
