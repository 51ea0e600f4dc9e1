"""How far does the load generator go? Locust workers, every request recorded, against plain Locust.

A script, not a test: it prints figures and asserts nothing about speed.

    .venv/bin/python benchmarks/load_fleet.py [--seconds 10] [--users 50] [--max-workers 4]
                                              [--scale-users 10000] [--ramp-s 100] [--hold-s 60]

Against a fixed local endpoint (the in-memory ASGI stand-in of benchmarks/load_recorder.py,
pinned to CPU 1 when there are two), in one run:

1. Throughput, users that never wait: for 1, 2 and N workers, plain Locust in the same mode
   (one process, or `--master` with N `--worker`s; requests from its CSV stats) and the
   harness's LoadProcess (one process, or a master and N workers, every request recorded).
   Prints recorded requests per second and per CPU-second, the ratio ours/plain, rows dropped
   (rows in rows.jsonl vs. what the workers counted vs. Locust's own tally) and the peak
   memory (sum of the Locust processes' RSS, sampled every 0.5 s).
2. Scale: --scale-users LunchBreakStudent users (a student's real pace, 10-50 s between tasks),
   ramped over --ramp-s and held for --hold-s, on the most workers of part 1 (default 2 on
   two cores... see --scale-workers). Prints the users held (the least during the hold, from
   the generator's own 2-second health rows), requests per second, rows dropped, the
   generator's worst CPU share and loop lag (saturated or not), and peak memory.

Ports: 19900-19949 (the stand-in) and 19950-19999 (plain Locust's master).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_recorder import LOCUSTFILE, OPS, children_cpu_s, free_port, start_server, stop_group  # noqa: E402

from resilience.checkers.generator import generator_report, saturated_in  # noqa: E402
from resilience.load import LoadProcess, LoadSettings, Stage  # noqa: E402
from resilience.load.process import load_summary  # noqa: E402


@dataclass
class Figures:
    label: str
    requests: int
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    dropped: int | None = None
    users_held: int | None = None
    note: str = ""

    def line(self) -> str:
        dropped = "" if self.dropped is None else f"  dropped {self.dropped}"
        held = "" if self.users_held is None else f"  users held {self.users_held:>6}"
        return (f"  {self.label:<28}{held}  {self.requests / self.seconds:8.1f} req/s  "
                f"{self.requests / max(self.cpu_s, 1e-9):7.1f} req/CPU-s  peak RSS {self.peak_rss_mb:7.1f} MB"
                f"{dropped}{('  ' + self.note) if self.note else ''}")


class RssSampler:
    """Peak of the summed resident memory of a changing set of processes (read from /proc every 0.5 s)."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            total = 0
            for pid in list(self.pids):
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                except (FileNotFoundError, ProcessLookupError):
                    pass
            self.peak_kb = max(self.peak_kb, total)


def env_without_wait() -> dict[str, str]:
    return {**os.environ, "RESILIENCE_LOAD_WAIT_MIN_S": "0", "RESILIENCE_LOAD_WAIT_MAX_S": "0",
            "PYTHONPATH": str(REPO)}


def plain_locust(url: str, users: int, seconds: int, workers: int, workdir: Path) -> Figures:
    """Plain headless Locust, one process or a master with `workers` workers; requests from its CSV."""
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "LunchRushUser", "--loglevel", "WARNING"]
    prefix = workdir / "plain"
    run = ["--headless", "-u", str(users), "-r", str(users * 10), "-t", f"{seconds}s", "--host", url,
           "--csv", str(prefix), "--only-summary"]
    processes: list[subprocess.Popen[bytes]] = []
    cpu_before = children_cpu_s()
    with RssSampler() as rss, (workdir / "plain.log").open("wb") as log:
        try:
            if workers == 1:
                processes.append(subprocess.Popen(base + run, stdout=log, stderr=subprocess.STDOUT,
                                                  env=env_without_wait(), cwd=workdir, start_new_session=True))
            else:
                port = free_port(19950, 19999)  # plain Locust's master
                processes.append(subprocess.Popen(
                    base + run + ["--master", "--expect-workers", str(workers), "--master-bind-host", "127.0.0.1",
                                  "--master-bind-port", str(port)],
                    stdout=log, stderr=subprocess.STDOUT, env=env_without_wait(), cwd=workdir, start_new_session=True))
                for _ in range(workers):
                    processes.append(subprocess.Popen(
                        base + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                        stdout=log, stderr=subprocess.STDOUT, env=env_without_wait(), cwd=workdir,
                        start_new_session=True))
            rss.pids = [p.pid for p in processes]
            processes[0].wait(seconds + 90)
            for p in processes[1:]:
                p.wait(30)
        finally:
            for p in processes:
                stop_group(p)
    with (workdir / "plain_stats.csv").open() as f:
        aggregated = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    mode = "one process" if workers == 1 else f"master + {workers} workers"
    return Figures(f"plain Locust, {mode}", int(aggregated["Request Count"]), seconds,
                   children_cpu_s() - cpu_before, rss.peak_kb / 1024)


