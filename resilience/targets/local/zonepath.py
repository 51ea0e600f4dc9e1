"""The path between two zones of the local stack (`path: zone-zone`): packet loss, blackhole and reject on every
packet between one zone and another, and nothing else.

Zones are network namespaces (zones.py: zone k is `rsl-<zone>`, address 10.231.k.1, its /24 is the zone's
subnet). The fault is our own nftables table (`inet rsl-zonefault`) inside the first zone's namespace,
as partition_primary installs its table (partition.py): its `input` and `output` chains match packets
from and to the second zone's subnet, so exactly the traffic between those two zones crosses it (etcd's
Raft, Patroni, replication, Sentinel's checks), both directions, while the third zone and the root
namespace (the API, HAProxy, the proxy) are untouched. The rules, counted:
- drop_packets: `numgen random mod 100 < percent` of the packets dropped, each way;
- blackhole_network: every packet dropped (clients wait for their timeouts);
- reject_network: TCP answered with a reset, anything else with ICMP port-unreachable. Resets and
  unreachables themselves pass: the ones the rules make cross the other chain (a reset made in `output`
  for a local socket goes through `input`), and dropping them would make the reject a blackhole.

Which zones: `from_zone` (default: the PostgreSQL primary's zone; `primary` names it too) and
`to_zone` (default: the zone after it in the stack's order). The table is deleted by the fault's undo,
by a heal (every zone's namespace) and with the namespaces by `resilience down`.

delay_network and limit_bandwidth are refused here (`refusal`): a delay needs sch_netem inside the
namespace, which this kernel lacks (netfaults.probe_netem); a bandwidth limit toward one zone needs an
htb class and a filter on the zone's veth, not built. The effect is measured: TCP connects from the first
zone's namespace to the second zone's etcd client port (`ip netns exec`, the probe below), with the
table's counters; a fault the probes and counters do not show leaves the run inconclusive.
"""

from __future__ import annotations

import ipaddress
import json
import statistics
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Callable

from ...errors import HarnessError, UserError
from ...fault_registry import FaultCall
from .topology import ETCD
from .nft_counters import rule_counters

if TYPE_CHECKING:
    from .nemesis import LocalNemesis
    from .stack_parts import StackParts

ZONE_PATH = "zone-zone"
NFT_TABLE = "rsl-zonefault"
MODES = {"drop_packets": "drop", "blackhole_network": "blackhole", "reject_network": "reject"}
PROBE_TIMEOUT_S = 1.0
THIRD_ZONE_SAMPLES = 4
# One TCP connect per sample from inside a namespace: [outcome, seconds] per line of JSON (no imports but the stdlib).
PROBE = """
import json, socket, sys, time
host, port, n, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
out = []
for _ in range(n):
    t0 = time.perf_counter()
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        outcome = "ok"
    except socket.timeout:
        outcome = "timeout"
    except ConnectionResetError:
        outcome = "reset"
    except ConnectionRefusedError:
        outcome = "refused"
    except OSError:
        outcome = "closed"
    out.append([outcome, time.perf_counter() - t0])
print(json.dumps(out))
"""


def subnet(address: str) -> str:
    """The zone's /24 (10.231.2.1 -> 10.231.2.0/24): every address the zone may use."""
    return str(ipaddress.ip_network(f"{address}/24", strict=False))


def zone_script(mode: str, other: str, percent: float = 100.0, table: str = NFT_TABLE) -> str:
    """Our table for one zone's namespace: `mode` (drop | blackhole | reject) on every packet to and from `other`."""
    if mode not in ("drop", "blackhole", "reject"):
        raise HarnessError(f"no zone-path mode {mode!r}")
    chains = []
    for chain, match in (("output", f"ip daddr {other}"), ("input", f"ip saddr {other}")):
        rules = [f"{match} counter comment \"seen\""]
        if mode == "drop" and percent < 99.5:  # `numgen random mod 100 < 100` is out of nft's range: all is a drop
            rules.append(f"{match} numgen random mod 100 < {int(round(percent))} counter drop comment \"dropped\"")
        elif mode in ("drop", "blackhole"):
            rules.append(f"{match} counter drop comment \"dropped\"")
        else:
            rules += [f"{match} tcp flags & rst == rst accept", f"{match} icmp type destination-unreachable accept",
                      f"{match} meta l4proto tcp counter reject with tcp reset comment \"rejected\"",
                      f"{match} counter reject with icmpx type port-unreachable comment \"rejected\""]
        body = "".join(f"    {rule}\n" for rule in rules)
        chains.append(f"  chain {chain} {{ type filter hook {chain} priority -10; policy accept;\n{body}  }}\n")
    return f"table inet {table} {{}}\ndelete table inet {table}\ntable inet {table} {{\n{''.join(chains)}}}\n"


