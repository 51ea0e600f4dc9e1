"""Network faults on a named path of the local stack: the mechanisms, the measurement, the modules' shared base.

A path is what an experiment names (`api-database`: the API replicas <-> PostgreSQL); on the
local stack it is the network proxy's routes (netproxy.py), which every API <-> database byte
crosses. The mechanisms, and which one a fault uses (recorded in its evidence):
- latency, jitter, blackhole, reset: the proxy's toxics (set over its control socket);
- packet loss: nftables, our own table `inet rsl-netfault` in the root namespace, dropping
  `numgen random mod 100 < N` of the packets to and from the proxy's ports, with counters
  (deleted by the fault's undo, a heal and `down`);
- `sch_netem` is probed for in a scratch namespace and the answer recorded; this machine's kernel
  has none (FIELD-NOTES.md), so the proxy and nft carry every fault here.

The effect is measured, never assumed: `measure` times PostgreSQL SSLRequest round trips (8 bytes
out, one byte back: a handshake the server answers before any login) through the proxy to the
primary, the way the API's queries go; a fault whose measurement does not show it leaves the run
inconclusive (effect_watch.py).
"""

from __future__ import annotations

import json
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
from . import netproxy
from .faults import LocalFault, Phase

if TYPE_CHECKING:
    from .nemesis import LocalNemesis
    from .stack_parts import StackParts

PATHS = ("api-database",)  # the paths the local stack can degrade (api-cache: Sentinel hands out direct addresses)
NFT_TABLE = "rsl-netfault"
SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's SSLRequest: answered 'S' or 'N' before any login
PING_SAMPLES = 12
PING_TIMEOUT_S = 1.0
NETWORK_EFFECT_DEADLINE_S = 30.0


# -- sch_netem ------------------------------------------------------------------------------------
_netem: tuple[bool, str] | None = None


def probe_netem() -> tuple[bool, str]:
    """(present, what was seen): add a netem qdisc to a dummy link in a scratch namespace (once per process)."""
    global _netem
    if _netem is None:
        ns = f"rslnetem{os.getpid()}"
        steps = [["ip", "netns", "add", ns], ["ip", "-n", ns, "link", "add", "probe0", "type", "dummy"],
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


def loss_script(ports: list[int], percent: float) -> str:
    """Our table: count every packet to and from the path's ports, drop `percent` of them each way (counted)."""
    p = ", ".join(str(x) for x in ports)
    n = int(round(percent))
    return (f"table inet {NFT_TABLE} {{}}\ndelete table inet {NFT_TABLE}\n"
            f"table inet {NFT_TABLE} {{\n"
            f"  chain input {{ type filter hook input priority -10; policy accept;\n"
            f"    tcp dport {{ {p} }} counter comment \"seen\"\n"
            f"    tcp dport {{ {p} }} numgen random mod 100 < {n} counter drop comment \"dropped\"\n  }}\n"
            f"  chain output {{ type filter hook output priority -10; policy accept;\n"
            f"    tcp sport {{ {p} }} counter comment \"seen\"\n"
            f"    tcp sport {{ {p} }} numgen random mod 100 < {n} counter drop comment \"dropped\"\n  }}\n}}\n")


def add_loss(ports: list[int], percent: float) -> None:
    _nft(loss_script(ports, percent))


def remove_loss() -> bool:
    """Delete our table (True if it was there); a missing table or a missing nft is not an error."""
    try:
        done = subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True, timeout=10)
    except FileNotFoundError:
        return False
    return done.returncode == 0


def loss_counters() -> dict[str, int]:
    """Packets seen and dropped on the path so far (both directions), from our table's counters."""
    try:
        out = subprocess.run(["nft", "-j", "list", "table", "inet", NFT_TABLE], capture_output=True, text=True,
                             timeout=10).stdout
    except FileNotFoundError:
        return {}
    counts = {"seen": 0, "dropped": 0}
    for item in json.loads(out or "{}").get("nftables", []):
        rule = item.get("rule")
        if rule and rule.get("comment") in counts:
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    counts[rule["comment"]] += int(expr["counter"].get("packets", 0))
    return counts


# -- measuring the path -----------------------------------------------------------------------------
def ping(host: str, port: int, timeout: float = PING_TIMEOUT_S) -> tuple[str, float]:
    """One SSLRequest round trip: ("ok" | "timeout" | "reset" | "refused" | "closed", seconds)."""
    t0 = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(max(0.01, timeout - (time.perf_counter() - t0)))
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
        return ("ok" if answer in (b"S", b"N") else "closed"), time.perf_counter() - t0
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


