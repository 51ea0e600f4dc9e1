"""partition_primary on the local stack: the PostgreSQL primary's zone is cut off from etcd and from the
standby while the API (through the network proxy, in the root namespace) still reaches it: the Jepsen
test. Patroni on the cut-off primary can no longer renew its leader lock and must demote it before the
lock's TTL lets the standby take over; with synchronous replication no acknowledged order may be lost.

The mechanism and the watch of writable primaries are in targets/local/partition.py. Seen when the
partition's nft counters show packets to etcd and to the peers dropped. Undone by deleting the table;
the undo answers once the old primary has rejoined (as a replica)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ....errors import HarnessError
from ....fault_registry import FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, InjectContext
from .. import partition
from ..services import DB_NAME, DB_USER
from ..topology import POSTGRES
from . import FAULTS, LocalFault, Phase

if TYPE_CHECKING:
    from ..nemesis import LocalNemesis
    from ..stack_parts import StackParts

PARTITION_EFFECT_DEADLINE_S = 30.0


@FAULTS.register
class PartitionPrimary(LocalFault):
    fault = "partition_primary"
    steps = ("heal_partition",)

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        return ["partition_primary: cut the PostgreSQL primary's zone off from etcd and from the standby on the "
                f"database and coordination ports (nft table inet {partition.NFT_TABLE} in the zone's namespace); "
                "the API still reaches it through the proxy; poll every member's pg_is_in_recovery() meanwhile",
                "rollback heal_partition: delete the table; wait until the old primary has rejoined"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        # recorded before the cut: an undo without a zone deletes our table in every zone
        context.record(RollbackStep("heal_partition", {}, "heal the partition of the PostgreSQL primary"))
        result = nemesis.ask(self.fault, "inject")
        member, zone = result.get("member"), result.get("zone")
        return RollbackStep("heal_partition", {"member": member, "zone": zone},
                            f"heal the partition of {member} (zone {zone})")

    def undo(self, nemesis: LocalNemesis, step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo", timeout=nemesis.platform.heal_wait_s(), member=step.arguments.get("member"),
                    zone=step.arguments.get("zone"))

    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        member = step.arguments.get("member")

        def look() -> dict[str, Any] | None:
            dropped = nemesis.ask(self.fault, "measure", zone=step.arguments.get("zone"))
            return {"member": member, "dropped": dropped} if dropped.get("etcd") and dropped.get("peers") else None
        return Effect(f"packets from {member}'s zone to etcd and to the standby dropped (nft counters)",
                      PARTITION_EFFECT_DEADLINE_S, look)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.start, "measure": self.measure, "undo": self.stop}

    def rejoins(self, phase: str, request: dict[str, Any], result: dict[str, Any]) -> list[str] | None:
        return [request["member"]] if phase == "undo" and request.get("member") else None

    def start(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        leader = parts.leader()
        if leader is None:
            raise HarnessError("no PostgreSQL primary found (Patroni /cluster shows no running leader) to partition")
        layout = parts.probes.layout
        members = {m.name: (layout.place(m).host, layout.place(m).port) for m in parts.topology.members(POSTGRES)}
        password = layout.secrets.postgres_app
        watch = partition.WritableWatch(members, lambda host, port: f"postgresql://{DB_USER}:{password}@{host}:"
                                                                    f"{port}/{DB_NAME}", parts.events)
        watch.start()  # before the cut: the first rounds show the one primary there was
        try:
            cut = partition.cut(parts, leader.name)
        except BaseException:
            watch.stop()
            raise
        with parts.lock:
            parts.state[self.fault] = {"member": leader.name, "zone": cut["zone"], "watch": watch}
        cut["patroni"] = {"ttl_s": parts.settings.patroni_ttl_s, "loop_wait_s": parts.settings.patroni_loop_wait_s,
                          "retry_timeout_s": parts.settings.patroni_retry_timeout_s}
        parts.event(self.fault, "inject", **cut)
        return cut

    def measure(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        return partition.counters(parts, str(request.get("zone")))

    def stop(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        with parts.lock:
            had = parts.state.pop(self.fault, None) or {}
        zone = request.get("zone") or had.get("zone")
        dropped = partition.counters(parts, zone) if zone else {}
        healed = [z for z in ([zone] if zone else parts.topology.zones) if partition.heal(parts, z)]
        watch = had.get("watch")
        rounds = watch.rounds if watch is not None else 0
        if watch is not None:
            watch.finish()  # it watches on through the rejoin, then stops by itself
        parts.event(self.fault, "undo", member=request.get("member"), zone=zone, healed=healed, dropped=dropped,
                    watch_rounds=rounds)
        return {"dropped": dropped, "watch_rounds": rounds}

    def heal_here(self, parts: StackParts) -> None:
        with parts.lock:
            had = parts.state.get(self.fault)
        if had:
            self.stop(parts, {"member": had["member"], "zone": had["zone"]})
        elif parts.zone_mode == "netns":
            for zone in parts.topology.zones:  # a crashed run's table
                partition.heal(parts, zone)
