"""Retry amplification, connection-pool waits and cache bypasses per phase, from the replicas' own counters.

The harness reads every API replica's /metrics as each phase starts (`metrics/scrape` records,
resilience/backend_scrape.py); the difference between one boundary and the next is what the replicas
did in that phase:
- `backend_calls_per_request`: database units of work (one transaction or statement on a pooled
  connection) plus Redis calls attempted, redis-py's retries included, per client request the
  replicas answered (health checks and /metrics not counted). A gray failure that makes the platform
  retry shows as this ratio growing over the steady phase's;
- `pool_wait_ms`: the mean time a database unit of work waited for a pooled connection, with the
  waits over 10 ms and 100 ms, the acquisitions that found the pool exhausted (every connection busy
  at its maximum) and those whose budget ran out while waiting;
- `cache_bypass`: menu requests served from PostgreSQL because Redis could not be asked (breaker open
  or a failed call), with hits and misses beside them.
A replica whose counters went down between two boundaries restarted: its later counts are taken from
zero; a replica missing at the later boundary (killed, unreachable) is named, its counts in that phase
unknown; a phase whose start or end was not scraped is not measured. Reported, not judged; each figure is named with its phase (`backend_calls_per_request_fault`).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..history import Record
from .measurement import Measurement, judge

SOURCE, OP = "metrics", "scrape"
NEXT = {"steady": "fault", "fault": "recovery", "recovery": "end"}  # a phase is measured from its start to the next's
DEFINITION = ("Backend calls per request = (database units of work + Redis calls attempted, retries included) / "
              "client requests answered, from the API replicas' own counters read as each phase starts and ends "
              "(health checks not counted). Reported, not judged.")
POOL_DEFINITION = ("Mean wait for a pooled PostgreSQL connection per database unit of work in the phase; detail: "
                   "waits over 10 ms and 100 ms, acquisitions that found the pool exhausted, budgets run out while "
                   "waiting. Reported, not judged.")
BYPASS_DEFINITION = ("Menu requests served from PostgreSQL because Redis could not be asked (the circuit breaker "
                     "open or a failed call), in the phase; detail: hits, misses, failed Redis calls. Reported, "
                     "not judged.")


def scrapes(records: Sequence[Record]) -> list[Record]:
    return sorted((r for r in records if r.source == SOURCE and r.op == OP), key=lambda r: r.t)


def difference(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, float], list[str], list[str]]:
    """Counts between two scrapes, summed over replicas; (totals, replicas restarted or new, replicas missing)."""
    totals: dict[str, float] = {}
    restarted: list[str] = []
    earlier = before.get("replicas") or {}
    for name, now in sorted((after.get("replicas") or {}).items()):
        then = earlier.get(name)
        fresh = then is None or any(float(now.get(k, 0.0)) < float(v) for k, v in then.items())
        if fresh:
            restarted.append(name)
        base: dict[str, Any] = {} if fresh or then is None else then  # a restarted replica counts from zero
        for key, value in now.items():
            totals[key] = totals.get(key, 0.0) + float(value) - float(base.get(key, 0.0))
    missing = sorted(set(earlier) - set(after.get("replicas") or {}))
    return totals, restarted, missing


def per_phase(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    """For each phase with a scrape at its start and the next boundary's after it: its totals and who was missing."""
    found = scrapes(records)
    out: dict[str, dict[str, Any]] = {}
    for start, end in zip(found, found[1:]):
        phase = str((start.detail or {}).get("phase"))
        if phase in NEXT and (end.detail or {}).get("phase") == NEXT[phase] and phase not in out:
            totals, restarted, missing = difference(start.detail or {}, end.detail or {})
            out[phase] = {"totals": totals, "restarted": restarted, "missing": missing,
                          "window": [round(start.t, 3), round(end.t, 3)]}
    return out


def _ratio(numerator: float, denominator: float, scale: float = 1.0) -> float | None:
    return round(scale * numerator / denominator, 3) if denominator > 0 else None


def measurements(records: Sequence[Record]) -> list[Measurement]:
    """Per phase: backend calls per request, mean pool wait, cache bypasses; [] for a run with no scrapes."""
    out: list[Measurement] = []
    for phase, seen in per_phase(records).items():
        c = seen["totals"]
        where = {"window": seen["window"], "replicas_restarted": seen["restarted"], "replicas_missing": seen["missing"]}
        requests = c.get("requests", 0.0)
        calls = c.get("database_calls", 0.0) + c.get("cache_calls", 0.0) + c.get("cache_retries", 0.0)
        why = None if requests > 0 else "the replicas answered no client request in the phase"
        out.append(judge(f"backend_calls_per_request_{phase}", _ratio(calls, requests), "calls", None, phase=phase,
                         definition=DEFINITION, reason=why,
                         detail={**where, "requests": requests, "database_calls": c.get("database_calls", 0.0),
                                 "cache_calls": c.get("cache_calls", 0.0), "cache_retries": c.get("cache_retries", 0.0),
                                 "database_per_request": _ratio(c.get("database_calls", 0.0), requests),
                                 "cache_per_request": _ratio(c.get("cache_calls", 0.0) + c.get("cache_retries", 0.0),
                                                             requests)}))
        waits = c.get("pool_waits", 0.0)
        out.append(judge(f"pool_wait_ms_{phase}", _ratio(c.get("pool_wait_s", 0.0), waits, 1000.0), "ms", None, phase=phase,
                         definition=POOL_DEFINITION, reason=None if waits > 0 else "no database unit of work in the phase",
                         detail={**where, "waits": waits,
                                 "over_10ms": waits - c.get("pool_waits_le_0.01", 0.0),
                                 "over_100ms": waits - c.get("pool_waits_le_0.1", 0.0),
                                 "exhausted": c.get("pool_exhausted", 0.0),
                                 "acquire_timeouts": c.get("pool_acquire_timeouts", 0.0)}))
        menus = sum(c.get(k, 0.0) for k in ("cache_hit", "cache_miss", "cache_bypass"))
        out.append(judge(f"cache_bypass_{phase}", c.get("cache_bypass", 0.0), "requests", None, phase=phase,
                         definition=BYPASS_DEFINITION,
                         detail={**where, "hit": c.get("cache_hit", 0.0), "miss": c.get("cache_miss", 0.0),
                                 "bypass_share": _ratio(c.get("cache_bypass", 0.0), menus),
                                 "cache_failures": c.get("cache_failures", 0.0)}))
    return out
