"""Network faults on a named path of the local stack: the mechanisms, the measurement, the modules' shared base.

A path is what an experiment names (`api-database`: the API replicas <-> PostgreSQL; `api-cache`: the
API replicas <-> Redis); on the local stack it is the network proxy's routes of that path
(netproxy.py), which every API <-> database byte crosses (the API's DSN names the proxy) and every
API <-> cache byte (the API finds the master through Sentinel and dials the proxy's route for the
address Sentinel names: RSL_REDIS_ADDRESS_MAP, services.py). Why a proxy and an address map on the
cache path, not nftables on the API's cgroup or a proxy Sentinel announces: Redis' own traffic
(Sentinel's checks, replication) must not cross the fault, or the fault becomes a cache failover
nobody asked for; a proxy announced by Redis (`replica-announce-ip`) would carry Sentinel's checks
too, and a cgroup match cannot add latency (no netem). The map sends exactly the API's Redis
connections through the proxy, so the latency toxic and an nft rule on the proxy's ports both act
on exactly the API -> cache packets. The mechanisms, and which one a fault uses (recorded in its
evidence):
- latency, jitter, blackhole, reset: the proxy's toxics (set over its control socket);
- packet loss: nftables, our own table per path (`inet rsl-netfault`, `inet rsl-netfault-cache`) in
  the root namespace, dropping `numgen random mod 100 < N` of the packets to and from the proxy's
  ports of that path, with counters (deleted by the fault's undo, a heal and `down`);
- `sch_netem` is probed for in a scratch namespace and the answer recorded; this machine's kernel
  has none (FIELD-NOTES.md), so the proxy and nft carry every fault here.

The effect is measured, never assumed: `measure` times PostgreSQL SSLRequest round trips (8 bytes
out, one byte back: a handshake the server answers before any login) through the proxy to the
primary, the way the API's queries go, or Redis `PING`s (answered `-NOAUTH` before any login) to
the master through the cache path; a fault whose measurement does not show it leaves the run
inconclusive (effect_watch.py).
"""

from __future__ import annotations

import os
import socket
import statistics
import struct
import subprocess
import time
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import HarnessError, UserError
from ...fault_registry import FaultCall
from ..base import RollbackStep
from ..effect import Effect
from ..fault_module import InjectContext
from . import lbpath, netproxy, zonepath
from .faults import LocalFault, Phase
from .nft_counters import rule_counters

if TYPE_CHECKING:
    from .nemesis import LocalNemesis
    from .stack_parts import StackParts

PATHS = ("api-database", "api-cache", "lb-replica", zonepath.ZONE_PATH)  # the proxy's routes; two zones (zonepath.py)
NFT_TABLE = "rsl-netfault"
NFT_TABLES = {"api-database": NFT_TABLE, "api-cache": "rsl-netfault-cache", "lb-replica": "rsl-netfault-lb"}
SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's SSLRequest: answered 'S' or 'N' before any login
HELLO = {"api-database": (SSL_REQUEST, (b"S", b"N")),
         "api-cache": (b"PING\r\n", (b"+", b"-")),  # Redis: +PONG, or -NOAUTH before a login: answered either way
         "lb-replica": (b"GET /health/live HTTP/1.0\r\n\r\n", (b"H",))}  # the replica's liveness, as HAProxy asks
PING_SAMPLES = 12
PING_TIMEOUT_S = 1.0
NETWORK_EFFECT_DEADLINE_S = 30.0


# -- sch_netem ------------------------------------------------------------------------------------
_netem: tuple[bool, str] | None = None


def probe_netem() -> tuple[bool, str]:
    """(present, what was seen): add a netem qdisc to a veth in a scratch namespace (once per process; a veth, not
    a dummy link: zones are veths, and a kernel without the dummy module would fail the probe before netem)."""
    global _netem
    if _netem is None:
        ns = f"rslnetem{os.getpid()}"
        steps = [["ip", "netns", "add", ns], ["ip", "-n", ns, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"],
                 ["tc", "-n", ns, "qdisc", "add", "dev", "probe0", "root", "netem", "delay", "1ms"]]
        seen = "no answer"
        try:
            for step in steps:
                done = subprocess.run(step, capture_output=True, text=True, timeout=10)
                if done.returncode != 0:
                    seen = f"`{' '.join(step[3:] if step[0] == 'tc' else step)}` failed: {done.stderr.strip()}"
                    break
            else:
                seen = "tc qdisc netem added in a scratch namespace"
        except (OSError, subprocess.TimeoutExpired) as exc:
            seen = f"probe failed: {exc}"
        finally:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=10)
        _netem = (seen.startswith("tc qdisc netem added"), seen)
    return _netem


