"""Benchmark (not a test): wall time of each experiment's short profile on the local stack.

Brings the stack up once, runs every catalogue experiment with --profile short --keep-up,
prints wall time, verdict and headline figures, then takes the stack down.
Usage: sudo .venv/bin/python benchmarks/experiment_profiles.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RESILIENCE_STATE_DIR", "/var/lib/resilience-bench")
ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "resilience.cli"]


def main() -> None:
    subprocess.run(CLI + ["up"], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    reports = tempfile.mkdtemp(prefix="resilience-bench-")
    try:
        names = [p.stem for p in sorted((ROOT / "experiments").glob("*.yaml")) if p.name != "suites.yaml"]
        print(f"{'experiment':<16} {'wall s':>7}  verdict  headline")
        for name in names:
            t0 = time.monotonic()
            proc = subprocess.run(CLI + ["run", name, "--profile", "short", "--keep-up", "--json", "--quiet",
                                         "--reports-dir", reports], capture_output=True, text=True, cwd=ROOT)
            wall = time.monotonic() - t0
            try:
                summary = json.loads(proc.stdout)
            except ValueError:
                print(f"{name:<16} {wall:7.1f}  error    {proc.stderr.strip()[-200:]}")
                continue
            m = {x["name"]: x["value"] for x in summary["measurements"]}
            head = ", ".join(f"{k}={m[k]:.3g}" if isinstance(m.get(k), float) else f"{k}={m.get(k)}"
                             for k in ("rto_s", "lost_writes", "availability", "p99_ms", "autoscale_s") if k in m)
            print(f"{name:<16} {wall:7.1f}  {summary['verdict']:<8} {head}", flush=True)
    finally:
        subprocess.run(CLI + ["down"], stdout=subprocess.DEVNULL, cwd=ROOT)


if __name__ == "__main__":
    main()
