"""Issue 21's resource faults on the real local stack, each injected, measured, undone and measured again (no full
experiments): limit_bandwidth slows a transfer through the API <-> database path to the limit; pressure_memory fills
every API replica's memory group with a hog; throttle_disk_io slows fsync'd writes of the primary's group."""

from __future__ import annotations

from typing import Any

import pytest

from resilience.targets.local import netproxy
from resilience.targets.local.cgroups import controller_root
from resilience.targets.local.faults.limit_bandwidth import limited
from resilience.targets.local.faults.pressure_memory import pressured
from resilience.targets.local.faults.throttle_disk_io import kib_s, throttled
from resilience.targets.local.target import LocalTarget

pytestmark = pytest.mark.stack


def _fault(stack: LocalTarget, fault: str, phase: str, **args: Any) -> dict[str, Any]:
    return stack.local.request("fault", timeout=90, fault=fault, phase=phase, **args)


def test_limit_bandwidth_slows_a_transfer_to_the_limit_and_is_gone_after_its_undo(stack: LocalTarget) -> None:
    injected = _fault(stack, "limit_bandwidth", "inject", path="api-database", kbit_s=2000)
    try:
        during = _fault(stack, "limit_bandwidth", "measure", path="api-database")
    finally:
        undone = _fault(stack, "limit_bandwidth", "undo", path="api-database")
    toxics = netproxy.ask(stack.root / "netproxy" / "control.sock", {"op": "stats"})["toxics"]
    before = injected["baseline"]["transfer"]
    print(f"\nlimit_bandwidth 2000 kbit/s: {before['bytes']} bytes at {before['kbit_s']} kbit/s before, "
          f"{during['transfer']['kbit_s']} kbit/s during ({during['transfer']}); proxy counters {undone['counters']}")
    assert limited(2000, during["transfer"]["kbit_s"]) and during["transfer"]["kbit_s"] > 500, during
    assert not limited(2000, before["kbit_s"]), before
    assert toxics["rate_kbps"] == 0 and toxics["mode"] == "pass"


def test_pressure_memory_fills_each_replica_group_and_the_undo_stops_the_hogs(stack: LocalTarget) -> None:
    injected = _fault(stack, "pressure_memory", "inject", percent=85, limit_mb=256)
    try:
        groups = _fault(stack, "pressure_memory", "measure")["groups"]
    finally:
        undone = _fault(stack, "pressure_memory", "undo")
    root = controller_root("memory")
    print(f"\npressure_memory 85% of 256 MiB: replicas {injected['replicas']}; groups "
          + "; ".join(f"{n}: {g['usage_bytes'] / 2**20:.0f}/{g['limit_bytes'] / 2**20:.0f} MiB, hog RSS "
                      f"{g['hog_rss_bytes'] / 2**20:.0f} MiB, failcnt +{g['failcnt']}" for n, g in groups.items()))
    assert pressured(85, groups), groups
    assert sorted(undone["hogs_stopped"]) == sorted(injected["hogs"])
    assert root is not None and not any((root / "rsl" / name).exists() for name in injected["replicas"])
    assert _fault(stack, "pressure_memory", "measure")["groups"] == {}
    assert stack.local.ready_replicas() >= 1


def test_throttle_disk_io_slows_the_primary_group_writes_and_is_gone_after_its_undo(stack: LocalTarget) -> None:
    injected = _fault(stack, "throttle_disk_io", "inject", write_kib_s=512, write_iops=0)
    try:
        during = _fault(stack, "throttle_disk_io", "measure")
    finally:
        undone = _fault(stack, "throttle_disk_io", "undo")
    root = controller_root("blkio")
    print(f"\nthrottle_disk_io 512 KiB/s on {injected['member']} ({injected['device']}): fsync'd writes "
          f"{kib_s(injected['baseline'])} KiB/s before, {kib_s(during['probe'])} KiB/s during "
          f"({during['processes']} processes in the group); {undone['processes_moved']} moved back")
    assert throttled(512, kib_s(during["probe"])) and during["processes"] > 3, during
    assert not throttled(512, kib_s(injected["baseline"])), injected
    assert root is not None and not (root / "rsl" / injected["member"]).exists()
    assert "probe" not in _fault(stack, "throttle_disk_io", "measure")
