"""What every Locust role (local, master, worker) shares: signals, the parent watch, GC freezing, the
stage driver and ending the load. Runs only in a Locust process (worker.py's roles), never in the harness.
"""

from __future__ import annotations

import gc
import math
import os
import resource
import signal
import time
from typing import Any, Callable

from .recorder import FLUSH_INTERVAL_S, Recorder
from .shape import Stage


class UsersOutOfGc:
    """Moves the users spawned so far out of the garbage collector's reach (`gc.freeze`).

    Users live for the whole run. While thousands of them are spawned the heap
    keeps growing by a quarter, which triggers full collections over all of them,
    each stalling the event loop for up to a second at 10,000 users (and every
    request in flight is stamped that much late). Frozen objects are never
    scanned again; call `after_spawning` every couple of seconds.
    """

    def __init__(self) -> None:
        self.frozen_users = 0

    def after_spawning(self, users: int) -> None:
        if users > self.frozen_users:
            gc.freeze()
            self.frozen_users = users


def raise_open_files_limit() -> None:
    """Each user holds a connection: thousands of users need thousands of descriptors (as `locust` itself does)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def stop_event_on_signals() -> Any:
    """A gevent Event set by SIGTERM or SIGINT (the harness stopping us)."""
    import gevent
    import gevent.event

    stop = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    return stop


def watch_parent(stop: Any) -> Any:
    """A greenlet that sets `stop` if the process that started us dies (not in a pod, where the parent is init)."""
    import gevent

    parent = os.getppid()

    def watch() -> None:
        while parent > 1 and os.getppid() == parent:
            gevent.sleep(FLUSH_INTERVAL_S)
        if parent > 1:
            stop.set()  # the harness died without stopping us: do not load the platform forever

    return gevent.spawn(watch)


def drive_stages(runner: Any, stages: list[Stage], recorder: Recorder, stop: Any,
                 on_first_stage: Callable[[], None], current: dict[str, int],
                 on_stage: Callable[[Stage], None] | None = None) -> None:
    """Start each stage on `runner` and hold it for its duration; return early when `stop` is set.

    A master's `start()` blocks while it ramps (it hands users to the workers at the spawn rate), so it
    runs in its own greenlet: the stage clock, the status and a stop keep going during a long ramp.
    """
    import gevent

    stage_end = time.monotonic()
    for index, stage in enumerate(stages):
        current.update(stage=index, users=stage.users)
        if on_stage is not None:
            on_stage(stage)
        recorder.users_changed(stage.users, stage.spawn_rate)
        starter = gevent.spawn(runner.start, stage.users, spawn_rate=stage.spawn_rate)
        if index == 0:
            on_first_stage()
        stage_end += stage.duration_s
        stopped = stop.wait(timeout=None if math.isinf(stage_end) else max(0.0, stage_end - time.monotonic()))
        if not starter.ready():
            starter.kill()  # the stage ended before its ramp did (the health rows show it fell behind)
        if stopped:
            return


def end_load(runner: Any, recorder: Recorder, current: dict[str, int]) -> None:
    """Quit Locust, then write the closing `users: 0` row and every row still buffered."""
    runner.quit()
    if current["users"] != 0:
        current["users"] = 0
        recorder.users_changed(0)
    recorder.flush()
