"""Benchmark (not a test): does every fault heal, every time, on one running stack?

For each fault, N cycles (default 20) of: wait for a whole stack, inject under light
order traffic, wait for the fault's observable effect (a promoted standby, a new
Redis master, replicas out of the load balancer), roll back, and time the heal
(rollback start -> `status` healthy: every component rejoined, the synchronous
standby back, as many API replicas ready as desired). At the end every
acknowledged order is read back. Prints per fault: cycles healed / cycles, heal
time p50 / max, what the PostgreSQL members had to do (rejoin, rewind, reinit),
failed requests, and acknowledged writes lost (goal: 0 with synchronous replication).

Needs root and no other stack on the default ports; uses $RESILIENCE_STATE_DIR
(default /var/lib/resilience-bench), starts the stack if it is not running and stops
it again unless --keep-up.
Usage: sudo .venv/bin/python benchmarks/heal_cycles.py [--cycles 20] [--faults db-kill,pod-kill] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

os.environ.setdefault("RESILIENCE_STATE_DIR", "/var/lib/resilience-bench")

import httpx  # noqa: E402

from resilience.config import load_settings  # noqa: E402
from resilience.targets.base import RollbackStep  # noqa: E402
from resilience.fault_registry import fault_call
from resilience.targets.local.target import LocalTarget  # noqa: E402

HEAL_DEADLINE_S = 240.0  # rollback start -> whole stack; past it the cycle counts as not healed


def until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    """Seconds until `condition` held; raises naming `what` (and the last error seen) after `timeout`."""
    t0 = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - t0 < timeout:
        try:
            if condition():
                return time.monotonic() - t0
        except Exception as exc:  # the stack is mid-fault: a status request may fail
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout:.0f} s" + (f" (last error: {last})" if last else ""))


@dataclass
class OrderTraffic:
    """Light load: one order every `interval` seconds through the platform URL; every acknowledgement kept."""

    url: str
    interval: float = 0.05
    acked: list[str] = field(default_factory=list)
    failed: int = 0
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "OrderTraffic":
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        prefix = uuid.uuid4().hex[:8]
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while not self._stop.is_set():
                key = f"heal-{prefix}-{self.sent}"
                self.sent += 1
                try:
                    resp = client.post("/orders", json={"idempotency_key": key, "student_id": "heal-bench",
                                                        "items": [{"item_id": 1, "qty": 1}]})
                    if resp.status_code == 201:
                        self.acked.append(key)
                    else:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1
                self._stop.wait(self.interval)

    def lost(self) -> int:
        """Acknowledged orders that cannot be read back now."""
        missing = 0
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            for i in range(0, len(self.acked), 2000):
                batch = self.acked[i:i + 2000]
                found = client.post("/orders/lookup", json={"keys": batch}).json()["found"]
                missing += sum(1 for k in batch if k not in found)
        return missing


# -- the faults: inject, then wait for the effect a real outage would have -------------------------
def db_kill(target: LocalTarget, cycle: int) -> RollbackStep:
    before = target.status().detail["pg_leader"]
    step = target.inject(fault_call("fail_over_database", {"mode": "kill"}))
    until(lambda: target.status().detail["pg_leader"] not in (None, before), 90, "Patroni to promote the standby")
    return step


def redis_kill(target: LocalTarget, cycle: int) -> RollbackStep:
    before = target.status().detail["redis_master"]
    step = target.inject(fault_call("stop_cache", {"mode": "failover"}))
    until(lambda: target.status().detail["redis_master"] not in (None, before), 60, "Sentinel to promote the replica")
    return step


def zone_primary(target: LocalTarget, cycle: int) -> RollbackStep:
    status = target.status()
    zone, before = status.detail["primary_zone"], status.detail["pg_leader"]
    step = target.inject(fault_call("lose_zone", {"zone": zone}))
    until(lambda: target.status().detail["pg_leader"] not in (None, before), 90,
          f"a new PostgreSQL primary outside {zone}")
    return step


def zone_other(target: LocalTarget, cycle: int) -> RollbackStep:
    """Alternate between the standby's zone and the zone without a database member."""
    status = target.status()
    others = [z for z in sorted(status.zones()) if z != status.detail["primary_zone"]]
    zone = others[cycle % len(others)]
    replicas = {c.name for c in status.components if c.kind == "api" and c.zone == zone}
    step = target.inject(fault_call("lose_zone", {"zone": zone}))
    until(lambda: not any(c.healthy for c in target.status().components if c.name in replicas), 30,
          f"{zone}'s replicas to leave the load balancer")
    time.sleep(2.0)  # the zone stays lost a little while, as in an experiment's fault window
    return step


def pod_kill(target: LocalTarget, cycle: int) -> RollbackStep:
    before = {c.name: c.pid for c in target.status().components if c.kind == "api"}
    step = target.inject(fault_call("kill_replicas", {"percent": 50, "seed": cycle}))
    until(lambda: any(not c.healthy or before.get(c.name) != c.pid
                      for c in target.status().components if c.kind == "api"), 30,
          "the killed replicas to leave the load balancer")
    return step


FAULTS: dict[str, Callable[[LocalTarget, int], RollbackStep]] = {
    "db-kill": db_kill, "redis-kill": redis_kill, "zone-primary": zone_primary,
    "zone-other": zone_other, "pod-kill": pod_kill}


