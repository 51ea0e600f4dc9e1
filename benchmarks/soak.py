"""Benchmark (not a test, not in CI): a game-day soak on one stack.

Lunch-rush load (Locust in its own process, every request recorded) for --minutes
(default 30), and a fault every --fault-every seconds (default 180), in turn:
pod-kill, redis-kill, db-kill, zone-other, zone-primary; each is rolled back and
waited on until the stack is whole again. Prints:
- memory (RSS) of every long-lived process at the start and the end, and its growth
  (goal: at most 10 %); a process that a fault restarted is marked so, not compared;
- history records written against the requests Locust itself counted (must be equal);
- failed requests outside the fault windows (must be 0). A window runs from the
  injection until the heal completed, plus --grace seconds (default 5) for clients
  to reconnect.

Needs root and no other stack on the default ports; uses $RESILIENCE_STATE_DIR
(default /var/lib/resilience-bench); starts the stack if needed and stops it again.
Usage: sudo .venv/bin/python benchmarks/soak.py [--minutes 30] [--fault-every 180] [--users 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heal_cycles import FAULTS, until, whole  # noqa: E402  (sets RESILIENCE_STATE_DIR's default)

from resilience.config import load_settings  # noqa: E402
from resilience.experiments import PROJECT_ROOT  # noqa: E402
from resilience.history import LOAD, OK  # noqa: E402
from resilience.load.process import LoadProcess  # noqa: E402
from resilience.load.shape import LoadSettings  # noqa: E402
from resilience.targets.local.target import LocalTarget  # noqa: E402

ORDER = ["pod-kill", "redis-kill", "db-kill", "zone-other", "zone-primary"]


def rss_kib(pid: int | None) -> int | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def long_lived(target: LocalTarget, load: LoadProcess) -> dict[str, int]:
    """name → PID of every process that should live for the whole game-day."""
    pids = {c.name: c.pid for c in target.status().components if c.pid}
    state = json.loads((target.root / "state.json").read_text())
    pids["supervisor"] = state["supervisor_pid"]
    for i in (1, 2):
        try:
            pids[f"postgres-{i} postmaster"] = int((target.root / f"postgres-{i}" / "data" / "postmaster.pid")
                                                   .read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    if load.pid:
        pids["locust worker"] = load.pid
    return {name: pid for name, pid in pids.items() if pid}


def failures_outside(records: list[Any], windows: list[tuple[float, float]], grace: float) -> list[Any]:
    """Failed or unknown load requests that neither started nor ended inside a fault window (+ grace)."""
    def inside(t: float) -> bool:
        return any(start <= t <= end + grace for start, end in windows)
    return [r for r in records if r.source == LOAD and r.op != "users" and r.status != OK
            and not inside(r.t) and not inside(r.t + (r.latency or 0.0))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fault-every", type=float, default=180.0, help="seconds between fault injections")
    parser.add_argument("--users", type=int, default=60, help="lunch-rush users (default 60)")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds after a heal still counted as the fault's")
    args = parser.parse_args()
    if not (args.minutes > 0 and args.fault_every > 0 and args.users > 0 and args.grace >= 0):
        parser.error("--minutes, --fault-every and --users must be positive, --grace at least 0")
    target = LocalTarget(load_settings())
    started_here = not target.running()
    if started_here:
        target.up()
    workdir = Path(tempfile.mkdtemp(prefix="rsl-soak-"))
    origin = time.monotonic()
    settings = LoadSettings(users=args.users, spawn_rate=30, user_class="LunchRushUser",
                            locustfile=str(PROJECT_ROOT / "scenarios" / "lunch_rush.py"), source="soak")
    load = LoadProcess(target.url(), settings, workdir, origin, "soak")
    windows: list[tuple[float, float]] = []
    faults: list[dict[str, Any]] = []
    try:
        until(lambda: whole(target), 120, "a whole stack")
        load.start()
        time.sleep(10)  # ramp-up
        start_pids = long_lived(target, load)
        start_rss = {name: rss_kib(pid) for name, pid in start_pids.items()}
        end_at = origin + args.minutes * 60
        next_fault, n = time.monotonic() + args.fault_every / 2, 0
        while time.monotonic() < end_at:
            if not load.running():
                raise RuntimeError(f"the load generator stopped; its log ends with:\n{load.log_tail()}")
            if time.monotonic() >= next_fault and end_at - time.monotonic() > 60:
                name = ORDER[n % len(ORDER)]
                t0 = time.monotonic()
                until(lambda: whole(target), 240, f"a whole stack before {name}")
                step = FAULTS[name](target, n)
                target.rollback(step)
                until(lambda: whole(target), 240, f"the stack whole after {name}")
                t1 = time.monotonic()
                windows.append((t0 - origin, t1 - origin))
                faults.append({"fault": name, "at_s": round(t0 - origin), "healed_after_s": round(t1 - t0, 1)})
                print(f"  {time.monotonic() - origin:6.0f} s  {name}: whole again after {t1 - t0:.1f} s",
                      file=sys.stderr, flush=True)
                n += 1
                next_fault = t0 + args.fault_every
            stats = load.stats()
            if stats:
                print(f"  {time.monotonic() - origin:6.0f} s  {stats.rps:6.1f} req/s  errors {stats.error_pct:5.2f} %",
                      file=sys.stderr, flush=True)
            time.sleep(min(15.0, max(0.5, end_at - time.monotonic())))
        end_pids = long_lived(target, load)
        end_rss = {name: rss_kib(pid) for name, pid in end_pids.items()}
    finally:
        load.stop()
        if started_here:
            target.down()
    records = load.records()
    final = load.stats()
    recorded = sum(1 for r in records if r.source == LOAD and r.op != "users")
    outside = failures_outside(records, windows, args.grace)
    print(f"soak: {args.minutes:g} min of lunch-rush load ({args.users} users), {len(faults)} faults")
    for f in faults:
        print(f"  at {f['at_s']:>5} s  {f['fault']:<13} whole again after {f['healed_after_s']} s")
    print(f"{'process':<24}{'RSS start MiB':>14}{'RSS end MiB':>13}{'growth':>9}")
    growths = []
    for name in sorted(start_pids):
        before, after = start_rss.get(name), end_rss.get(name)
        if end_pids.get(name) != start_pids[name] or before is None or after is None:
            print(f"{name:<24}{(before or 0) / 1024:>14.1f}{(after or 0) / 1024:>13.1f}{'restarted':>9}")
            continue
        growth = 100.0 * (after - before) / before
        growths.append(growth)
        print(f"{name:<24}{before / 1024:>14.1f}{after / 1024:>13.1f}{growth:>8.1f}%")
    print(f"history records {recorded}, requests Locust counted {final.locust_requests if final else None}: "
          f"{'equal' if final and final.locust_requests == recorded else 'DIFFERENT'}")
    print(f"failed requests outside fault windows: {len(outside)}")
    for r in outside[:10]:
        print(f"    t={r.t:.2f} s {r.op} {r.status} {r.detail}")
    ok = (final is not None and final.locust_requests == recorded and not outside
          and all(g <= 10.0 for g in growths))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
