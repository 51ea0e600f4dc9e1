"""cgroup v1 CPU limits, accounting and the freezer, on a real busy-looping process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from resilience.targets.local.cgroups import CpuGroup, Freezer, cgroups_available, cleanup, controller_root, utilization

PARENT = "rslt-cgroups"
AVAILABLE, WHY = cgroups_available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=WHY)

BUSY_LOOP = "while True: pass"


@pytest.fixture
def busy_child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], start_new_session=True)
    try:
        yield process
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


@pytest.fixture
def parent_cleanup() -> Iterator[None]:
    try:
        yield
    finally:
        # The child is killed (and reaped) before this runs: nothing may be left.
        left = cleanup(PARENT)
        assert left == []
        for controller in ("cpu", "cpuacct", "freezer"):
            root = controller_root(controller)
            assert root is not None and not (root / PARENT).exists()


def measure(group: CpuGroup, seconds: float) -> tuple[float, float]:
    usage0, wall0 = group.usage_seconds(), time.monotonic()
    time.sleep(seconds)
    return group.usage_seconds() - usage0, time.monotonic() - wall0


def test_cpu_limit_is_enforced_and_freezer_stops_the_process(
        parent_cleanup: None, busy_child: subprocess.Popen[bytes]) -> None:
    cpu = CpuGroup("api-1", parent=PARENT)
    cpu.create(cpu_limit=0.2)
    cpu.add(busy_child.pid)
    assert cpu.pids() == [busy_child.pid]

    used, wall = measure(cpu, 1.5)
    per_second = used / wall
    assert 0.1 <= per_second <= 0.3, f"{per_second:.3f} CPU-s per s under a 0.2 limit"
    assert 0.5 <= utilization(used, wall, 0.2) <= 1.5

    freezer = Freezer("zone-a", parent=PARENT)
    freezer.create()
    freezer.add(busy_child.pid)
    assert freezer.state() == "THAWED"
    freezer.freeze()
    assert freezer.state() == "FROZEN"
    frozen_used, _ = measure(cpu, 0.5)
    assert frozen_used < 0.01, f"a frozen process used {frozen_used:.3f} CPU-s"

    freezer.thaw()
    assert freezer.state() == "THAWED"
    thawed_used, _ = measure(cpu, 0.5)
    assert thawed_used > 0.02

    # Groups are removed only once empty.
    assert cpu.destroy(timeout_s=0.1) is False
    os.killpg(busy_child.pid, signal.SIGKILL)
    busy_child.wait()
    assert cpu.destroy() is True
    assert freezer.destroy() is True
    assert cpu.destroy() is True  # safe when already gone
    assert not cpu.exists() and not freezer.exists()


def test_cleanup_thaws_and_removes_leftovers(parent_cleanup: None) -> None:
    leftover = Freezer("crashed", parent=PARENT)
    leftover.create()
    leftover.freeze()  # an empty group freezes at once
    CpuGroup("api-9", parent=PARENT).create(cpu_limit=0.5)
    assert cleanup(PARENT) == []
    assert not leftover.exists()


def test_utilization() -> None:
    assert utilization(0.7, 2.0, 0.5) == pytest.approx(0.7)
    assert utilization(1.0, 1.0, 0.5) == pytest.approx(2.0)
    assert utilization(0.3, 0.0, 0.5) == 0.0
    with pytest.raises(ValueError):
        utilization(1.0, 1.0, 0.0)
