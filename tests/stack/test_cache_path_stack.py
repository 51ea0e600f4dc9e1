"""Issue 21's API <-> cache path on the real local stack: the API's Redis connections cross the network proxy
(the address map), each network fault on `path: api-cache` shows on the path while it is on and is gone after
its undo, the database path is untouched meanwhile, and Sentinel (asked directly) keeps the same master."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest

from resilience.targets.local import netproxy
from resilience.targets.local.netfaults import NFT_TABLES
from resilience.targets.local.target import LocalTarget

from stack_helpers import assert_path_fault_showed

pytestmark = pytest.mark.stack

PATH = "api-cache"


def _stats(stack: LocalTarget) -> dict[str, Any]:
    return netproxy.ask(stack.root / "netproxy" / "control.sock", {"op": "stats"})


def _fault(stack: LocalTarget, fault: str, phase: str, path: str = PATH, **args: Any) -> dict[str, Any]:
    return stack.local.request("fault", timeout=60, fault=fault, phase=phase, path=path, **args)


def _master(stack: LocalTarget) -> str | None:
    return stack.local.request("status", timeout=10).get("redis_master")


def test_the_apis_redis_connections_cross_the_proxy(stack: LocalTarget) -> None:
    before = _stats(stack)["paths"][PATH]["counters"]
    for _ in range(30):
        httpx.get(f"{stack.url()}/menu", timeout=5).raise_for_status()
    after = _stats(stack)["paths"][PATH]["counters"]
    print(f"\napi-cache path counters before {before}, after 30 GET /menu {after}")
    assert after["connections"] >= 1 and after["bytes_up"] > before["bytes_up"], after


@pytest.mark.parametrize("fault,args", [("delay_network", {"delay_ms": 100, "jitter_ms": 20}),
                                        ("drop_packets", {"percent": 25}),
                                        ("blackhole_network", {}), ("reject_network", {})])
def test_each_network_fault_shows_on_the_cache_path_and_is_gone_after_its_undo(stack: LocalTarget, fault: str,
                                                                              args: dict[str, Any]) -> None:
    master = _master(stack)
    injected = _fault(stack, fault, "inject", **args)
    try:
        for _ in range(20):  # traffic on the path for the loss counters
            httpx.get(f"{stack.url()}/menu", timeout=5)
        during = _fault(stack, fault, "measure")
        database = _fault(stack, fault, "measure", path="api-database")
    finally:
        _fault(stack, fault, "undo")
    after = _fault(stack, fault, "measure")
    print(f"\n{fault} on {PATH}: {injected['where']}; baseline {injected['baseline']}; during {during}; "
          f"database path meanwhile {database}; after {after}")
    assert_path_fault_showed(fault, injected["baseline"], during, after)
    assert database["answered"] == database["samples"] and database["rtt_p50_ms"] < 20, database
    assert subprocess.run(["nft", "list", "table", "inet", NFT_TABLES[PATH]], capture_output=True).returncode != 0
    assert _stats(stack)["paths"][PATH]["toxics"]["mode"] == "pass"
    assert _master(stack) == master  # Sentinel's own checks do not cross the fault: no cache failover


def test_a_delay_on_the_lb_path_slows_exactly_one_replica_and_is_gone_after_its_undo(stack: LocalTarget) -> None:
    import statistics
    import time
    injected = _fault(stack, "delay_network", "inject", path="lb-replica", delay_ms=100, jitter_ms=0)
    times: dict[str, list[float]] = {}
    try:
        during = _fault(stack, "delay_network", "measure", path="lb-replica")
        with httpx.Client(timeout=5) as client:
            for _ in range(60):
                t0 = time.perf_counter()
                answer = client.get(f"{stack.url()}/health/live")
                times.setdefault(answer.headers["x-replica"], []).append(time.perf_counter() - t0)
    finally:
        undone = _fault(stack, "delay_network", "undo", path="lb-replica")
    after = _fault(stack, "delay_network", "measure", path="lb-replica")
    medians = {name: round(statistics.median(t) * 1000, 1) for name, t in times.items()}
    print(f"\nlb-replica: {injected['where']}, slot {injected['slot']} ({injected['replica']}); baseline "
          f"{injected['baseline'].get('rtt_p50_ms')} ms, during {during.get('rtt_p50_ms')} ms, after "
          f"{after.get('rtt_p50_ms')} ms; GET /health/live medians through the LB {medians}; undo {undone}")
    assert 60 <= during["rtt_p50_ms"] - injected["baseline"]["rtt_p50_ms"] <= 160, during
    assert [name for name, ms in medians.items() if ms >= 80] == [injected["replica"]], medians
    assert undone["counters"]["replica_restored"] is True
    assert after["answered"] == after["samples"] and after["rtt_p50_ms"] < 20, after