def measure(parts: "StackParts", samples: int = PING_SAMPLES, timeout: float = PING_TIMEOUT_S) -> dict[str, Any]:
    """Round trips through the path to the primary now (to every member when no primary is known)."""
    layout = parts.probes.layout
    leader = parts.monitor.current.observation.pg_leader
    routes = [listen for listen, member in layout.netproxy_routes()
              if leader is None or member.name == leader] or [listen for listen, _ in layout.netproxy_routes()]
    results = [ping(r.host, r.port, timeout) for _ in range(samples) for r in routes[:1]]
    return {"to": routes[0].address, **summarize(results)}


# -- the shared base of the network fault modules --------------------------------------------------
class NetworkFault(LocalFault):
    """A network fault on a path: inject measures the path first (the baseline), then degrades it; the
    `measure` phase times it again; undo clears it. Subclasses say what they set and what shows it."""

    what: ClassVar[str] = ""  # the dry-run's words
    mechanism: ClassVar[str] = "proxy"  # proxy | nft
    samples: ClassVar[int] = PING_SAMPLES  # round trips per measurement (each waits up to PING_TIMEOUT_S)

    def plan(self, nemesis: "LocalNemesis", call: FaultCall) -> list[str]:
        how = ("the network proxy's toxics (netproxy.py)" if self.mechanism == "proxy"
               else f"nftables table inet {NFT_TABLE} (numgen random drop)")
        return [f"{self.fault}: {self.what} on the path {call.get('path')} through {how}; measure the path before "
                f"and during the fault", f"rollback {self.steps[0]}: clear it; the path answers as before"]

    def inject(self, nemesis: "LocalNemesis", call: FaultCall, context: InjectContext) -> RollbackStep:
        step = RollbackStep(self.steps[0], {"path": call.get("path")}, f"clear {self.fault} on {call.get('path')}")
        context.record(step)
        result = nemesis.ask(self.fault, "inject", **dict(call.arguments))
        return RollbackStep(step.capability, {**step.arguments, "baseline": result.get("baseline", {}),
                                              "mechanism": result.get("mechanism")}, step.description)

    def undo(self, nemesis: "LocalNemesis", step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo", path=step.arguments.get("path"))

    def effect(self, nemesis: "LocalNemesis", call: FaultCall, step: RollbackStep) -> Effect | None:
        baseline = dict(step.arguments.get("baseline") or {})

        def look() -> dict[str, Any] | None:
            during = nemesis.ask(self.fault, "measure", timeout=60)
            facts = {"path": call.get("path"), "mechanism": step.arguments.get("mechanism"),
                     "baseline": baseline, "during": during}
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
        if path not in PATHS:
            raise UserError(f"{self.fault}: the local stack has no path {path!r}; it has {', '.join(PATHS)}")
        netem, netem_seen = probe_netem()
        baseline = measure(parts, self.samples)
        if self.mechanism == "nft":
            add_loss([listen.port for listen, _ in parts.probes.layout.netproxy_routes()], float(request["percent"]))
        else:
            netproxy.ask(parts.probes.layout.netproxy_control(), {"op": "set", **self.toxics(request)})
        mechanism = {"mechanism": self.mechanism, "netem": netem, "netem_probe": netem_seen}
        with parts.lock:
            parts.state[self.fault] = {"path": path, **mechanism}
        parts.event(self.fault, "inject", path=path, baseline=baseline, **mechanism,
                    **{k: v for k, v in request.items() if k not in ("op", "fault", "phase", "path")})
        return {"baseline": baseline, "mechanism": self.mechanism, "netem": netem}

    def measure_now(self, parts: "StackParts", request: dict[str, Any]) -> dict[str, Any]:
        during = measure(parts, self.samples)
        if self.mechanism == "nft":
            during["nft"] = loss_counters()
        return during

    def stop(self, parts: "StackParts", request: dict[str, Any]) -> dict[str, Any]:
        with parts.lock:
            had = parts.state.pop(self.fault, None)
        if self.mechanism == "nft":
            counters = loss_counters()
            remove_loss()
        else:
            counters = netproxy.ask(parts.probes.layout.netproxy_control(), {"op": "clear"}).get("counters", {})
        parts.event(self.fault, "undo", path=request.get("path"), was_set=had is not None, counters=counters)
        return {"counters": counters}

    def heal_here(self, parts: "StackParts") -> None:
        with parts.lock:
            had = self.fault in parts.state
        if had:
            try:
                self.stop(parts, {})
            except RuntimeError:
                pass  # the proxy is gone: nothing of ours is left in the path
        elif self.mechanism == "nft":
            remove_loss()