# -- packet loss with nftables ----------------------------------------------------------------------
def _nft(script: str) -> str:
    try:
        done = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise UserError("packet loss needs nftables: `apt-get install -y nftables`") from None
    if done.returncode != 0:
        raise HarnessError(f"nft refused the packet-loss table: {done.stderr.strip()}")
    return done.stdout


def loss_script(ports: list[int], percent: float, table: str = NFT_TABLE) -> str:
    """Our table: count every packet to and from the path's ports, drop `percent` of them each way (counted)."""
    p = ", ".join(str(x) for x in ports)
    n = int(round(percent))
    sample = f"numgen random mod 100 < {n} " if n < 100 else ""  # nft refuses `< 100` (out of range): 100% drops all
    return (f"table inet {table} {{}}\ndelete table inet {table}\n"
            f"table inet {table} {{\n"
            f"  chain input {{ type filter hook input priority -10; policy accept;\n"
            f"    tcp dport {{ {p} }} counter comment \"seen\"\n"
            f"    tcp dport {{ {p} }} {sample}counter drop comment \"dropped\"\n  }}\n"
            f"  chain output {{ type filter hook output priority -10; policy accept;\n"
            f"    tcp sport {{ {p} }} counter comment \"seen\"\n"
            f"    tcp sport {{ {p} }} {sample}counter drop comment \"dropped\"\n  }}\n}}\n")


def add_loss(ports: list[int], percent: float, table: str = NFT_TABLE) -> None:
    _nft(loss_script(ports, percent, table))


def remove_loss(table: str | None = None) -> bool:
    """Delete our table (None: every path's; True if one was there); a missing table or nft is not an error."""
    found = False
    for name in [table] if table else list(NFT_TABLES.values()):
        try:
            done = subprocess.run(["nft", "delete", "table", "inet", name], capture_output=True, timeout=10)
        except FileNotFoundError:
            return False
        found = found or done.returncode == 0
    return found


def loss_counters(table: str = NFT_TABLE) -> dict[str, int]:
    """Packets seen and dropped on the path so far (both directions), from our table's counters."""
    try:
        out = subprocess.run(["nft", "-j", "list", "table", "inet", table], capture_output=True, text=True,
                             timeout=10).stdout
    except FileNotFoundError:
        return {}
    return rule_counters(out, ("seen", "dropped"))


# -- measuring the path -----------------------------------------------------------------------------
def ping(host: str, port: int, timeout: float = PING_TIMEOUT_S, path: str = "api-database") -> tuple[str, float]:
    """One handshake round trip (HELLO: SSLRequest, or a Redis PING): ("ok" | "timeout" | "reset" | "refused" |
    "closed", seconds)."""
    hello, answers = HELLO[path]
    t0 = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(max(0.01, timeout - (time.perf_counter() - t0)))
            sock.sendall(hello)
            answer = sock.recv(1)
        return ("ok" if answer in answers else "closed"), time.perf_counter() - t0
    except socket.timeout:
        return "timeout", time.perf_counter() - t0
    except ConnectionResetError:
        return "reset", time.perf_counter() - t0
    except ConnectionRefusedError:
        return "refused", time.perf_counter() - t0
    except OSError:
        return "closed", time.perf_counter() - t0


def summarize(results: list[tuple[str, float]]) -> dict[str, Any]:
    """Round trips in ms (of the answered pings) and how each ended."""
    rtts = sorted(s * 1000 for outcome, s in results if outcome == "ok")
    out: dict[str, Any] = {"samples": len(results), "answered": len(rtts)}
    for outcome in ("timeout", "reset", "refused", "closed"):
        out[outcome] = sum(1 for o, _ in results if o == outcome)
    if rtts:
        out.update(rtt_p50_ms=round(statistics.median(rtts), 2), rtt_max_ms=round(rtts[-1], 2),
                   rtt_p99_ms=round(rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))], 2))
    return out


