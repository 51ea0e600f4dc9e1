"""RTO taken apart for a failover: detect, promote, route, reconnect, each against the bound its configuration implies.

From the history of a local run. The services' own signals (`signal` records,
`targets/local/signal_watch.py`) give the phases when they are there; the supervisor's
once-a-second looks (`platform/failover`, `controller/replicas`) are the fall-back, and each
phase says which it came from (`source`). The stack's failover settings come with the
`alert/watching` record (`targets/local/alert_receiver.py`).

PostgreSQL (Patroni), times from the injection:
- detect: to Patroni's leader key deleted in etcd (its lease expired). Bound: `ttl` (the last
  renewal was before the fault) + etcd's lease check and revocation (`ETCD_LEASE_CHECK_S`, 1 s); when the
  fault took an etcd member (a zone loss), which may be etcd's leader, + 3 election timeouts: a new leader
  is elected within 2 (followers wait a randomised 1-2x), and on taking office it extends every lease by
  one more (etcd's `lessor.Promote(ElectionTimeout)`: it cannot know when the old leader last saw a
  keepalive), so the key outlives ttl (measured 12.6 and 12.9 s after a zone loss, ttl 10 s);
- promote: to a new leader key. Bound: `loop_wait` (the next HA loop) + `retry_timeout` (the leader
  race's calls to the other members and the DCS). Without the key's signals: injection to the new
  leader seen by the supervisor, detect inside it, bound ttl + loop_wait + one look;
- route: the new leader to the load balancer taking an API replica back (HAProxy marks a server UP:
  signal `lb_server`; else a readiness count above the lowest since the fault). Bound: the API's
  primary check interval + `rise` x `inter` (+ the poll, or one look); PostgreSQL's own promotion
  (pg_ctl promote after the key is set) is inside it;
- reconnect: the new leader to the first acknowledged write. No bound (the clients' retries).
Redis (Sentinel): detect to the first `+odown` of the master (`+sdown` in the detail); bound
`down-after` + the ping period (min(down-after, 1 s)) + the ask period (1 s, the quorum's votes); promote
to `+switch-master`; bound Sentinel's `failover-timeout`. Without Sentinel's signals: promote from the
injection to the supervisor's look, down-after + one look a lower bound only.
A configuration that breaks Patroni's rule `loop_wait + 2 x retry_timeout <= ttl` is named. Reported, not
judged (`failover_s`, = detect + promote + reconnect); the detail holds the phases and their bounds.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..history import ALERT, CONTROLLER, FAULT, OK, PLATFORM, SIGNAL, Record
from .measurement import Measurement, judge
from .windows import WRITE_OP, completion_time, is_load_request

DEFINITION = (
    "Failover phases = detect (injection to the dead leader noticed: Patroni's leader key gone, Sentinel +odown), "
    "promote (to the new leader: a new leader key, +switch-master), route (to the load balancer taking the replicas "
    "back), reconnect (to the first acknowledged write), each from the services' own signals when recorded (else the "
    "supervisor's 1 s looks) with the bound its configuration implies. Reported, not judged."
)
# etcd finds expired leases on a 500 ms tick, then revokes them through a Raft proposal (one commit: a
# heartbeat of 100 ms here) on a busy 2-core machine: 1 s in all (measured: 9.56..10.11 s after ttl 10 s)
ETCD_LEASE_CHECK_S = 1.0
SENTINEL_ASK_S = 1.0  # Sentinel asks the others whether the master is down once a second (SENTINEL_ASK_PERIOD)
LOOK = "supervisor look (1 s)"


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
    pg = _postgres(ordered, config, inject.t)
    if pg is not None:
        out["postgres"] = pg
    cache = _redis(ordered, config, inject.t)
    if cache is not None:
        out["redis"] = cache
    if not out:
        return None
    return {**out, "config_problems": config_problems(config)}


def _after(t: float | None, start: float | None) -> float | None:
    return None if t is None or start is None else round(t - start, 3)


def _phase(name: str, start: float, end: float | None, inject_t: float, bound: float | None,
           source: str) -> dict[str, Any]:
    seconds = _after(end, start)
    return {"phase": name, "start_s": round(start - inject_t, 3), "s": seconds,
            "bound_s": None if bound is None else round(bound, 3), "source": source,
            "within": None if seconds is None or bound is None else seconds <= bound + 1e-9}


def _signals(ordered: Sequence[Record], op: str, inject_t: float) -> list[Record]:
    return [r for r in ordered if r.source == SIGNAL and r.op == op and r.t >= inject_t]


def _supervisor_failover(ordered: Sequence[Record], component: str, inject_t: float) -> Record | None:
    return next((r for r in ordered if r.source == PLATFORM and r.op == "failover" and r.t >= inject_t
                 and (r.detail or {}).get("component") == component), None)


def _flat(found: dict[str, Any]) -> dict[str, Any]:
    """Each phase also as `<phase>_s` / `<phase>_bound_s`, and whether every bounded phase kept its bound."""
    for p in found["phases"]:
        found[f"{p['phase']}_s"], found[f"{p['phase']}_bound_s"] = p["s"], p["bound_s"]
    found["sources"] = {p["phase"]: p["source"] for p in found["phases"]}
    found["within_bounds"] = all(p["within"] is not False for p in found["phases"])
    return found


def _postgres(ordered: Sequence[Record], config: dict[str, Any], inject_t: float) -> dict[str, Any] | None:
    patroni, haproxy, look = config["patroni"], config["haproxy"], float(config["look_s"])
    leader = _signals(ordered, "leader", inject_t)
    gone = next((r for r in leader if (r.detail or {}).get("event") == "deleted"), None)
    new = next((r for r in leader if (r.detail or {}).get("event") == "set" and (gone is None or r.t >= gone.t)), None)
    looked = _supervisor_failover(ordered, "postgres", inject_t)
    if new is None and looked is None:
        return None
    steps = []
    if new is not None and gone is not None:
        how = (gone.detail or {}).get("how", "etcd watch")
        election = 3 * float(config.get("etcd_election_timeout_s") or 0.0) if _took_etcd(ordered, inject_t) else 0.0
        steps.append(_phase("detect", inject_t, gone.t, inject_t, patroni["ttl_s"] + ETCD_LEASE_CHECK_S + election,
                            f"signal/leader deleted ({how})"))
        steps.append(_phase("promote", gone.t, new.t, inject_t, patroni["loop_wait_s"] + patroni["retry_timeout_s"],
                            f"signal/leader set ({how})"))
        promoted_t, name = new.t, (new.detail or {}).get("value")
    else:
        assert looked is not None
        steps.append(_phase("promote", inject_t, looked.t, inject_t, patroni["ttl_s"] + patroni["loop_wait_s"] + look,
                            f"platform/failover ({LOOK}; detect inside it)"))
        promoted_t, name = looked.t, (looked.detail or {}).get("new")
    routed_t, source, extra = _routed(ordered, inject_t, promoted_t)
    check = float(config.get("api_ready_interval_s", 0.0))
    steps.append(_phase("route", promoted_t, routed_t, inject_t,
                        check + haproxy["rise"] * haproxy["inter_s"] + extra, source))
    writes = [completion_time(r) for r in ordered
              if is_load_request(r) and r.op == WRITE_OP and r.status == OK and completion_time(r) >= promoted_t]
    steps.append(_phase("reconnect", promoted_t, min(writes) if writes else None, inject_t, None,
                        "load (first acknowledged POST /orders)"))
    return _flat({"new": name, "phases": steps})


def _took_etcd(ordered: Sequence[Record], inject_t: float) -> bool:
    """Whether the fault stopped or cut an etcd member (the supervisor's `fault:<name>` inject event lists them)."""
    return any(r.source == PLATFORM and r.op.startswith("fault:") and r.t >= inject_t
               and (r.detail or {}).get("phase") == "inject"
               and any(str(name).startswith("etcd") for name in (r.detail or {}).get("services") or ())
               for r in ordered)


def _routed(ordered: Sequence[Record], inject_t: float, promoted_t: float) -> tuple[float | None, str, float]:
    """When the load balancer took an API replica back after the new leader: (time, source, the source's lateness)."""
    watched = next((r for r in ordered if r.source == SIGNAL and r.op == "lb_servers"), None)
    if watched is not None:
        poll = 0.1
        ups = [r for r in _signals(ordered, "lb_server", promoted_t)
               if (r.detail or {}).get("status") == "UP" and (r.detail or {}).get("previous") != "UP"]
        went_down = any((r.detail or {}).get("status") == "DOWN" for r in _signals(ordered, "lb_server", inject_t))
        if ups or went_down:
            return (ups[0].t if ups else None), "signal/lb_server UP (HAProxy, poll 0.1 s)", poll
    ready = [(r.t, int((r.detail or {}).get("ready", 0))) for r in ordered
             if r.source == CONTROLLER and r.op == "replicas" and r.t >= inject_t]
    lowest = min((n for t, n in ready if t <= promoted_t), default=None)
    routed = next((t for t, n in ready if t >= promoted_t and lowest is not None and n > lowest), None)
    return routed, f"controller/replicas ({LOOK})", 1.0


def _redis(ordered: Sequence[Record], config: dict[str, Any], inject_t: float) -> dict[str, Any] | None:
    sentinel = [r for r in _signals(ordered, "sentinel", inject_t) if (r.detail or {}).get("instance") == "master"]
    event = lambda name: next((r for r in sentinel if (r.detail or {}).get("event") == name), None)  # noqa: E731
    sdown, odown, switch = event("+sdown"), event("+odown"), event("+switch-master")
    looked = _supervisor_failover(ordered, "redis", inject_t)
    down_after = float(config["sentinel_down_after_s"])
    if switch is not None and odown is not None:
        timeout = config.get("sentinel_failover_timeout_s")
        steps = [_phase("detect", inject_t, odown.t, inject_t, down_after + min(down_after, 1.0) + SENTINEL_ASK_S,
                        "signal/sentinel +odown (pub/sub)"),
                 _phase("promote", odown.t, switch.t, inject_t, None if timeout is None else float(timeout),
                        "signal/sentinel +switch-master (pub/sub)")]
        found = _flat({"new": (switch.detail or {}).get("new"), "phases": steps,
                       "sdown_s": _after(sdown.t if sdown else None, inject_t)})
        return found
    if looked is None:
        return None
    step = _phase("promote", inject_t, looked.t, inject_t, None, f"platform/failover ({LOOK}; detect inside it)")
    return {**_flat({"new": (looked.detail or {}).get("new"), "phases": [step]}),
            "promote_lower_bound_s": round(down_after + float(config["look_s"]), 3)}


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
    """failover_s: the database's detect + promote + reconnect (the cache's when only it failed over); reported."""
    found = phases(records)
    if found is None:
        return []
    main = found.get("postgres") or found["redis"]
    total = sum(p["s"] for p in main["phases"] if p["phase"] in ("detect", "promote", "reconnect") and p["s"] is not None)
    return [judge("failover_s", round(total, 3), "s", None, phase="fault", definition=DEFINITION, detail=found)]
