"""The API <-> cache path (issue 21): the proxy's toxics per path, the stack's routes and the API's address map,
the local fault modules on `path: api-cache`, and the cloud targets refusing it with the reason."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from resilience.config import StackSettings
from resilience.fault_registry import fault_call
from resilience.platform.cache import MappedSentinel
from resilience.platform.settings import parse_address_map, settings_from_env
from resilience.errors import UserError
from resilience.targets.fault_module import InjectContext
from resilience.targets.local.faults import FAULTS
from resilience.targets.local.nemesis import LocalNemesis
from resilience.targets.local.netfaults import NFT_TABLES, loss_script
from resilience.targets.local.netproxy import Proxy, Route, Toxics
from resilience.targets.local.services import StackLayout
from resilience.targets.netpath import path_refusal
from test_network_faults import BASELINE, ScriptedSupervisor


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _free_port() -> int:
    probe = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port: int = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    return port


async def _median_rtt(port: int, n: int = 10) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        writer.write(b"x")
        await writer.drain()
        await reader.readexactly(1)
        times.append(time.perf_counter() - t0)
    writer.close()
    return statistics.median(times)


def test_toxics_set_on_one_path_leave_the_other_alone() -> None:
    async def body() -> None:
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        up = ("127.0.0.1", echo.sockets[0].getsockname()[1])
        db_port, cache_port = await _free_port(), await _free_port()
        proxy = Proxy([Route(("127.0.0.1", db_port), up), Route(("127.0.0.1", cache_port), up, "api-cache")], seed=1)
        await proxy.start()
        try:
            proxy.answer({"op": "set", "path": "api-cache", "delay_ms": 60})
            assert await _median_rtt(cache_port) >= 0.05
            assert await _median_rtt(db_port) < 0.02  # the database's path is not slowed
            stats = proxy.stats()
            assert stats["paths"]["api-cache"]["toxics"]["delay_ms"] == 60
            assert stats["paths"]["api-database"]["toxics"]["delay_ms"] == 0
            assert stats["paths"]["api-cache"]["counters"]["delayed_chunks"] >= 10
            assert stats["paths"]["api-database"]["counters"]["delayed_chunks"] == 0
            proxy.answer({"op": "clear", "path": "api-cache"})
            assert await _median_rtt(cache_port) < 0.02
            with pytest.raises(ValueError, match="carries no path 'api-moon'"):
                proxy.answer({"op": "set", "path": "api-moon"})
            proxy.set(Toxics(delay_ms=40))  # no path: every path (a proxy of one path is unchanged)
            assert proxy.by_path["api-cache"].delay_ms == proxy.by_path["api-database"].delay_ms == 40
        finally:
            for s in proxy.servers:
                s.close()
            echo.close()
    asyncio.run(body())


def test_route_names_its_path() -> None:
    route = Route.parse("api-cache@10.231.0.1:6491=10.231.1.1:6391")
    assert route == Route(("10.231.0.1", 6491), ("10.231.1.1", 6391), "api-cache")
    assert Route.parse(route.text()) == route
    assert Route.parse("127.0.0.1:5541=127.0.0.1:5441").path == "api-database"


def test_the_stack_routes_the_apis_redis_connections_through_the_proxy(tmp_path: Path) -> None:
    layout = StackLayout(StackSettings(state_dir=str(tmp_path / "state")), lambda z: "127.0.0.1", lambda z: None)
    routes = layout.netproxy_cache_routes()
    assert [(listen.port, member.port) for listen, member in routes] == [(6491, 6391), (6492, 6392)]
    argv = layout.netproxy_spec().argv
    assert "api-cache@127.0.0.1:6491=127.0.0.1:6391" in argv and "127.0.0.1:5541=127.0.0.1:5441" in argv
    env = layout.api_spec(1, "a").env
    assert env["RSL_REDIS_ADDRESS_MAP"] == "127.0.0.1:6391=127.0.0.1:6491,127.0.0.1:6392=127.0.0.1:6492"
    assert env["RSL_REDIS_SENTINELS"].endswith(":26393")  # Sentinel itself is asked directly
    mapped = settings_from_env({"RSL_REDIS_ADDRESS_MAP": env["RSL_REDIS_ADDRESS_MAP"]}).redis_address_map
    assert mapped[0] == (("127.0.0.1", 6391), ("127.0.0.1", 6491))


def test_address_map_parsing_and_a_bad_entry_named() -> None:
    assert parse_address_map("") == ()
    with pytest.raises(UserError, match="HOST:PORT=HOST:PORT"):
        parse_address_map("127.0.0.1:6391")


def test_the_api_dials_the_mapped_address_of_the_master_sentinel_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.asyncio.sentinel import Sentinel

    async def named(self: Any, service_name: str) -> tuple[str, int]:
        return "10.0.0.1", 6391
    monkeypatch.setattr(Sentinel, "discover_master", named)
    sentinel = MappedSentinel({("10.0.0.1", 6391): ("10.0.0.9", 6491)}, [("127.0.0.1", 1)])
    assert asyncio.run(sentinel.discover_master("rsl-cache")) == ("10.0.0.9", 6491)
    unmapped = MappedSentinel({}, [("127.0.0.1", 1)])
    assert asyncio.run(unmapped.discover_master("rsl-cache")) == ("10.0.0.1", 6391)


def test_local_faults_on_the_cache_path_name_it_in_every_request() -> None:
    platform = ScriptedSupervisor({**BASELINE, "rtt_p50_ms": 100.9})
    nemesis = LocalNemesis(platform)
    call = fault_call("delay_network", {"path": "api-cache", "delay_ms": 100})
    module = FAULTS.load().modules["delay_network"]
    assert module.refusal(nemesis, call) is None
    step = module.inject(nemesis, call, InjectContext())
    effect = module.effect(nemesis, call, step)
    assert effect is not None and "round trips on api-cache" in effect.signal
    facts = effect.look()
    assert facts is not None and facts["path"] == "api-cache" and facts["injected_rtt_ms"] == pytest.approx(100.5)
    assert platform.requests[0][1]["path"] == "api-cache"
    assert platform.requests[-1] == ("delay_network/measure", {"path": "api-cache"})
    nemesis.rollback(step)
    assert platform.requests[-1] == ("delay_network/undo", {"path": "api-cache"})


def test_bandwidth_is_refused_on_the_cache_path_and_loss_has_its_own_table() -> None:
    nemesis = LocalNemesis(ScriptedSupervisor({}))
    refused = FAULTS.load().modules["limit_bandwidth"].refusal(nemesis, fault_call("limit_bandwidth", {"path": "api-cache"}))
    assert refused is not None and "api-database" in refused
    script = loss_script([6491, 6492], 25, NFT_TABLES["api-cache"])
    assert "table inet rsl-netfault-cache" in script and "tcp dport { 6491, 6492 }" in script
    assert NFT_TABLES["api-cache"] != NFT_TABLES["api-database"]


def test_cloud_targets_refuse_the_cache_path_with_the_reason() -> None:
    assert path_refusal(fault_call("delay_network", {})) is None
    reason = path_refusal(fault_call("drop_packets", {"path": "api-cache", "percent": 20}))
    assert reason is not None and "api-database only" in reason and "docs/gray-failures.md" in reason


def test_the_cloud_fault_modules_refuse_the_cache_path_before_anything_else() -> None:
    from types import SimpleNamespace

    from resilience.targets.aws.faults import FAULTS as AWS_FAULTS
    from resilience.targets.kubernetes.faults import FAULTS as KUBE_FAULTS
    call = fault_call("delay_network", {"path": "api-cache"})
    for table in (KUBE_FAULTS, AWS_FAULTS):
        module = table.load().modules["drop_packets"]
        reason = module.refusal(SimpleNamespace(aws=None), fault_call("drop_packets", {"path": "api-cache", "percent": 5}))
        assert reason is not None and "api-database only" in reason
        assert table.load().modules["delay_network"].refusal(SimpleNamespace(aws=None), call) is not None