def path_routes(parts: "StackParts", path: str) -> list[tuple[Any, Any]]:
    """(where the proxy listens, the member it forwards to) of a path."""
    layout = parts.probes.layout
    if path == lbpath.LB_PATH:  # its one route, made when the fault is injected (lbpath.py)
        return [(lbpath.listen(parts), None)]
    return layout.netproxy_cache_routes() if path == "api-cache" else layout.netproxy_routes()


def measure(parts: "StackParts", samples: int = PING_SAMPLES, timeout: float = PING_TIMEOUT_S,
            path: str = "api-database") -> dict[str, Any]:
    """Round trips through the path to the primary (the cache's master) now (the first member when none is known)."""
    observed = parts.monitor.current.observation
    routes = path_routes(parts, path)
    if path == lbpath.LB_PATH:
        chosen = []  # one route: to the replica behind it
    elif path == "api-cache":
        chosen = [listen for listen, member in routes if member.address == observed.redis_master_address]
    else:
        chosen = [listen for listen, member in routes if observed.pg_leader is None or member.name == observed.pg_leader]
    target = (chosen or [listen for listen, _ in routes])[0]
    results = [ping(target.host, target.port, timeout, path) for _ in range(samples)]
    return {"to": target.address, **summarize(results)}


# -- the shared base of the network fault modules --------------------------------------------------
class NetworkFault(LocalFault):
    """A network fault on a path: inject measures the path first (the baseline), then degrades it; the
    `measure` phase times it again; undo clears it. Subclasses say what they set and what shows it."""

    what: ClassVar[str] = ""  # the dry-run's words
    mechanism: ClassVar[str] = "proxy"  # proxy | nft
    samples: ClassVar[int] = PING_SAMPLES  # round trips per measurement (each waits up to PING_TIMEOUT_S)
    paths: ClassVar[tuple[str, ...]] = PATHS  # the paths this fault can degrade here

    def refusal(self, nemesis: "LocalNemesis", call: FaultCall) -> str | None:
        if call.get("path") == zonepath.ZONE_PATH:
            return zonepath.refusal(self.fault, nemesis, call, probe_netem)
        if call.get("path") not in self.paths:
            return (f"{self.fault} on the local stack acts on the path{'s' if len(self.paths) > 1 else ''} "
                    f"{', '.join(self.paths)}, not {call.get('path')!r} (docs/gray-failures.md)")
        return None

    def plan(self, nemesis: "LocalNemesis", call: FaultCall) -> list[str]:
        if call.get("path") == zonepath.ZONE_PATH:
            return [f"{self.fault}: {self.what} between {call.get('from_zone') or 'the primary'}'s zone and "
                    f"{call.get('to_zone') or 'the zone after it'}, through nftables table inet {zonepath.NFT_TABLE} "
                    f"in the first zone's namespace; TCP connects between the zones measured before and during",
                    f"rollback {self.steps[0]}: delete the table; the zones reach each other as before"]
        how = ("the network proxy's toxics (netproxy.py)" if self.mechanism == "proxy"
               else f"nftables table inet {NFT_TABLES.get(str(call.get('path')), NFT_TABLE)} (numgen random drop)")
        return [f"{self.fault}: {self.what} on the path {call.get('path')} through {how}; measure the path before "
                f"and during the fault", f"rollback {self.steps[0]}: clear it; the path answers as before"]

    def inject(self, nemesis: "LocalNemesis", call: FaultCall, context: InjectContext) -> RollbackStep:
        step = RollbackStep(self.steps[0], {"path": call.get("path")}, f"clear {self.fault} on {call.get('path')}")
        context.record(step)
        result = nemesis.ask(self.fault, "inject", **dict(call.arguments))
        return RollbackStep(step.capability, {**step.arguments, "baseline": result.get("baseline", {}),
                                              "mechanism": result.get("mechanism"), "where": result.get("where")},
                            step.description)

    def undo(self, nemesis: "LocalNemesis", step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo", path=step.arguments.get("path"))

    def effect(self, nemesis: "LocalNemesis", call: FaultCall, step: RollbackStep) -> Effect | None:
        baseline = dict(step.arguments.get("baseline") or {})

        def look() -> dict[str, Any] | None:
            during = nemesis.ask(self.fault, "measure", timeout=60, path=call.get("path"))
            facts = {"path": call.get("path"), "mechanism": step.arguments.get("mechanism"),
                     "where": step.arguments.get("where"), "baseline": baseline, "during": during}
            return facts if self.took_effect(call, baseline, during, facts) else None
        return Effect(self.signal(call), NETWORK_EFFECT_DEADLINE_S, look)

    def signal(self, call: FaultCall) -> str:
        raise NotImplementedError

    def took_effect(self, call: FaultCall, baseline: dict[str, Any], during: dict[str, Any],
                    facts: dict[str, Any]) -> bool:
        """Whether the measurement shows the fault; may add the figures it judged by to `facts`."""
        raise NotImplementedError

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.start, "undo": self.stop, "measure": self.measure_now}

    def toxics(self, request: dict[str, Any]) -> dict[str, Any]:
        """The proxy's toxics for this fault (proxy faults)."""
        return {}

    def start(self, parts: "StackParts", request: dict[str, Any]) -> dict[str, Any]:
        path = request.get("path")
        if path not in self.paths:
            raise UserError(f"{self.fault}: the local stack has no path {path!r} for it; it has {', '.join(self.paths)}")
        if path == zonepath.ZONE_PATH:
            return zonepath.start(parts, self.fault, request, self.samples)
        netem, netem_seen = probe_netem()
        redirected = lbpath.redirect(parts) if path == lbpath.LB_PATH else {}  # the route first, then its baseline
        baseline = measure(parts, self.samples, path=path)
        ports = [listen.port for listen, _ in path_routes(parts, path)]
        if self.mechanism == "nft":
            add_loss(ports, float(request["percent"]), NFT_TABLES[path])
        else:
            netproxy.ask(parts.probes.layout.netproxy_control(), {"op": "set", "path": path, **self.toxics(request)})
        mechanism = {"mechanism": self.mechanism, "netem": netem, "netem_probe": netem_seen,
                     "where": f"{'nft table inet ' + NFT_TABLES[path] if self.mechanism == 'nft' else 'proxy'} "
                              f"on the proxy's {path} ports {ports}"}
        mechanism.update(redirected)
        with parts.lock:
            parts.state[self.fault] = {"path": path, **mechanism}
        parts.event(self.fault, "inject", path=path, baseline=baseline, **mechanism,
                    **{k: v for k, v in request.items() if k not in ("op", "fault", "phase", "path")})
        return {"baseline": baseline, "mechanism": self.mechanism, "netem": netem, "where": mechanism["where"],
                **redirected}

    def path_now(self, parts: "StackParts", request: dict[str, Any]) -> str:
        """The request's path, else the one this fault was injected on, else the database's."""
        with parts.lock:
            injected = (parts.state.get(self.fault) or {}).get("path")
        path = str(request.get("path") or injected or PATHS[0])
        return path if path in PATHS else PATHS[0]

    def measure_now(self, parts: "StackParts", request: dict[str, Any]) -> dict[str, Any]:
        path = self.path_now(parts, request)
        if path == zonepath.ZONE_PATH:
            return zonepath.measure_now(parts, self.fault, request, self.samples)
        during = measure(parts, self.samples, path=path)
        if self.mechanism == "nft":
            during["nft"] = loss_counters(NFT_TABLES[path])
        return during

    def stop(self, parts: "StackParts", request: dict[str, Any]) -> dict[str, Any]:
        path = self.path_now(parts, request)
        with parts.lock:
            had = parts.state.pop(self.fault, None)
        if path == zonepath.ZONE_PATH:
            counters = zonepath.clear(parts, had)
        elif self.mechanism == "nft":
            counters = loss_counters(NFT_TABLES[path])
            remove_loss(NFT_TABLES[path])
        else:
            reply = netproxy.ask(parts.probes.layout.netproxy_control(), {"op": "clear", "path": path})
            counters = reply.get("paths", {}).get(path, {}).get("counters", reply.get("counters", {}))
        if path == lbpath.LB_PATH and had:
            counters = {**counters, "replica_restored": lbpath.restore(parts, had)}
        parts.event(self.fault, "undo", path=path, was_set=had is not None, counters=counters)
        return {"counters": counters}

    def heal_here(self, parts: "StackParts") -> None:
        with parts.lock:
            had = self.fault in parts.state
        if had:
            try:
                self.stop(parts, {})  # the path it was injected on (parts.state)
            except RuntimeError:
                pass  # the proxy is gone: nothing of ours is left in the path
        elif self.mechanism == "nft":
            remove_loss()
        if not had and self.fault in zonepath.MODES:
            zonepath.heal(parts)  # a crashed run's zone-path table, in whichever zone it was
