"""Partitioning the PostgreSQL primary from etcd and the standby, and watching how many primaries are writable.

The cut (the Jepsen test of issue 21): our own nftables table `inet rsl-partition` in the primary's
zone namespace drops, both ways, every packet between that zone's address and the other zones' on
the PostgreSQL, Patroni REST and etcd (client and peer) ports (so the zone's own etcd member is on
the primary's side: a minority of one, without quorum), and every packet the zone sends to an etcd
client port (Patroni cannot even read its local member). What stays open: the root namespace (the
network proxy, hence every API replica; the supervisor) still reaches the primary, and the zone's
other services (API replica, Redis, Sentinel) keep their paths. Each rule counts what it dropped:
the effect is seen in those counters.

The watch: every WATCH_INTERVAL_S the supervisor asks every PostgreSQL member
`SELECT pg_is_in_recovery()` directly (zone address, not the proxy) and writes one `platform`
`pg_writable` event per round: which members answered "writable" (false), which were replicas,
which did not answer. The `primaries` checker counts rounds with two writable members.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ...errors import HarnessError, UserError
from .topology import ETCD, POSTGRES
from .nft_counters import rule_counters

if TYPE_CHECKING:
    from .stack_parts import StackParts

NFT_TABLE = "rsl-partition"
WATCH_INTERVAL_S = 0.25  # a round of pg_is_in_recovery() on every member
QUERY_TIMEOUT_S = 1.0
WRITABLE_OP = "pg_writable"  # the platform event of each round (history: source platform)
SETTLED_ROUNDS = 12  # after the heal: this many rounds in a row with every member answering and one writable
AFTER_HEAL_MAX_S = 60.0  # ... or this long after the heal (the old primary's re-clone took 13.5 s here)


def partition_script(own: str, others: list[str], ports: list[int], etcd_client_ports: list[int]) -> str:
    """Our table for the zone whose address is `own`: cut `ports` to and from `others`, and every etcd client port."""
    peers = ", ".join(others)
    p = ", ".join(str(x) for x in sorted(set(ports)))
    e = ", ".join(str(x) for x in sorted(set(etcd_client_ports)))
    return (f"table inet {NFT_TABLE} {{}}\ndelete table inet {NFT_TABLE}\n"
            f"table inet {NFT_TABLE} {{\n"
            f"  chain output {{ type filter hook output priority -10; policy accept;\n"
            f"    tcp dport {{ {e} }} counter drop comment \"etcd\"\n"
            f"    ip saddr {own} ip daddr {{ {peers} }} tcp dport {{ {p} }} counter drop comment \"peers\"\n"
            f"    ip saddr {own} ip daddr {{ {peers} }} tcp sport {{ {p} }} counter drop comment \"peers\"\n  }}\n"
            f"  chain input {{ type filter hook input priority -10; policy accept;\n"
            f"    ip saddr {{ {peers} }} ip daddr {own} tcp dport {{ {p} }} counter drop comment \"peers\"\n"
            f"    ip saddr {{ {peers} }} ip daddr {own} tcp sport {{ {p} }} counter drop comment \"peers\"\n  }}\n}}\n")


def _nft(netns: str, args: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ip", "netns", "exec", netns, "nft", *args], input=script, capture_output=True,
                              text=True, timeout=10)
    except FileNotFoundError:
        raise UserError("the partition needs nftables and iproute2: `apt-get install -y nftables iproute2`") from None


def cut(parts: "StackParts", member: str) -> dict[str, Any]:
    """Partition `member`'s zone as the module docstring says; what was cut (addresses and ports)."""
    if parts.zone_mode != "netns":
        raise UserError("partition_primary needs zones as network namespaces (stack.zone_mode netns, as root): "
                        "in process mode every service shares 127.0.0.1 and nothing can be cut apart")
    c = parts.topology.named(member)
    zone = c.zone or ""
    layout = parts.probes.layout
    ports_cfg = parts.settings.ports
    pg = [layout.place(m).port for m in parts.topology.members(POSTGRES)]
    patroni = [ports_cfg.patroni_base + m.index for m in parts.topology.members(POSTGRES)]
    etcd_client = [layout.place(m).port for m in parts.topology.members(ETCD)]
    etcd_peer = [ports_cfg.etcd_peer_base + m.index for m in parts.topology.members(ETCD)]
    own = parts.zones.address(zone)
    others = [parts.zones.address(z) for z in parts.topology.zones if z != zone]
    done = _nft(parts.zones.netns(zone), ["-f", "-"],
                partition_script(own, others, pg + patroni + etcd_client + etcd_peer, etcd_client))
    if done.returncode != 0:
        raise HarnessError(f"nft refused the partition table in {parts.zones.netns(zone)}: {done.stderr.strip()}")
    return {"member": member, "zone": zone, "netns": parts.zones.netns(zone), "address": own, "cut_from": others,
            "ports": sorted(set(pg + patroni + etcd_client + etcd_peer)), "etcd_client_ports": etcd_client,
            "mechanism": f"nft table inet {NFT_TABLE} in {parts.zones.netns(zone)}"}


