"""The API replicas' backend counters, read from their /metrics at each phase boundary (issue 21: retry
amplification, connection-pool waits, cache bypasses).

A gray failure's cost often hides behind a request that succeeds: a database call retried, a request
queued for a pooled connection, a menu served from PostgreSQL because Redis was slow. The platform
counts them (platform/metrics.py); the harness reads each replica's counters when a phase starts
(steady, fault, recovery, end) and records one `metrics/scrape` history record per boundary, so a
pure checker (checkers/backend_calls.py) can difference them per phase offline. Only the local
target's replicas are reachable from the harness (their status rows carry their addresses); on the
cloud targets nothing is scraped and nothing is reported.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .history import INFO, History
from .targets.base import StackStatus

SOURCE = "metrics"
OP = "scrape"
TIMEOUT_S = 1.0  # per replica, all in parallel: a phase boundary waits at most this long
POOL_SLOW_S = (0.01, 0.1)  # pool waits longer than these are counted (the histogram's buckets)


def parse(text: str) -> dict[str, float]:
    """One replica's /metrics -> the counters the checker differences (all cumulative since it started)."""
    from prometheus_client.parser import text_string_to_metric_families
    out = dict.fromkeys(("requests", "database_calls", "cache_calls", "cache_retries", "pool_waits", "pool_wait_s",
                         "pool_exhausted", "pool_acquire_timeouts", "cache_hit", "cache_miss", "cache_bypass",
                         "cache_failures", *(f"pool_waits_le_{s:g}" for s in POOL_SLOW_S)), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name == "rsl_http_requests_total" and not labels.get("route", "").startswith(("/health", "/metrics")):
                out["requests"] += value
            elif name == "rsl_backend_calls_total":
                key = "database_calls" if labels.get("backend") == "database" else (
                    "cache_retries" if labels.get("operation") == "retry" else "cache_calls")
                out[key] += value
            elif name == "rsl_db_pool_wait_seconds_count":
                out["pool_waits"] += value
            elif name == "rsl_db_pool_wait_seconds_sum":
                out["pool_wait_s"] += value
            elif name == "rsl_db_pool_wait_seconds_bucket" and float(labels.get("le", "inf")) in POOL_SLOW_S:
                out[f"pool_waits_le_{float(labels['le']):g}"] += value
            elif name == "rsl_db_pool_exhausted_total":
                out["pool_exhausted"] += value
            elif name == "rsl_db_pool_acquire_timeouts_total":
                out["pool_acquire_timeouts"] += value
            elif name == "rsl_cache_results_total" and f"cache_{labels.get('result')}" in out:
                out[f"cache_{labels['result']}"] += value
            elif name == "rsl_cache_failures_total":
                out["cache_failures"] += value
    return out


def replicas_of(status: StackStatus) -> list[tuple[str, str]]:
    """(name, host:port) of every API replica the status lists as running."""
    return [(c.name, c.address) for c in status.components if c.kind == "api" and c.pid is not None and c.role != "lost"]


def _one(address: str, timeout_s: float) -> dict[str, float]:
    import httpx
    answer = httpx.get(f"http://{address}/metrics", timeout=timeout_s)
    answer.raise_for_status()
    return parse(answer.text)


def scrape(replicas: list[tuple[str, str]], timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """{"replicas": {name: counters}, "unreachable": {name: why}}: every replica read in parallel."""
    out: dict[str, Any] = {"replicas": {}, "unreachable": {}}
    if not replicas:
        return out
    with ThreadPoolExecutor(max_workers=min(16, len(replicas))) as pool:
        futures = {name: pool.submit(_one, address, timeout_s) for name, address in replicas}
        for name, future in futures.items():
            try:
                out["replicas"][name] = future.result()
            except Exception as exc:  # a replica down or frozen by the fault: its counts are unknown here
                out["unreachable"][name] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def record_scrape(history: History, target: Any, phase: str) -> None:
    """One `metrics/scrape` record as `phase` starts (stamped now): the local target's replicas' counters, read in
    the background so that a frozen replica never delays the fault's own steps (a pause's hold); the `end`
    boundary is read in the foreground after the others finished, so every record is in before the results.
    Nothing elsewhere, nothing when no replica is listed; it never fails the run."""
    if getattr(target, "name", None) != "local":
        return
    t = history.now()

    def read() -> None:
        try:
            replicas = replicas_of(target.status())
        except Exception as exc:  # the supervisor busy or gone: this boundary goes unscraped (the checker skips it)
            history.add(SOURCE, "unscraped", INFO, t=t, detail={"phase": phase, "error": f"{type(exc).__name__}: {exc}"})
            return
        if replicas:
            history.add(SOURCE, OP, INFO, t=t, detail={"phase": phase, **scrape(replicas)})
    if phase != "end":
        thread = threading.Thread(target=read, name=f"scrape-{phase}", daemon=True)
        _pending.append(thread)
        thread.start()
        return
    while _pending:
        _pending.pop().join(timeout=3 * TIMEOUT_S + 10)
    read()


_pending: list[threading.Thread] = []  # background scrapes not yet joined (one run at a time per process)
