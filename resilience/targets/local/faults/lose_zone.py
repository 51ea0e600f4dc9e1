"""lose_zone on the local stack: a power loss of one zone, and its return.

Its processes are frozen at once and, in netns mode, its network cut (the host side
of its veth down); the replica controller avoids the zone while it is lost. On
return its old processes are gone, its network back, and its services restart
(etcd first, then the others in restart order) and rejoin.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ....errors import UserError
from ....fault_registry import FaultCall
from ...base import RollbackStep
from ...fault_module import Effect, InjectContext
from ..topology import API, ETCD, POSTGRES, ComponentId, Topology
from . import FREEZE_DEADLINE_S, FAULTS, LocalFault, Phase, stack_status

if TYPE_CHECKING:
    from ..stack_parts import StackParts
    from ..nemesis import LocalNemesis

ETCD_REJOIN_WAIT_S = 10.0


@FAULTS.register
class LoseZone(LocalFault):
    fault = "lose_zone"
    steps = ("restore_zone",)
    heal_order = 10  # first: the services of a lost zone come back before anything else is thawed

    def refusal(self, nemesis: LocalNemesis, call: FaultCall) -> str | None:
        zone = call.get("zone")
        if zone not in (None, "primary") and zone not in nemesis.zones:
            return (f"zone {zone!r} is not one of the local stack's zones ({', '.join(nemesis.zones)}, setting "
                    f"stack.zones); use one of them, or 'primary' for the zone of the database primary.")
        return None

    def plan(self, nemesis: LocalNemesis, call: FaultCall) -> list[str]:
        zone = call.get("zone")
        zone_text = "<the zone of the PostgreSQL primary, asked of the supervisor>" if zone == "primary" else zone
        return [f"lose_zone: cut zone {zone_text} off the network (its namespace's link down) and stop every "
                f"component in it",
                "rollback restore_zone: network back, the zone's services restarted; wait until they "
                "rejoin (stack.heal_timeout_s)"]

    def inject(self, nemesis: LocalNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        zone = call.get("zone")
        if zone in (None, "primary"):
            zone = nemesis.platform.primary_zone()
        step = RollbackStep("restore_zone", {"zone": zone}, f"restore {zone}: network back, its services restarted")
        context.record(step)
        nemesis.ask(self.fault, "inject", zone=zone)
        return step

    def undo(self, nemesis: LocalNemesis, step: RollbackStep) -> None:
        nemesis.ask(self.fault, "undo", timeout=nemesis.platform.heal_wait_s(), zone=step.arguments["zone"])

    # -- its effect ---------------------------------------------------------------------------------
    def effect(self, nemesis: LocalNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        """The zone is lost: the supervisor counts it lost, nothing in it is healthy, and no API replica of it
        is left behind the load balancer."""
        zone = step.arguments.get("zone")

        def look() -> dict[str, Any] | None:
            status = stack_status(nemesis)
            inside = [c for c in status.get("components", []) if c.get("zone") == zone]
            serving = [c["name"] for c in inside
                       if c.get("healthy") or (c.get("kind") == API and c.get("role") != "lost")]
            if zone in status.get("lost_zones", []) and not serving:
                return {"zone": zone, "components": sorted(c["name"] for c in inside)}
            return None
        return Effect(f"zone {zone} lost: its components frozen or cut and its API replicas out of the load "
                      f"balancer", FREEZE_DEADLINE_S, look)

    # -- in the supervisor -------------------------------------------------------------------------
    def phases(self) -> dict[str, Phase]:
        return {"inject": self.lose, "undo": self.restore}

    def rejoins(self, phase: str, request: dict[str, Any], result: dict[str, Any]) -> list[str] | None:
        return list(result.get("services", [])) if phase == "undo" else None

    def lose(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        zone = request.get("zone") or parts.monitor.primary_zone(parts.monitor.refresh().observation)
        if zone not in parts.settings.zones:
            raise UserError(f"unknown zone {zone!r}; zones are {list(parts.settings.zones)}")
        with parts.lock:
            services = _zone_services(parts, zone)
            for c in services:
                parts.processes.freeze(c)
            replicas = parts.replicas.lose_zone(zone)
            if parts.zone_mode == "netns":
                parts.zones.cut(zone)
            parts.lost_zones.add(zone)
        names = [c.name for c in services]
        parts.event(self.fault, "inject", zone=zone, services=names, replicas=replicas,
                    network_cut=parts.zone_mode == "netns")
        return {"zone": zone, "services": names}

    def restore(self, parts: StackParts, request: dict[str, Any]) -> dict[str, Any]:
        """The zone comes back: its old processes are gone (like a power loss); its services restart and rejoin."""
        zone = request["zone"]
        with parts.lock:
            if zone not in parts.lost_zones:
                return {"zone": zone, "restored": False}
            services = _zone_services(parts, zone)
            for c in services:
                parts.processes.kill_frozen(c)
            parts.replicas.drop_lost(zone)
            for c in services:
                parts.processes.executor(c).kill()
            if parts.zone_mode == "netns":
                parts.zones.restore(zone)
            parts.lost_zones.discard(zone)
        for c in sorted(services, key=Topology.restart_order):
            if c.kind == POSTGRES:
                _await_etcd(parts, zone)
            parts.restart(c)
        names = [c.name for c in services]
        parts.event(self.fault, "undo", zone=zone, services=names)
        return {"zone": zone, "restored": True, "services": names}

    def heal_here(self, parts: StackParts) -> None:
        for zone in sorted(parts.lost()):
            self.restore(parts, {"zone": zone})


def _zone_services(parts: StackParts, zone: str) -> list[ComponentId]:
    return [c for c in parts.topology.in_zone(zone) if c in parts.processes.services]


def _await_etcd(parts: StackParts, zone: str) -> None:
    """Before Patroni starts in a returning zone: until the zone's etcd member answers healthy (bounded).

    Patroni exits at start-up when it cannot reach etcd, and a returning etcd member can
    hold the cluster in an election for a moment (seen: a Patroni started then exited,
    and the heal failed). Healthy means it has rejoined a cluster with a leader.
    """
    members = [c for c in parts.topology.in_zone(zone) if c.kind == ETCD]
    deadline = time.monotonic() + ETCD_REJOIN_WAIT_S
    while members and not all(parts.probes.etcd_healthy(m) for m in members) and time.monotonic() < deadline:
        time.sleep(0.1)
