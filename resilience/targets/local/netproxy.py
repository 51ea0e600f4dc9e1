"""A userspace TCP proxy on a named network path: where gray network faults are injected (the toxiproxy model).

Why a proxy: this machine's kernel has no `sch_netem` (FIELD-NOTES.md), and Toxiproxy's server
is in no registry we can reach. The supervisor runs one proxy process in front of the database
(`python -m resilience.targets.local.netproxy --route LISTEN=UPSTREAM ... --control SOCK`); the
API replicas' DSN names the proxy's addresses, so every API <-> database byte goes through it.
Until a fault sets toxics it only copies bytes (pass-through costs well under a millisecond).

Routes carry the name of the path they belong to (`api-cache@LISTEN=UPSTREAM`; no name: `api-database`),
and toxics are set per path (a request without `path` sets every path): one proxy process carries
the API <-> database and the API <-> cache paths, each degraded on its own.

Toxics (one set per path: the proxy's routes of that path *are* the path):
- `delay_ms` +- `jitter_ms` (uniform) per chunk on the way back from the upstream: every round
  trip pays it once; chunk order is kept (a chunk is never released before the one ahead of it);
- `rate_kbps`: a bandwidth limit per connection and direction (0: none);
- `mode`: `pass`; `blackhole`: nothing is forwarded either way, connections are held open and
  new ones accepted and held (what a silent drop looks like to a client: it waits for its own
  timeout), the held bytes flow again when the mode is cleared; `reset`: every connection is
  closed with a TCP RST, and each new one too (what a REJECT with tcp-reset looks like).

Control: a Unix socket, one JSON request per line, one JSON answer per line:
`{"op": "set", "delay_ms": 100, "jitter_ms": 20}`, `{"op": "clear"}`, `{"op": "stats"}` (each with an
optional `"path": "api-cache"`); `{"op": "route", "route": "lb-replica@LISTEN=UPSTREAM"}` adds a route at
run time, or points the route on that listen address at a new upstream (the LB <-> one replica path:
which replica is known only when the fault is injected).
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
DEFAULT_PATH = "api-database"  # a route without a path name


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
    path: str = DEFAULT_PATH

    @classmethod
    def parse(cls, text: str) -> "Route":
        """`[PATH@]HOST:PORT=HOST:PORT` (listen = upstream)."""
        path, _, text = text.rpartition("@")
        listen, _, upstream = text.partition("=")
        return cls(_address(listen), _address(upstream), path or DEFAULT_PATH)

    def text(self) -> str:
        named = "" if self.path == DEFAULT_PATH else f"{self.path}@"
        return f"{named}{self.listen[0]}:{self.listen[1]}={self.upstream[0]}:{self.upstream[1]}"


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
    """The routes, the toxics now (per path), the open connections and the counters (all, and per path)."""

    routes: list[Route]
    counters: Counters = field(default_factory=Counters)
    seed: int | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.paths = list(dict.fromkeys(r.path for r in self.routes))
        self.by_path = {p: Toxics() for p in self.paths}
        self.counted = {p: Counters() for p in self.paths}
        self.flowing = {p: asyncio.Event() for p in self.paths}  # cleared while blackholed: its pumps wait on it
        for event in self.flowing.values():
            event.set()
        self.live: set[tuple[str, asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self.servers: list[asyncio.base_events.Server] = []

    @property
    def toxics(self) -> Toxics:
        """The first path's toxics (a proxy of one path: its toxics)."""
        return self.by_path[self.paths[0]]

    def count(self, path: str, name: str, amount: float = 1) -> None:
        for counters in (self.counters, self.counted[path]):
            setattr(counters, name, getattr(counters, name) + amount)

    # -- the data path ---------------------------------------------------------------------------
    async def start(self) -> None:
        for route in self.routes:
            await self.listen(route)

    async def listen(self, route: Route) -> None:
        server = await asyncio.start_server(functools.partial(self.handle, route.listen),
                                            route.listen[0], route.listen[1], reuse_address=True)
        self.servers.append(server)

    async def add_route(self, route: Route) -> None:
        """A route added at run time; one on the same listen address is pointed at the new upstream (new
        connections only) and moved to the new path."""
        known = [i for i, r in enumerate(self.routes) if r.listen == route.listen]
        if route.path not in self.by_path:
            self.paths.append(route.path)
            self.by_path[route.path], self.counted[route.path] = Toxics(), Counters()
            self.flowing[route.path] = asyncio.Event()
            self.flowing[route.path].set()
        if known:
            self.routes[known[0]] = route
        else:
            self.routes.append(route)
            await self.listen(route)

    async def handle(self, listen: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        route = next(r for r in self.routes if r.listen == listen)  # as it is now (a route may be re-pointed)
        path = route.path
        self.count(path, "connections")
        if self.by_path[path].mode == RESET:
            self.count(path, "resets")
            _reset(writer)
            return
        pair: tuple[str, asyncio.StreamWriter, asyncio.StreamWriter | None] = (path, writer, None)
        self.live.add(pair)
        self.count(path, "open")
        try:
            await self.flowing[path].wait()  # a blackholed path holds a new connection before it reaches the upstream
            if pair not in self.live:  # reset while held
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*route.upstream),
                                                              UPSTREAM_CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError):
                self.count(path, "upstream_failures")
                _reset(writer)  # the client sees what a refused connection looks like
                return
            self.live.discard(pair)
            pair = (path, writer, up_writer)
            self.live.add(pair)
            await asyncio.gather(self.pump(reader, up_writer, down=False, path=path),
                                 self.pump(up_reader, writer, down=True, path=path), return_exceptions=True)
        finally:
            self.live.discard(pair)
            self.count(path, "open", -1)
            for w in pair[1:]:
                if w is not None and not w.is_closing():
                    w.close()

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, down: bool,
                   path: str = DEFAULT_PATH) -> None:
        """Copy one direction; on the way down each chunk waits for its delay, order kept."""
        loop = asyncio.get_running_loop()
        toxics = self.by_path  # looked up per chunk: a fault set meanwhile applies to the next chunk
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)

        async def read() -> None:
            last = 0.0
            try:
                while chunk := await reader.read(CHUNK):
                    delay = toxics[path].delay_s(self.rng) if down else 0.0
                    if delay:
                        self.count(path, "delayed_chunks")
                        self.count(path, "delay_total_s", delay)
                    last = max(last, loop.time() + delay)
                    await queue.put((last, chunk))
            finally:
                await queue.put(None)

        async def write() -> None:
            budget_at = 0.0  # with a bandwidth limit: when the next slice may leave
            while (item := await queue.get()) is not None:
                at, chunk = item
                await self.flowing[path].wait()
                if (wait := at - loop.time()) > 0:
                    await asyncio.sleep(wait)
                rate = toxics[path].rate_kbps
                for piece in self.slices(chunk, rate):
                    if rate > 0:
                        budget_at = max(budget_at, loop.time())
                        if (wait := budget_at - loop.time()) > 0:
                            await asyncio.sleep(wait)
                        budget_at += len(piece) / (rate * 125.0)  # kbit/s -> bytes/s
                    writer.write(piece)
                    await writer.drain()
                self.count(path, "bytes_down" if down else "bytes_up", len(chunk))
            if writer.can_write_eof():
                writer.write_eof()

        await asyncio.gather(read(), write())

    @staticmethod
    def slices(chunk: bytes, rate_kbps: float) -> list[bytes]:
        """The chunk whole, or in 20 ms worth of bytes each under a bandwidth limit (a smooth rate, not bursts)."""
        if rate_kbps <= 0:
            return [chunk]
        size = max(512, int(rate_kbps * 125.0 / 50))
        return [chunk[i:i + size] for i in range(0, len(chunk), size)]

    # -- control -----------------------------------------------------------------------------------
    def set(self, toxics: Toxics, path: str | None = None) -> None:
        """Set the toxics of one path (None: of every path)."""
        for name in [path] if path is not None else self.paths:
            self.by_path[name] = toxics
            if toxics.mode == BLACKHOLE:
                self.flowing[name].clear()
            else:
                self.flowing[name].set()
            if toxics.mode == RESET:
                for pair in [p for p in self.live if p[0] == name]:
                    self.live.discard(pair)
                    for w in pair[1:]:
                        if w is not None:
                            _reset(w)
                    self.count(name, "resets")

    def stats(self) -> dict[str, Any]:
        return {"toxics": asdict(self.toxics), "counters": asdict(self.counters),
                "paths": {p: {"toxics": asdict(self.by_path[p]), "counters": asdict(self.counted[p])} for p in self.paths},
                "routes": [r.text() for r in self.routes]}

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        path = request.get("path")
        if path is not None and path not in self.by_path:
            raise ValueError(f"this proxy carries no path {path!r}; it carries {', '.join(self.paths)}")
        if op == "set":
            self.set(Toxics.from_request(request), path)
        elif op == "clear":
            self.set(Toxics(), path)
        elif op != "stats":
            raise ValueError(f"unknown op {op!r}: use set, clear or stats")
        return {"ok": True, **self.stats()}

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if request.get("op") == "route":
                        await self.add_route(Route.parse(str(request.get("route"))))
                        request = {"op": "stats"}
                    reply = self.answer(request)
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
