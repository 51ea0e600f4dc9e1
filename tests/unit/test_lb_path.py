"""The load balancer <-> one replica path (issue 21): a proxy route added at run time and re-pointed, HAProxy's
server for the lowest enabled slot pointed through it and back, and a slot taken over meanwhile left alone."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from resilience.config import StackSettings
from resilience.fault_registry import fault_call
from resilience.targets.local import lbpath
from resilience.targets.local.faults import FAULTS
from resilience.targets.local.nemesis import LocalNemesis
from resilience.targets.local.netproxy import Proxy, Route
from resilience.targets.local.services import StackLayout
from test_network_faults import ScriptedSupervisor


async def _echo_server(tag: bytes) -> tuple[asyncio.base_events.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(tag)
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _ask(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x")
    await writer.drain()
    data = await reader.read(1)
    writer.close()
    return data


def test_a_route_added_at_run_time_and_re_pointed() -> None:
    async def body() -> None:
        a, port_a = await _echo_server(b"A")
        b, port_b = await _echo_server(b"B")
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        listen = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        proxy = Proxy([Route(("127.0.0.1", 1), ("127.0.0.1", 2))])  # a database route, never started here
        await proxy.add_route(Route.parse(f"lb-replica@127.0.0.1:{listen}=127.0.0.1:{port_a}"))
        assert await _ask(listen) == b"A" and "lb-replica" in proxy.stats()["paths"]
        await proxy.add_route(Route.parse(f"lb-replica@127.0.0.1:{listen}=127.0.0.1:{port_b}"))
        assert await _ask(listen) == b"B" and len(proxy.routes) == 2
        proxy.answer({"op": "set", "path": "lb-replica", "delay_ms": 1})
        assert proxy.by_path["api-database"].delay_ms == 0
        for s in (a, b, *proxy.servers):
            s.close()
    asyncio.run(body())


class Admin:
    backend = "api"

    def __init__(self) -> None:
        self.commands: list[str] = []

    def command(self, cmd: str) -> str:
        self.commands.append(cmd)
        return "IP changed from '10.231.1.1' to '10.231.0.1', port changed from '8101' to '8200' by 'stats socket command'"


def _parts(tmp_path: Path) -> Any:
    layout = StackLayout(StackSettings(state_dir=str(tmp_path / "state")), lambda z: f"10.231.{ord(z[-1]) - 96}.1",
                         lambda z: None, host="10.231.0.1")
    replicas = {2: SimpleNamespace(slot=2, zone="zone-b", enabled=True, lost=False, stopping=False, executor=SimpleNamespace(pid=12)),
                1: SimpleNamespace(slot=1, zone="zone-a", enabled=True, lost=False, stopping=False, executor=SimpleNamespace(pid=11)),
                3: SimpleNamespace(slot=3, zone="zone-c", enabled=False, lost=False, stopping=False, executor=SimpleNamespace(pid=13))}
    return SimpleNamespace(lock=threading.RLock(), probes=SimpleNamespace(layout=layout),
                           replicas=SimpleNamespace(replicas=replicas, admin=Admin()))


def test_the_lowest_enabled_replica_goes_through_the_proxy_and_back(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict[str, Any]] = []
    monkeypatch.setattr(lbpath.netproxy, "ask", lambda control, request: asked.append(request) or {"ok": True})
    parts = _parts(tmp_path)
    done = lbpath.redirect(parts)
    assert done["slot"] == 1 and done["via"] == "10.231.0.1:8200"
    assert asked == [{"op": "route", "route": f"lb-replica@10.231.0.1:8200={done['replica_address']}"}]
    assert parts.replicas.admin.commands[-1] == "set server api/api1 addr 10.231.0.1 port 8200"
    assert lbpath.restore(parts, done) is True
    host, port = done["replica_address"].split(":")
    assert parts.replicas.admin.commands[-1] == f"set server api/api1 addr {host} port {port}"
    parts.replicas.replicas[1] = SimpleNamespace(slot=1, zone="zone-a", enabled=True, lost=False, stopping=False,
                                                 executor=SimpleNamespace(pid=99))
    assert lbpath.restore(parts, done) is False  # another replica holds the slot now: its address is its own


def test_the_lb_path_is_offered_to_the_proxy_faults_only() -> None:
    nemesis = LocalNemesis(ScriptedSupervisor({}))
    modules = FAULTS.load().modules
    assert modules["delay_network"].refusal(nemesis, fault_call("delay_network", {"path": "lb-replica"})) is None
    refused = modules["limit_bandwidth"].refusal(nemesis, fault_call("limit_bandwidth", {"path": "lb-replica"}))
    assert refused is not None and "api-database" in refused
