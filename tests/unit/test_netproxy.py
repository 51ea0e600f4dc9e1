"""The network proxy's toxics, against an echo server on 127.0.0.1: pass-through, delay with jitter,
bandwidth, blackhole (held, then released) and reset (RST), and its control socket."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from resilience.targets.local import netproxy
from resilience.targets.local.netproxy import BLACKHOLE, RESET, Proxy, Route, Toxics


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _with_proxy(test: Callable[[Proxy, int], Awaitable[None]]) -> None:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    up_port = echo.sockets[0].getsockname()[1]
    probe = await asyncio.start_server(_echo, "127.0.0.1", 0)  # find a free port for the proxy
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    proxy = Proxy([Route(("127.0.0.1", port), ("127.0.0.1", up_port))], seed=1)
    await proxy.start()
    try:
        await test(proxy, port)
    finally:
        for s in proxy.servers:
            s.close()
        echo.close()


async def _rtt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes = b"x") -> float:
    t0 = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    await reader.readexactly(len(payload))
    return time.perf_counter() - t0


def test_pass_through_then_delay_with_jitter() -> None:
    async def body(proxy: Proxy, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        plain = [await _rtt(reader, writer) for _ in range(20)]
        assert statistics.median(plain) < 0.01
        proxy.set(Toxics(delay_ms=50, jitter_ms=10))
        slow = [await _rtt(reader, writer) for _ in range(20)]
        assert 0.035 <= min(slow) and max(slow) < 0.1, slow
        assert 0.045 <= statistics.median(slow) <= 0.07, slow
        assert proxy.counters.delayed_chunks >= 20
        proxy.set(Toxics())
        assert statistics.median([await _rtt(reader, writer) for _ in range(5)]) < 0.01
        writer.close()
    asyncio.run(_with_proxy(body))


def test_bandwidth_limit() -> None:
    async def body(proxy: Proxy, port: int) -> None:
        proxy.set(Toxics(rate_kbps=800))  # 100 kB/s each way
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        took = await _rtt(reader, writer, b"y" * 20_000)
        assert took >= 0.15, took  # 20 kB up, then 20 kB down, at 100 kB/s
        writer.close()
    asyncio.run(_with_proxy(body))


def test_blackhole_holds_then_releases_and_reset_sends_rst() -> None:
    async def body(proxy: Proxy, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _rtt(reader, writer)
        proxy.set(Toxics(mode=BLACKHOLE))
        writer.write(b"held")
        await writer.drain()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.3)
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)  # a new connection is accepted and held too
        w2.write(b"new")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(r2.readexactly(3), 0.3)
        proxy.set(Toxics())  # the held bytes flow again, nothing lost
        assert await asyncio.wait_for(reader.readexactly(4), 1) == b"held"
        assert await asyncio.wait_for(r2.readexactly(3), 1) == b"new"
        proxy.set(Toxics(mode=RESET))
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(_rtt(reader, writer), 1)
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(_rtt(r3, w3), 1)
        assert proxy.counters.resets >= 3
    asyncio.run(_with_proxy(body))


def test_control_socket(tmp_path: Path) -> None:
    control = tmp_path / "proxy.sock"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    future = asyncio.run_coroutine_threadsafe(netproxy.serve([Route(("127.0.0.1", 0), ("127.0.0.1", 9))], control), loop)
    try:
        deadline = time.monotonic() + 5
        while not control.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        reply: dict[str, Any] = netproxy.ask(control, {"op": "set", "delay_ms": 100, "jitter_ms": 20})
        assert reply["toxics"]["delay_ms"] == 100
        with pytest.raises(RuntimeError, match="mode must be one of"):
            netproxy.ask(control, {"op": "set", "mode": "sideways"})
        assert netproxy.ask(control, {"op": "clear"})["toxics"] == {"delay_ms": 0.0, "jitter_ms": 0.0,
                                                                    "rate_kbps": 0.0, "mode": "pass"}
    finally:
        time.sleep(0.1)
        future.cancel()
        time.sleep(0.1)  # the cancellation runs in the loop before it stops
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_route_parse() -> None:
    assert Route.parse("10.231.0.1:5541=10.231.1.1:5441") == Route(("10.231.0.1", 5541), ("10.231.1.1", 5441))
    with pytest.raises(ValueError):
        Route.parse("nowhere")
