"""The load balancer <-> one replica path on the local stack (`path: lb-replica`): HAProxy's server for one API
replica pointed through the network proxy, so a network fault degrades exactly that replica's traffic.

Which replica is known only when the fault is injected (the controller fills HAProxy's slots as replicas
come and go), so the proxy gets the route then (`{"op": "route"}`, netproxy.py), listening on
`api_base + 100` and forwarding to the replica of the lowest enabled slot; HAProxy's server for that slot
is re-pointed at it (`set server ... addr`, its state untouched). HAProxy's health checks cross the
path too: that is the point (the load balancer sees a slow or lossy replica as its clients do, and may
take it out). Undone, the server points at its replica again, unless the slot holds another replica by
then (the controller set that one's address itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import HarnessError
from . import netproxy
from .haproxy import server_name
from .services import NETPROXY_PORT_OFFSET, Placement
from .topology import NETPROXY, ComponentId

if TYPE_CHECKING:
    from .stack_parts import StackParts

LB_PATH = "lb-replica"


def listen(parts: "StackParts") -> Placement:
    """Where the proxy's route of this path listens."""
    layout = parts.probes.layout
    return Placement(ComponentId(NETPROXY, 0, None), layout.host, layout.s.ports.api_base + NETPROXY_PORT_OFFSET)


def _set_address(parts: "StackParts", slot: int, host: str, port: int) -> None:
    admin = parts.replicas.admin
    if admin is None:
        raise HarnessError("HAProxy's admin socket is not open yet: the load balancer <-> replica path needs it")
    answer = admin.command(f"set server {admin.backend}/{server_name(slot)} addr {host} port {port}").strip()
    if not answer.startswith(("IP changed", "no need to change", "port changed")):
        raise HarnessError(f"HAProxy refused to re-point slot {slot} at {host}:{port}: {answer}")


def redirect(parts: "StackParts") -> dict[str, Any]:
    """Route the lowest enabled replica through the proxy; what `restore` needs back."""
    with parts.lock:
        serving = sorted((r for r in parts.replicas.replicas.values() if r.enabled and not r.lost and not r.stopping),
                         key=lambda r: r.slot)
        if not serving:
            raise HarnessError("no API replica is in the load balancer: nothing to put behind the proxy")
        chosen = serving[0]
        replica = parts.probes.layout.api(chosen.slot, chosen.zone)
        pid = getattr(chosen.executor, "pid", None)  # a slot's name stays when another replica takes it
    via = listen(parts)
    netproxy.ask(parts.probes.layout.netproxy_control(),
                 {"op": "route", "route": f"{LB_PATH}@{via.address}={replica.address}"})
    _set_address(parts, chosen.slot, via.host, via.port)
    return {"slot": chosen.slot, "replica": replica.name, "replica_pid": pid, "replica_address": replica.address,
            "via": via.address}


def restore(parts: "StackParts", redirected: dict[str, Any]) -> bool:
    """Point the slot at its replica again (True), unless it now holds another one (False: left as it is)."""
    slot = redirected.get("slot")
    if slot is None:
        return False
    with parts.lock:
        now = parts.replicas.replicas.get(int(slot))
        same = (now is not None and getattr(now.executor, "pid", None) == redirected.get("replica_pid")
                and parts.probes.layout.api(now.slot, now.zone).address == redirected.get("replica_address"))
    if not same:
        return False
    host, port = str(redirected["replica_address"]).rsplit(":", 1)
    _set_address(parts, int(slot), host, int(port))
    return True
