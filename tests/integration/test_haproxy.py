"""A real HAProxy with the rendered config, driven over its runtime API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resilience.errors import HarnessError
from resilience.targets.local.haproxy import HAPROXY_BINARY, HAProxyAdmin, foreground_command, render_config

LB_PORT = 17080
STATS_PORT = 17404
BACKEND_PORTS = (17101, 17102)

pytestmark = pytest.mark.skipif(not Path(HAPROXY_BINARY).is_file(), reason=f"{HAPROXY_BINARY} not installed")

# Answers 200 with its own port to every GET (so /health/ready is healthy).
TINY_SERVER = """
import http.server, sys
port = int(sys.argv[1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(port).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll `condition` until true; return the seconds it took, fail the test at the deadline."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process we started (its whole session) and reap it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def start_backend(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", TINY_SERVER, str(port)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=3) as response:
        return response.status, response.read().decode()


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[HAProxyAdmin]:
    socket_path = tmp_path / "admin.sock"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_config(bind="127.0.0.1", port=LB_PORT, stats_port=STATS_PORT,
                                 socket_path=str(socket_path), slots=3))
    log = (tmp_path / "haproxy.log").open("wb")
    process = subprocess.Popen(foreground_command(cfg), start_new_session=True, stdout=log, stderr=log)
    try:
        admin = HAProxyAdmin(socket_path)
        admin.wait_ready(timeout_s=10)
        yield admin
    finally:
        stop(process)
        log.close()


@pytest.fixture
def backends() -> Iterator[dict[int, subprocess.Popen[bytes]]]:
    processes = {port: start_backend(port) for port in BACKEND_PORTS}
    try:
        yield processes
    finally:
        for process in processes.values():
            stop(process)


def test_slots_start_in_maintenance(haproxy: HAProxyAdmin) -> None:
    states = haproxy.server_states()
    assert sorted(states) == [1, 2, 3]
    assert all(s.status == "MAINT" for s in states.values())
    assert haproxy.up_slots() == []


def test_enable_kill_drain_disable(haproxy: HAProxyAdmin, backends: dict[int, subprocess.Popen[bytes]]) -> None:
    haproxy.enable_server(1, "127.0.0.1", BACKEND_PORTS[0])
    haproxy.enable_server(2, "127.0.0.1", BACKEND_PORTS[1])
    wait_until(lambda: haproxy.up_slots() == [1, 2], 10, "both servers UP")
    assert haproxy.server_states()[1].address == f"127.0.0.1:{BACKEND_PORTS[0]}"
    assert haproxy.server_states()[3].status == "MAINT"

    answered = {get(f"http://127.0.0.1:{LB_PORT}/menu")[1] for _ in range(10)}
    assert answered == {str(p) for p in BACKEND_PORTS}  # leastconn spreads idle requests

    stop(backends[BACKEND_PORTS[0]])
    wait_until(lambda: haproxy.up_slots() == [2], 10, "the killed server DOWN")
    assert haproxy.server_states()[1].status == "DOWN"
    for _ in range(10):
        assert get(f"http://127.0.0.1:{LB_PORT}/menu") == (200, str(BACKEND_PORTS[1]))

    haproxy.drain_server(2)
    assert haproxy.server_states()[2].status == "DRAIN"
    haproxy.disable_server(2)
    assert haproxy.server_states()[2].status == "MAINT"
    assert haproxy.up_slots() == []


def test_enabled_server_waits_for_health_checks(haproxy: HAProxyAdmin) -> None:
    # Nothing listens on 17103: the slot must never be reported UP.
    haproxy.enable_server(3, "127.0.0.1", 17103)
    assert haproxy.server_states()[3].status == "DOWN"  # not "UP 1/2" before the first check
    wait_until(lambda: haproxy.server_states()[3].check_status.startswith("L4"), 10, "a failed check")
    assert haproxy.server_states()[3].status == "DOWN"
    assert haproxy.up_slots() == []


def test_command_waits_for_a_missing_socket(tmp_path: Path) -> None:
    admin = HAProxyAdmin(tmp_path / "missing.sock")
    started = time.monotonic()
    with pytest.raises(HarnessError, match="did not answer"):
        admin.command("show info", timeout_s=0.3)
    assert time.monotonic() - started >= 0.3
