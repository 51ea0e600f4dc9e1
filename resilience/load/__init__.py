"""Load generation: Locust in its own process, every request recorded into the history.

The harness uses `LoadProcess` (process.py) with `LoadSettings` and stages
(shape.py); neither imports Locust. `worker.py` is the Locust side and runs only
in the child process (`python -m resilience.load.worker`).
"""

from .process import LoadProcess, LoadStats
from .shape import LoadSettings, Stage, parse_stages, total_duration, users_at

__all__ = ["LoadProcess", "LoadStats", "LoadSettings", "Stage", "parse_stages", "total_duration", "users_at"]