def _nft(netns: str, args: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ip", "netns", "exec", netns, "nft", *args], input=script, capture_output=True,
                              text=True, timeout=10)
    except FileNotFoundError:
        raise UserError("the zone path needs nftables and iproute2: `apt-get install -y nftables iproute2`") from None


def counters(netns: str) -> dict[str, int]:
    """Packets seen, dropped and rejected so far by our table in `netns` (both directions); {} without one."""
    done = _nft(netns, ["-j", "list", "table", "inet", NFT_TABLE])
    if done.returncode != 0:
        return {}
    return rule_counters(done.stdout, ("seen", "dropped", "rejected"))


# -- which zones --------------------------------------------------------------------------------------
def pair(zones: list[str], primary: str | None, from_zone: str | None, to_zone: str | None) -> tuple[str, str]:
    """(first, second): from_zone (None or "primary": the primary's zone), to_zone (None: the zone after it)."""
    first = primary if from_zone in (None, "primary") else from_zone
    if first is None:
        raise HarnessError("no PostgreSQL primary found to name its zone (give from_zone)")
    for name, zone in (("from_zone", first), ("to_zone", to_zone)):
        if zone is not None and zone not in zones:
            raise UserError(f"{name} {zone!r} is not a zone of the stack; its zones are {', '.join(zones)}")
    second = to_zone or zones[(zones.index(first) + 1) % len(zones)]
    if second == first:
        raise UserError(f"from_zone and to_zone are both {first!r}: the zone-zone path joins two different zones")
    return first, second


def refusal(fault: str, nemesis: "LocalNemesis", call: FaultCall,
            netem: Callable[[], tuple[bool, str]]) -> str | None:
    """Why the local stack cannot do this fault on the zone path (None: it can), at plan time; `netem` probes
    for sch_netem (netfaults.probe_netem)."""
    if fault == "delay_network":
        present, seen = netem()
        why = ("sch_netem is present, but the zone path's delay (a netem qdisc on the zone's veth) is not built"
               if present else f"sch_netem (the kernel module netem) is not usable here (probe: {seen})")
        return (f"delay_network on the path zone-zone needs netem inside the zone's namespace: {why}. Delay is "
                f"injected on the paths api-database, api-cache and lb-replica (the network proxy); "
                f"docs/gray-failures.md")
    if fault not in MODES:
        return (f"{fault} on the path zone-zone is not built: a limit toward one zone needs an htb class and a "
                f"filter on the zone's veth (tbf alone would shape all of the zone's traffic); it acts on the "
                f"path api-database (docs/gray-failures.md)")
    zones = list(nemesis.zones)
    for name in ("from_zone", "to_zone"):
        zone = call.get(name)
        if zone is not None and zone not in zones and not (name == "from_zone" and zone == "primary"):
            return f"{name} {zone!r} is not a zone of the stack; its zones are {', '.join(zones)}"
    return None


# -- in the supervisor ---------------------------------------------------------------------------------
def _zones(parts: "StackParts", request: dict[str, Any]) -> tuple[str, str]:
    if parts.zone_mode != "netns":
        raise UserError("the zone-zone path needs zones as network namespaces (stack.zone_mode netns, as root): in "
                        "process mode every service shares 127.0.0.1 and no zone can be told apart")
    leader = parts.leader()
    return pair(list(parts.topology.zones), leader.zone if leader else None, request.get("from_zone"),
                request.get("to_zone"))


def etcd_in(parts: "StackParts", zone: str) -> tuple[str, int]:
    """The zone's etcd client address: what the probes connect to (one etcd member per zone)."""
    member = next(c for c in parts.topology.members(ETCD) if c.zone == zone)
    place = parts.probes.layout.place(member)
    return place.host, place.port


