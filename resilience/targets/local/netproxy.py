"""A userspace TCP proxy on a named network path: where gray network faults are injected (the toxiproxy model).

Why a proxy: this machine's kernel has no `sch_netem` (FIELD-NOTES.md), and Toxiproxy's server
is in no registry we can reach. The supervisor runs one proxy process in front of the database
(`python -m resilience.targets.local.netproxy --route LISTEN=UPSTREAM ... --control SOCK`); the
API replicas' DSN names the proxy's addresses, so every API <-> database byte goes through it.
Until a fault sets toxics it only copies bytes (pass-through costs well under a millisecond).

Toxics (one set for all routes of a proxy: the proxy *is* the path):
- `delay_ms` +- `jitter_ms` (uniform) per chunk on the way back from the upstream: every round
  trip pays it once; chunk order is kept (a chunk is never released before the one ahead of it);
- `rate_kbps`: a bandwidth limit per connection and direction (0: none);
- `mode`: `pass`; `blackhole`: nothing is forwarded either way, connections are held open and
  new ones accepted and held (what a silent drop looks like to a client: it waits for its own
  timeout), the held bytes flow again when the mode is cleared; `reset`: every connection is
  closed with a TCP RST, and each new one too (what a REJECT with tcp-reset looks like).

Control: a Unix socket, one JSON request per line, one JSON answer per line:
`{"op": "set", "delay_ms": 100, "jitter_ms": 20}`, `{"op": "clear"}`, `{"op": "stats"}`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import socket
import struct
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PASS, BLACKHOLE, RESET = "pass", "blackhole", "reset"
MODES = (PASS, BLACKHOLE, RESET)
CHUNK = 64 * 1024
QUEUE_CHUNKS = 256  # per direction: a reader this far ahead of its writer waits (TCP back-pressure)
UPSTREAM_CONNECT_TIMEOUT_S = 2.0


@dataclass
class Toxics:
    """What the proxy does to the bytes it copies now (all zero and `pass`: a plain copy)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_kbps: float = 0.0
    mode: str = PASS

    def delay_s(self, rng: random.Random) -> float:
        if self.delay_ms <= 0 and self.jitter_ms <= 0:
            return 0.0
        return max(0.0, rng.uniform(self.delay_ms - self.jitter_ms, self.delay_ms + self.jitter_ms)) / 1000.0

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> "Toxics":
        """Toxics from a control request; a ValueError names a bad field."""
        out = cls()
        for name in ("delay_ms", "jitter_ms", "rate_kbps"):
            value = float(request.get(name, 0.0) or 0.0)
            if not 0 <= value < 1e7:
                raise ValueError(f"{name} must be >= 0, got {value}")
            setattr(out, name, value)
        out.mode = str(request.get("mode", PASS))
        if out.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {out.mode!r}")
        return out


@dataclass
class Counters:
    connections: int = 0
    open: int = 0
    resets: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0  # client -> upstream
    bytes_down: int = 0  # upstream -> client
    delayed_chunks: int = 0
    delay_total_s: float = 0.0


@dataclass(frozen=True)
class Route:
    listen: tuple[str, int]
    upstream: tuple[str, int]

    @classmethod
    def parse(cls, text: str) -> "Route":
        """`HOST:PORT=HOST:PORT` (listen = upstream)."""
        listen, _, upstream = text.partition("=")
        return cls(_address(listen), _address(upstream))


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"not a HOST:PORT address: {text!r}")
    return host, int(port)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


