"""Benchmark (not a test): how fast the local stack starts, stops and heals, on this machine.

Prints, for one cold stack:
  cold `up`, `down`;
  replica SIGKILL -> out of the load balancer (HAProxy marks it DOWN);
  PostgreSQL primary kill -> first successful write through the platform URL;
  Redis master kill -> Sentinel names the new master.
Needs root and a stopped stack (it uses $RESILIENCE_STATE_DIR, default /var/lib/resilience-bench).
Usage: sudo .venv/bin/python benchmarks/stack_timings.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("RESILIENCE_STATE_DIR", "/var/lib/resilience-bench")

import httpx  # noqa: E402

from resilience.config import load_settings  # noqa: E402
from resilience.fault_registry import fault_call
from resilience.targets.local.target import LocalTarget  # noqa: E402


def until(condition, timeout: float = 90.0, interval: float = 0.01) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if condition():
                return time.monotonic() - t0
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError("condition not met")


def order(client: httpx.Client, key: str) -> bool:
    try:
        return client.post("/orders", json={"idempotency_key": key, "student_id": "bench",
                                            "items": [{"item_id": 1, "qty": 1}]}).status_code == 201
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    target = LocalTarget(load_settings())
    target.down()
    figures: dict[str, list[float]] = {k: [] for k in ("up", "down", "replica_out_of_lb", "pg_first_write",
                                                       "redis_new_master")}
    for r in range(args.rounds):
        t0 = time.monotonic()
        target.up()
        figures["up"].append(time.monotonic() - t0)
        client = httpx.Client(base_url=target.url(), timeout=2.0)
        # replica kill -> HAProxy takes it out
        admin_before = {c.name for c in target.status().components if c.kind == "api" and c.healthy}
        target.inject(fault_call("kill_replicas", {"count": 1, "seed": r}))
        figures["replica_out_of_lb"].append(until(
            lambda: len({c.name for c in target.status().components if c.kind == "api" and c.healthy}
                        & admin_before) < len(admin_before)))
        until(lambda: target.ready_replicas() >= 3)
        # PostgreSQL primary kill -> first successful write
        n = [0]

        def write() -> bool:
            n[0] += 1
            return order(client, f"bench-{r}-{n[0]}")
        step = target.inject(fault_call("fail_over_database", {"mode": "kill"}))
        figures["pg_first_write"].append(until(write, interval=0.05))
        target.rollback(step)
        # Redis master kill -> new master
        before = target.status().detail["redis_master"]
        step = target.inject(fault_call("stop_cache", {"mode": "failover"}))
        figures["redis_new_master"].append(until(lambda: target.status().detail["redis_master"] not in (None, before),
                                                 interval=0.05))
        target.rollback(step)
        client.close()
        t0 = time.monotonic()
        target.down()
        figures["down"].append(time.monotonic() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in figures.items()), flush=True)
    print("\nmedian over", args.rounds, "rounds (seconds):")
    for k, v in figures.items():
        print(f"  {k:<20} {statistics.median(v):7.2f}   (min {min(v):.2f}, max {max(v):.2f})")


if __name__ == "__main__":
    main()
