"""RTO taken apart for a failover: promote, route, reconnect, each against the bound its configuration implies.

From the history of a local run (the `alert/watching` record carries the stack's failover settings,
`targets/local/alert_receiver.py`):
- promote: the injection to the supervisor's first look that sees the new leader
  (`platform/failover`, per component). Bound, PostgreSQL: Patroni `ttl` (the leader key expires)
  + `loop_wait` (the next loop of a replica promotes it) + one look; Redis: Sentinel
  `down-after-milliseconds` + one look, a lower bound only (the vote and promotion add Sentinel's own time);
- route (PostgreSQL): the new leader to the first readiness count above the lowest since the fault (HAProxy put
  the replicas back). Bound: `rise` x `inter` (HAProxy's checks) + one look;
- reconnect (PostgreSQL): the new leader to the first acknowledged write (ok POST /orders) after it.
Detection of the dead leader inside Patroni (the key's expiry) is not observable here: it is part
of `promote`. A configuration that breaks Patroni's rule `loop_wait + 2 x retry_timeout <= ttl` is
named. Reported, not judged (`failover_s`); the detail holds the phases and their bounds.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..history import ALERT, CONTROLLER, FAULT, OK, PLATFORM, Record
from .measurement import Measurement, judge
from .windows import WRITE_OP, completion_time, is_load_request

DEFINITION = (
    "Failover phases = promote (injection to the new leader seen), route (to the load balancer taking the replicas "
    "back), reconnect (to the first acknowledged write), each with the bound its configuration implies: Patroni "
    "ttl + loop_wait (Sentinel down-after for Redis) + one supervisor look; HAProxy rise x inter + one look. "
    "Reported, not judged."
)


def failover_config(records: Sequence[Record]) -> dict[str, Any] | None:
    watching = next((r for r in records if r.source == ALERT and r.op == "watching"), None)
    return ((watching.detail or {}).get("failover") if watching else None) or None


def phases(records: Sequence[Record]) -> dict[str, Any] | None:
    """Per component (postgres, redis), the phases of its first failover after the injection; None without any."""
    ordered = sorted(records, key=lambda r: r.t)
    config = failover_config(ordered)
    inject = next((r for r in ordered if r.source == FAULT and r.op == "inject"), None)
    if config is None or inject is None:
        return None
    out: dict[str, Any] = {}
    for component in ("postgres", "redis"):
        failover = next((r for r in ordered if r.source == PLATFORM and r.op == "failover" and r.t >= inject.t
                         and (r.detail or {}).get("component") == component), None)
        if failover is not None:
            out[component] = _postgres(ordered, config, inject.t, failover) if component == "postgres" else \
                _redis(config, inject.t, failover)
    if not out:
        return None
    return {**out, "config_problems": config_problems(config)}


def _after(t: float | None, start: float) -> float | None:
    return None if t is None else round(t - start, 3)


def _postgres(ordered: Sequence[Record], config: dict[str, Any], inject_t: float, failover: Record) -> dict[str, Any]:
    look, patroni, haproxy = float(config["look_s"]), config["patroni"], config["haproxy"]
    ready = [(r.t, int((r.detail or {}).get("ready", 0))) for r in ordered
             if r.source == CONTROLLER and r.op == "replicas" and r.t >= inject_t]
    lowest = min((n for t, n in ready if t <= failover.t), default=None)
    routed = next((t for t, n in ready if t >= failover.t and lowest is not None and n > lowest), None)
    writes = [completion_time(r) for r in ordered
              if is_load_request(r) and r.op == WRITE_OP and r.status == OK and completion_time(r) >= failover.t]
    found = {"new": (failover.detail or {}).get("new"),
             "promote_s": _after(failover.t, inject_t),
             "promote_bound_s": round(patroni["ttl_s"] + patroni["loop_wait_s"] + look, 3),
             "route_s": _after(routed, failover.t), "route_bound_s": round(haproxy["rise"] * haproxy["inter_s"] + look, 3),
             "reconnect_s": _after(min(writes) if writes else None, failover.t)}
    found["within_bounds"] = (found["promote_s"] <= found["promote_bound_s"]
                              and (found["route_s"] is None or found["route_s"] <= found["route_bound_s"]))
    return found


def _redis(config: dict[str, Any], inject_t: float, failover: Record) -> dict[str, Any]:
    """Sentinel: only down-after is configured; the vote and the promotion add Sentinel's own time (a lower bound)."""
    return {"new": (failover.detail or {}).get("new"), "promote_s": _after(failover.t, inject_t),
            "promote_lower_bound_s": round(float(config["sentinel_down_after_s"]) + float(config["look_s"]), 3)}


def config_problems(config: dict[str, Any]) -> list[str]:
    p = config["patroni"]
    problems = []
    if p["loop_wait_s"] + 2 * p["retry_timeout_s"] > p["ttl_s"]:
        problems.append(f"Patroni: loop_wait + 2 x retry_timeout = {p['loop_wait_s'] + 2 * p['retry_timeout_s']} s "
                        f"> ttl = {p['ttl_s']} s (its documented rule)")
    if config.get("client_timeout_s") and config["client_timeout_s"] > p["ttl_s"] + p["loop_wait_s"]:
        problems.append(f"the client timeout ({config['client_timeout_s']} s) is longer than the failover budget "
                        f"(ttl + loop_wait = {p['ttl_s'] + p['loop_wait_s']} s)")
    return problems


def measurements(records: Sequence[Record]) -> list[Measurement]:
    """failover_s: the database's promote + reconnect (the cache's promote when only it failed over); reported."""
    found = phases(records)
    if found is None:
        return []
    main = found.get("postgres") or found["redis"]
    total = sum(v for v in (main["promote_s"], main.get("reconnect_s")) if v is not None)
    return [judge("failover_s", round(total, 3), "s", None, phase="fault", definition=DEFINITION, detail=found)]