def ours(url: str, settings: LoadSettings, seconds: float, workdir: Path, label: str,
         hold: tuple[float, float] | None = None) -> Figures:
    """LoadProcess (every request recorded); users held = the least users in the health rows during `hold`."""
    cpu_before = children_cpu_s()
    origin = time.monotonic()
    load = LoadProcess(url, settings, workdir, origin, run_id="bench")
    with RssSampler() as rss:
        try:
            load.start(timeout_s=60)
            rss.pids = [p for p in [load.pid, *load.worker_pids().values()] if p is not None]
            code = load.wait(seconds + 120)
            if code != 0:
                raise SystemExit(f"the load ended with {code}: {load.log_tail()}")
        finally:
            load.stop()
    records = load.records()
    summary = load_summary(records, load.stats())
    held = None
    requests = sum(1 for r in records if r.op in OPS)
    if hold is not None:
        during = [int(r.detail["users"]) for r in records
                  if r.op == "generator" and r.detail and hold[0] <= r.t <= hold[1]]
        held = min(during) if during else 0
        # the rate while holding: requests started in the hold window over its length
        requests = round(sum(1 for r in records if r.op in OPS and hold[0] <= r.t <= hold[1]) * seconds
                         / (hold[1] - hold[0]))
    report = generator_report(records)
    note = (f"gen CPU max {report.max_cpu_pct}%  loop lag max {report.max_lag_ms} ms"
            f"{'  SATURATED' if report.saturated else ''}")
    if hold is not None:
        in_hold = [r.detail for r in records if r.op == "generator" and r.detail and hold[0] <= r.t <= hold[1]]
        hot = saturated_in(report, [hold])
        gc_ms = [float(w.get("gc_ms") or 0) for d in in_hold for w in (d.get("workers") or {}).values()]
        note = (f"holding: gen CPU max {max(float(d.get('cpu_pct') or 0) for d in in_hold):.1f}%, loop lag max "
                f"{max(float(d.get('lag_ms') or 0) for d in in_hold):.1f} ms, GC pause max {max(gc_ms or [0]):.1f} ms, "
                f"{'SATURATED in ' + str(len(hot)) + ' of ' + str(len(in_hold)) + ' samples' if hot else 'not saturated'}"
                f"; whole run incl. ramp: {note}")
    return Figures(label, requests, seconds, children_cpu_s() - cpu_before, rss.peak_kb / 1024,
                   dropped=summary["dropped"], users_held=held, note=note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="each throughput run")
    parser.add_argument("--users", type=int, default=50, help="users in the throughput runs (never waiting)")
    parser.add_argument("--max-workers", type=int, default=4, help="N of '1, 2 and N workers'")
    parser.add_argument("--scale-users", type=int, default=10_000)
    parser.add_argument("--scale-workers", type=int, default=2)
    parser.add_argument("--ramp-s", type=int, default=100)
    parser.add_argument("--hold-s", type=int, default=60)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of users: thousands of sockets

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="load-fleet-") as tmp:
        workdir = Path(tmp)
        server = start_server(port, workdir / "server.log")
        url = f"http://127.0.0.1:{port}"
        try:
            if not args.skip_throughput:
                print(f"throughput: {args.users} users that never wait, {args.seconds} s per run, "
                      f"{os.cpu_count()} CPUs (stand-in server pinned to CPU 1)", flush=True)
                for workers in sorted({1, 2, args.max_workers}):
                    plain_dir, our_dir = workdir / f"plain-{workers}", workdir / f"ours-{workers}"
                    plain_dir.mkdir()
                    plain = plain_locust(url, args.users, args.seconds, workers, plain_dir)
                    settings = LoadSettings(stages=(Stage(args.seconds, args.users, args.users * 10.0),),
                                            wait_min_s=0, wait_max_s=0, locustfile=str(LOCUSTFILE), workers=workers)
                    mine = ours(url, settings, args.seconds, our_dir, f"resilience, {workers} worker(s)")
                    print(plain.line(), flush=True)
                    print(mine.line(), flush=True)
                    by_rate = (mine.requests / mine.seconds) / (plain.requests / plain.seconds)
                    by_cpu = (mine.requests / mine.cpu_s) / (plain.requests / plain.cpu_s)
                    print(f"  ratio ours/plain with {workers} worker(s): {by_rate:.3f} by req/s, "
                          f"{by_cpu:.3f} by req per CPU-s", flush=True)
            ramp, hold = args.ramp_s, args.hold_s
            print(f"\nscale: {args.scale_users} LunchBreakStudent users (10-50 s between tasks), ramped over "
                  f"{ramp} s, held {hold} s, {args.scale_workers} workers", flush=True)
            stages = (Stage(ramp, args.scale_users, max(0.1, args.scale_users / ramp)),
                      Stage(hold, args.scale_users, 100.0))
            settings = LoadSettings(stages=stages, user_class="LunchBreakStudent", locustfile=str(LOCUSTFILE),
                                    workers=args.scale_workers, timeout_s=10.0)
            # hold window on the history clock: from when the ramp should be done (+10 s) to the end
            scale = ours(url, settings, ramp + hold, workdir / "scale", f"resilience, {args.scale_workers} workers",
                         hold=(ramp + 10.0, ramp + hold))
            print(scale.line(), flush=True)
        finally:
            stop_group(server)


if __name__ == "__main__":
    main()
