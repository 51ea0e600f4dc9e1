"""Live progress of a run on stderr: phase, elapsed, req/s, error %, p99, ready replicas.

On a terminal one line is redrawn every second; otherwise (CI logs) a line is
printed every 5 seconds so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def progress_line(name: str, phase: str, elapsed_s: float, stats: Any | None, ready: int | None) -> str:
    """One status line; pure so it can be tested."""
    minutes, seconds = divmod(int(elapsed_s), 60)
    parts = [f"[{name}]", f"{phase:<9}", f"{minutes:02d}:{seconds:02d}"]
    if stats is not None:
        parts += [f"users {stats.users:>4}", f"{stats.rps:7.1f} req/s", f"err {stats.error_pct:5.1f}%",
                  f"p99 {stats.p99_ms:6.0f} ms" if stats.p99_ms is not None else "p99      - ms"]
        target = getattr(stats, "target_users", 0)
        if target and stats.users < target:
            parts[-4] += f"/{target}"  # still ramping (or behind): users held of users asked for
        expected = getattr(stats, "workers_expected", 1)
        if expected > 1:
            parts.append(f"workers {stats.workers_live}/{expected}")
        if getattr(stats, "cpu_pct", None) is not None:
            parts.append(f"gen cpu {stats.cpu_pct:3.0f}%")
    if ready is not None:
        parts.append(f"replicas {ready}")
    return "  ".join(parts)


class Progress:
    def __init__(self, name: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.name = name
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.current_phase = "deploy"
        self._last_print = 0.0
        self._dirty = False

    def phase(self, phase: str) -> None:
        self.current_phase = phase
        self.say(f"phase: {phase}")

    def say(self, message: str) -> None:
        if not self.enabled:
            return
        if self._dirty:
            self.stream.write("\n")
            self._dirty = False
        self.stream.write(f"[{self.name}] {message}\n")
        self.stream.flush()

    def update(self, elapsed_s: float, stats: Any | None, ready: int | None) -> None:
        if not self.enabled:
            return
        line = progress_line(self.name, self.current_phase, elapsed_s, stats, ready)
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self._dirty = True
        elif now - self._last_print >= 5.0:
            self.stream.write(line + "\n")
            self._last_print = now
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self._dirty:
            self.stream.write("\n")
            self._dirty = False