@dataclass
class FaultFigures:
    cycles: int = 0
    healed: int = 0
    heal_s: list[float] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    failed_requests: int = 0
    acknowledged: int = 0
    lost: int | None = None
    lost_before_rebuild: int = 0
    rebuilds: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"cycles": self.cycles, "healed": self.healed,
                "heal_p50_s": round(statistics.median(self.heal_s), 2) if self.heal_s else None,
                "heal_max_s": round(max(self.heal_s), 2) if self.heal_s else None,
                "actions": dict(self.actions), "failed_requests": self.failed_requests,
                "acknowledged": self.acknowledged, "rebuilds": self.rebuilds,
                "lost": None if self.lost is None else self.lost + self.lost_before_rebuild, "errors": self.errors[:5]}


def whole(target: LocalTarget) -> bool:
    status = target.status()
    return status.healthy and status.detail["ready_replicas"] >= status.detail["desired_replicas"]


def run_cycle(target: LocalTarget, fault: str, cycle: int, figures: FaultFigures, traffic: OrderTraffic) -> None:
    figures.cycles += 1
    try:
        until(lambda: whole(target), HEAL_DEADLINE_S, "a whole stack before the fault")
        step = FAULTS[fault](target, cycle)
        t0 = time.monotonic()
        target.rollback(step)
        until(lambda: whole(target), HEAL_DEADLINE_S, "the stack whole again")
    except Exception as exc:
        figures.errors.append(f"cycle {cycle + 1}: {exc}".splitlines()[0][:300])
        print(f"  {fault} cycle {cycle + 1}: NOT HEALED: {exc}", file=sys.stderr, flush=True)
        repair(target, figures, traffic)
        return
    took = time.monotonic() - t0
    figures.healed += 1
    figures.heal_s.append(took)
    for e in target.events_since(t0):
        if e.op == "heal":
            for name, info in e.detail.get("components", {}).items():
                if name.startswith("postgres-"):
                    figures.actions[info.get("action", "?")] += 1
    print(f"  {fault} cycle {cycle + 1}: healed in {took:.1f} s", file=sys.stderr, flush=True)


def repair(target: LocalTarget, figures: FaultFigures, traffic: OrderTraffic) -> None:
    """After a failed cycle: heal, or rebuild the stack, so the next cycle starts whole.

    A rebuild starts with empty data: the orders acknowledged so far are read back first
    (when the stack still answers) and counted, then forgotten.
    """
    try:
        target.heal()
        until(lambda: whole(target), 120, "a whole stack after heal")
    except Exception:
        try:
            figures.lost_before_rebuild += traffic.lost()
        except Exception as exc:
            figures.errors.append(f"read-back before the rebuild failed: {exc}")
        figures.rebuilds += 1
        print("  rebuilding the stack (down, up)", file=sys.stderr, flush=True)
        target.down()
        target.up()
        traffic.acked.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=20, help="cycles per fault (default 20)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of: {', '.join(FAULTS)}")
    parser.add_argument("--keep-up", action="store_true", help="leave the stack running afterwards")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    faults = [f for f in args.faults.split(",") if f]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or args.cycles < 1:
        parser.error(f"unknown fault(s) {unknown}; choose from {list(FAULTS)}" if unknown else "--cycles must be >= 1")
    target = LocalTarget(load_settings())
    started_here = not target.running()
    t_start = time.monotonic()
    if started_here:
        target.up()
    results: dict[str, FaultFigures] = {}
    try:
        for fault in faults:
            figures = results[fault] = FaultFigures()
            traffic = OrderTraffic(target.url()).start()
            try:
                for cycle in range(args.cycles):
                    run_cycle(target, fault, cycle, figures, traffic)
            finally:
                traffic.stop()
                time.sleep(0.2)
            figures.failed_requests, figures.acknowledged = traffic.failed, traffic.sent - traffic.failed
            try:
                until(lambda: whole(target), HEAL_DEADLINE_S, "a whole stack for the read-back")
                figures.lost = traffic.lost()
            except Exception as exc:
                figures.errors.append(f"read-back: {exc}")
    finally:
        if started_here and not args.keep_up:
            target.down()
    wall = time.monotonic() - t_start
    table = {f: r.to_json() for f, r in results.items()}
    if args.json:
        print(json.dumps({"cycles": args.cycles, "wall_s": round(wall, 1), "faults": table}, indent=1))
    else:
        print(f"heal cycles on the local stack, {args.cycles} per fault, {wall / 60:.1f} min in all")
        print(f"{'fault':<14}{'healed':>9}{'p50 s':>8}{'max s':>8}  {'postgres':<24}{'failed req':>11}"
              f"{'acked':>8}{'lost':>6}")
        for name, r in table.items():
            actions = ", ".join(f"{k} {v}" for k, v in sorted(r["actions"].items())) or "-"
            print(f"{name:<14}{r['healed']:>5}/{r['cycles']:<3}{r['heal_p50_s'] or '-':>8}{r['heal_max_s'] or '-':>8}  "
                  f"{actions:<24}{r['failed_requests']:>11}{r['acknowledged']:>8}{str(r['lost']):>6}")
            for err in r["errors"]:
                print(f"    {err}")
    ok = all(r.healed == r.cycles and r.lost == 0 and r.lost_before_rebuild == 0 for r in results.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