@dataclass
class Proxy:
    """The routes, the toxics now, the open connections and the counters."""

    routes: list[Route]
    toxics: Toxics = field(default_factory=Toxics)
    counters: Counters = field(default_factory=Counters)
    seed: int | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.flowing = asyncio.Event()  # cleared while blackholed: every pump waits on it
        self.flowing.set()
        self.live: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self.servers: list[asyncio.base_events.Server] = []

    # -- the data path ---------------------------------------------------------------------------
    async def start(self) -> None:
        for route in self.routes:
            server = await asyncio.start_server(functools.partial(self.handle, route),
                                                route.listen[0], route.listen[1], reuse_address=True)
            self.servers.append(server)

    async def handle(self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        if self.toxics.mode == RESET:
            self.counters.resets += 1
            _reset(writer)
            return
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (writer, None)
        self.live.add(pair)
        self.counters.open += 1
        try:
            await self.flowing.wait()  # a blackholed path holds a new connection before it reaches the upstream
            if pair not in self.live:  # reset while held
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*route.upstream),
                                                              UPSTREAM_CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError):
                self.counters.upstream_failures += 1
                _reset(writer)  # the client sees what a refused connection looks like
                return
            self.live.discard(pair)
            pair = (writer, up_writer)
            self.live.add(pair)
            await asyncio.gather(self.pump(reader, up_writer, down=False), self.pump(up_reader, writer, down=True),
                                 return_exceptions=True)
        finally:
            self.live.discard(pair)
            self.counters.open -= 1
            for w in pair:
                if w is not None and not w.is_closing():
                    w.close()

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, down: bool) -> None:
        """Copy one direction; on the way down each chunk waits for its delay, order kept."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)

        async def read() -> None:
            last = 0.0
            try:
                while chunk := await reader.read(CHUNK):
                    delay = self.toxics.delay_s(self.rng) if down else 0.0
                    if delay:
                        self.counters.delayed_chunks += 1
                        self.counters.delay_total_s += delay
                    last = max(last, loop.time() + delay)
                    await queue.put((last, chunk))
            finally:
                await queue.put(None)

        async def write() -> None:
            budget_at = 0.0  # with a bandwidth limit: when the next slice may leave
            while (item := await queue.get()) is not None:
                at, chunk = item
                await self.flowing.wait()
                if (wait := at - loop.time()) > 0:
                    await asyncio.sleep(wait)
                for piece in self.slices(chunk):
                    if self.toxics.rate_kbps > 0:
                        budget_at = max(budget_at, loop.time())
                        if (wait := budget_at - loop.time()) > 0:
                            await asyncio.sleep(wait)
                        budget_at += len(piece) / (self.toxics.rate_kbps * 125.0)  # kbit/s -> bytes/s
                    writer.write(piece)
                    await writer.drain()
                if down:
                    self.counters.bytes_down += len(chunk)
                else:
                    self.counters.bytes_up += len(chunk)
            if writer.can_write_eof():
                writer.write_eof()

        await asyncio.gather(read(), write())

    def slices(self, chunk: bytes) -> list[bytes]:
        """The chunk whole, or in 20 ms worth of bytes each under a bandwidth limit (a smooth rate, not bursts)."""
        if self.toxics.rate_kbps <= 0:
            return [chunk]
        size = max(512, int(self.toxics.rate_kbps * 125.0 / 50))
        return [chunk[i:i + size] for i in range(0, len(chunk), size)]

    # -- control -----------------------------------------------------------------------------------
    def set(self, toxics: Toxics) -> None:
        self.toxics = toxics
        if toxics.mode == BLACKHOLE:
            self.flowing.clear()
        else:
            self.flowing.set()
        if toxics.mode == RESET:
            for pair in list(self.live):
                self.live.discard(pair)
                for w in pair:
                    if w is not None:
                        _reset(w)
                self.counters.resets += 1

    def stats(self) -> dict[str, Any]:
        return {"toxics": asdict(self.toxics), "counters": asdict(self.counters),
                "routes": [f"{r.listen[0]}:{r.listen[1]}={r.upstream[0]}:{r.upstream[1]}" for r in self.routes]}

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "set":
            self.set(Toxics.from_request(request))
        elif op == "clear":
            self.set(Toxics())
        elif op != "stats":
            raise ValueError(f"unknown op {op!r}: use set, clear or stats")
        return {"ok": True, **self.stats()}

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = self.answer(json.loads(line))
                except (ValueError, TypeError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()


def ask(control: str | Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One control request to a running proxy; a RuntimeError says what failed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(control))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise RuntimeError(f"the network proxy at {control} did not answer {request.get('op')!r}: {exc}") from None
    reply: dict[str, Any] = json.loads(data or b"{}")
    if not reply.get("ok"):
        raise RuntimeError(f"the network proxy refused {request}: {reply.get('error', 'no answer')}")
    return reply


async def serve(routes: list[Route], control: Path, seed: int | None = None) -> None:
    proxy = Proxy(routes, seed=seed)
    await proxy.start()
    control.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(proxy.control, str(control))  # last: its socket means "ready"
    print(f"netproxy: {', '.join(proxy.stats()['routes'])}; control {control}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a TCP proxy with toxics (started by the local supervisor)")
    parser.add_argument("--route", action="append", required=True, help="LISTEN_HOST:PORT=UPSTREAM_HOST:PORT")
    parser.add_argument("--control", required=True, help="the Unix socket for control requests")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve([Route.parse(r) for r in args.route], Path(args.control), args.seed))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
