"""Zones as network namespaces: reachability, cut, restore, and complete cleanup."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from resilience.errors import UserError
from resilience.targets.local.zones import (
    ProcessZones,
    ZoneNetwork,
    detect_zone_mode,
    list_links,
    list_namespaces,
)

PREFIX = "rslt-"
SUBNET = "10.232.0.0/16"
ZONES = ("zone-a", "zone-b", "zone-c")
PORT = 17301

NETNS_OK = os.geteuid() == 0 and detect_zone_mode("auto")[0] == "netns"
needs_netns = pytest.mark.skipif(not NETNS_OK, reason="network namespaces need root on Linux")


def leftovers() -> list[str]:
    return [n for n in list_namespaces() + list_links() if n.startswith(PREFIX)]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def reachable(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.3):
            return True
    except OSError:
        return False


@pytest.fixture
def network() -> Iterator[ZoneNetwork]:
    zones = ZoneNetwork(ZONES, SUBNET, prefix=PREFIX)
    try:
        zones.create()
        yield zones
    finally:
        zones.destroy()
        assert leftovers() == []


@needs_netns
def test_zone_is_reachable_cut_and_restored(network: ZoneNetwork) -> None:
    assert network.exists()
    network.create()  # idempotent
    assert network.address("zone-b") == "10.232.2.1"
    assert network.host_address() == "10.232.0.1"
    address = network.address("zone-b")
    server = subprocess.Popen(
        network.exec_prefix("zone-b") + [sys.executable, "-m", "http.server", "--bind", address, str(PORT)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: reachable(address, PORT), 10, "the server in zone-b")
        # `ip netns exec` execs: the tracked PID is the server, and it lives in the zone.
        pids = subprocess.run(["ip", "netns", "pids", network.netns("zone-b")],
                              capture_output=True, text=True).stdout.split()
        assert str(server.pid) in pids
        assert not reachable("127.0.0.1", PORT)  # not in the root namespace

        network.cut("zone-b")
        assert network.is_cut("zone-b") and not network.is_cut("zone-a")
        wait_until(lambda: not reachable(address, PORT), 5, "zone-b to be unreachable")
        assert server.poll() is None  # the zone's processes keep running

        network.restore("zone-b")
        assert not network.is_cut("zone-b")
        wait_until(lambda: reachable(address, PORT), 5, "zone-b to be reachable again")
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@needs_netns
def test_destroy_removes_a_crashed_runs_leftovers() -> None:
    try:
        ZoneNetwork(ZONES, SUBNET, prefix=PREFIX).create()
        # A new object (as after a crash) knows nothing but the prefix.
        fresh = ZoneNetwork(["other"], SUBNET, prefix=PREFIX)
        fresh.destroy()
        assert leftovers() == []
        fresh.destroy()  # safe twice
    finally:
        ZoneNetwork(ZONES, SUBNET, prefix=PREFIX).destroy()


def test_process_zones_are_labels() -> None:
    zones = ProcessZones(ZONES)
    assert zones.address("zone-a") == "127.0.0.1"
    assert zones.exec_prefix("zone-c") == []
    assert zones.netns("zone-b") is None
    with pytest.raises(NotImplementedError):
        zones.cut("zone-a")
    with pytest.raises(UserError):
        zones.address("zone-x")


def test_names_and_addresses_without_creating_anything() -> None:
    zones = ZoneNetwork(ZONES, "10.231.0.0/16", prefix="rsl-")
    assert zones.bridge == "rsl-br"
    assert zones.host_veth("zone-c") == "rsl-z3h" and zones.zone_veth("zone-c") == "rsl-z3n"
    assert zones.netns("zone-a") == "rsl-zone-a"
    assert [zones.address(z) for z in ZONES] == ["10.231.1.1", "10.231.2.1", "10.231.3.1"]
    assert zones.exec_prefix("zone-a") == ["ip", "netns", "exec", "rsl-zone-a"]
    with pytest.raises(UserError):
        zones.address("zone-x")
    with pytest.raises(UserError):
        ZoneNetwork(ZONES, "10.231.0.0/16", prefix="much-too-long-")
    with pytest.raises(UserError):
        ZoneNetwork(ZONES, "10.231.0.0/24")


def test_detect_zone_mode() -> None:
    assert detect_zone_mode("process")[0] == "process"
    assert detect_zone_mode("auto")[0] in ("netns", "process")
    with pytest.raises(UserError):
        detect_zone_mode("bogus")
    if NETNS_OK:
        assert detect_zone_mode("netns")[0] == "netns"
    else:
        with pytest.raises(UserError, match="zone_mode"):
            detect_zone_mode("netns")