def counters(parts: "StackParts", zone: str) -> dict[str, int]:
    """Packets dropped so far by the partition's rules, by rule comment (etcd, peers)."""
    counts: dict[str, int] = {"etcd": 0, "peers": 0}
    if parts.zone_mode != "netns":
        return counts
    done = _nft(parts.zones.netns(zone), ["-j", "list", "table", "inet", NFT_TABLE])
    if done.returncode != 0:
        return counts
    return rule_counters(done.stdout, counts)


def heal(parts: "StackParts", zone: str) -> bool:
    """Delete our table from the zone (True if it was there); process zones have none."""
    if parts.zone_mode != "netns":
        return False
    return _nft(parts.zones.netns(zone), ["delete", "table", "inet", NFT_TABLE]).returncode == 0


class WritableWatch:
    """Polls every member's pg_is_in_recovery() in a thread; one `platform`/`pg_writable` event per round."""

    def __init__(self, members: dict[str, tuple[str, int]], dsn: Callable[[str, int], str],
                 events: Callable[..., None], interval_s: float = WATCH_INTERVAL_S) -> None:
        self.members = members  # name -> (host, port): the zone addresses, not the proxy
        self.dsn = dsn
        self.events = events
        self.interval_s = interval_s
        self.rounds = 0
        self._stop = threading.Event()
        self._finish_by: float | None = None  # set by finish()
        self._thread = threading.Thread(target=self._run, name="pg-writable-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        """Stop after the round in progress; how many rounds ran."""
        self._stop.set()
        self._thread.join(timeout=10)
        return self.rounds

    def finish(self) -> None:
        """After the heal: go on until the stack has settled (the old primary back as a replica), then stop.

        A split brain is as likely while the cut-off primary rejoins as during the cut, so the watch
        outlives the fault: SETTLED_ROUNDS rounds in a row with every member answering and exactly one
        writable, or AFTER_HEAL_MAX_S, whichever comes first. Does not wait."""
        self._finish_by = time.monotonic() + AFTER_HEAL_MAX_S

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        import asyncpg  # type: ignore[import-untyped]
        connections: dict[str, Any] = {}

        async def ask(name: str) -> str:
            try:
                conn = connections.get(name)
                if conn is None or conn.is_closed():
                    host, port = self.members[name]
                    conn = await asyncpg.connect(self.dsn(host, port), timeout=QUERY_TIMEOUT_S)
                    connections[name] = conn
                in_recovery = await asyncio.wait_for(conn.fetchval("SELECT pg_is_in_recovery()"), QUERY_TIMEOUT_S)
                return "replica" if in_recovery else "writable"
            except Exception:  # noqa: BLE001  # broad: a member that does not answer is "unreachable" this round
                stale = connections.pop(name, None)
                if stale is not None:
                    stale.terminate()
                return "unreachable"

        settled = 0
        while not self._stop.is_set():
            started = time.monotonic()
            names = sorted(self.members)
            answers = dict(zip(names, await asyncio.gather(*(ask(n) for n in names))))
            self.rounds += 1
            writable = [n for n, a in answers.items() if a == "writable"]
            healed = self._finish_by is not None
            self.events("platform", WRITABLE_OP, members=answers, round=self.rounds, writable=writable,
                        took_s=round(time.monotonic() - started, 3), after_heal=healed)
            settled = settled + 1 if healed and len(writable) == 1 and "unreachable" not in answers.values() else 0
            if healed and (settled >= SETTLED_ROUNDS or time.monotonic() > (self._finish_by or 0.0)):
                self._stop.set()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
        for conn in connections.values():
            conn.terminate()