def probe(netns: str, host: str, port: int, samples: int, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """`samples` TCP connects from inside `netns` to host:port, summarized as netfaults.summarize does."""
    try:
        done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", PROBE, host, str(port),
                               str(samples), str(timeout)], capture_output=True, text=True,
                              timeout=samples * (timeout + 1) + 10)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"the zone path's probe from {netns} to {host}:{port} did not finish") from None
    if done.returncode != 0:
        raise HarnessError(f"the zone path's probe from {netns} failed: {done.stderr.strip()[-300:]}")
    return {"from": netns, "to": f"{host}:{port}", **summarize(json.loads(done.stdout))}


def summarize(results: list[list[Any]]) -> dict[str, Any]:
    """Connect times in ms (of the answered ones) and how each ended, in netfaults.summarize's keys."""
    times = sorted(float(s) * 1000 for outcome, s in results if outcome == "ok")
    out: dict[str, Any] = {"samples": len(results), "answered": len(times),
                           **{o: sum(1 for r, _ in results if r == o) for o in ("timeout", "reset", "refused", "closed")}}
    if times:
        out.update(rtt_p50_ms=round(statistics.median(times), 2), rtt_max_ms=round(times[-1], 2))
    return out


def measure(parts: "StackParts", first: str, second: str, samples: int) -> dict[str, Any]:
    """Connects from the first zone to the second's etcd, the table's counters, and the third zone's view of both."""
    netns = parts.zones.netns(first)
    out = {**probe(netns, *etcd_in(parts, second), samples), "nft": counters(netns)}
    for third in [z for z in parts.topology.zones if z not in (first, second)]:
        out[f"from_{third}"] = {z: probe(parts.zones.netns(third), *etcd_in(parts, z), THIRD_ZONE_SAMPLES)
                                for z in (first, second)}
    return out


def measure_now(parts: "StackParts", fault: str, request: dict[str, Any], samples: int) -> dict[str, Any]:
    """The path now: between the zones the fault was injected on, else the ones the request names (or the defaults)."""
    with parts.lock:
        had = dict(parts.state.get(fault) or {})
    first, second = (had["from_zone"], had["to_zone"]) if had else _zones(parts, request)
    return measure(parts, first, second, samples)


def start(parts: "StackParts", fault: str, request: dict[str, Any], samples: int) -> dict[str, Any]:
    """Measure the path, install the table in the first zone, record it; what the harness keeps."""
    first, second = _zones(parts, request)
    netns, other = parts.zones.netns(first), subnet(parts.zones.address(second))
    baseline = measure(parts, first, second, samples)
    done = _nft(netns, ["-f", "-"], zone_script(MODES[fault], other, float(request.get("percent") or 100.0)))
    if done.returncode != 0:
        raise HarnessError(f"nft refused the zone-path table in {netns}: {done.stderr.strip()}")
    where = f"nft table inet {NFT_TABLE} in {netns} ({first}), packets to and from {second} ({other})"
    facts = {"path": ZONE_PATH, "from_zone": first, "to_zone": second, "netns": netns, "other": other}
    with parts.lock:
        parts.state[fault] = facts
    parts.event(fault, "inject", baseline=baseline, mechanism="nft", where=where, **facts,
                **{k: v for k, v in request.items() if k not in ("op", "fault", "phase", "path", "from_zone",
                                                                  "to_zone")})
    return {"baseline": baseline, "mechanism": "nft", "where": where, **facts}


def clear(parts: "StackParts", had: dict[str, Any] | None) -> dict[str, Any]:
    """Delete the table (from the zone it was put in, else from every zone); its last counters."""
    netns = (had or {}).get("netns")
    last = counters(str(netns)) if netns else {}
    return {**last, "removed_from": heal(parts, [str(netns)] if netns else None)}


def heal(parts: "StackParts", namespaces: list[str] | None = None) -> list[str]:
    """Delete our table from these namespaces (None: every zone's); the ones it was in. Process zones have none."""
    if parts.zone_mode != "netns":
        return []
    names = namespaces if namespaces is not None else [parts.zones.netns(z) for z in parts.topology.zones]
    return [ns for ns in names if _nft(ns, ["delete", "table", "inet", NFT_TABLE]).returncode == 0]
