"""A Locust worker (`--role worker`): makes requests and sends every row to the master.

Locust's WorkerRunner runs the users the master gives it. What is ours:

1. before anything else it measures its clock against the master's (five
   round trips over Locust messages, clock_sync.py) and says hello with the
   offset and its uncertainty; on one host (`--shared-clock`) there is nothing
   to measure. It then stamps every row on the master's clock, relative to the
   run's origin, so rows from all workers share one time line;
2. every 0.25 s it sends the rows recorded since the last batch, numbered, with
   its running count of requests and its health (CPU, loop lag), so the master
   can tell a lost batch from a quiet worker;
3. on FINISH it stops its users and sends its last batch marked final.

Runs only in the Locust process (imports gevent and Locust).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from .clock_sync import ClockSample, ClockSync, estimate, shared
from .fleet import FINISH, HELLO, PING, PONG, ROWS
from .health import REPORT_INTERVAL_S, GeneratorHealth
from .recorder import FLUSH_INTERVAL_S, Recorder
from .runtime import UsersOutOfGc, stop_event_on_signals, watch_parent

CLOCK_ROUND_TRIPS = 5
CLOCK_REPLY_TIMEOUT_S = 5.0
CLOCK_REFRESH_S = 30.0  # clocks drift: measure again this often (not with a shared clock)
EXIT_NO_MASTER = 3


class BatchSink:
    """What Recorder.flush writes: kept until the next batch goes to the master."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass

    def take(self) -> str:
        text, self.text = self.text, ""
        return text


def run_worker(args: argparse.Namespace, user_class: type) -> int:
    import gevent
    import gevent.queue
    from locust.env import Environment

    env = Environment(user_classes=[user_class], host=args.host)
    runner = env.create_worker_runner(args.master_host, args.master_port)
    sink = BatchSink()
    recorder = Recorder(sink, origin_monotonic=0.0)
    env.events.request.add_listener(recorder.on_request)
    pongs: gevent.queue.Queue[ClockSample | None] = gevent.queue.Queue()
    stop = stop_event_on_signals()
    health = GeneratorHealth()
    health.track_gc()
    state: dict[str, Any] = {"seq": 0, "health": {}, "final": False, "sync": shared()}

    def on_pong(environment: Any, msg: Any, **_: Any) -> None:
        pongs.put(ClockSample(float(msg.data["sent"]), float(msg.data["remote"]), time.monotonic()))
        recorder.origin = float(msg.data["origin"])

    def measure_clock() -> ClockSync | None:
        samples = []
        for _ in range(1 if args.shared_clock else CLOCK_ROUND_TRIPS):
            runner.send_message(PING, {"sent": time.monotonic()})
            try:
                sample = pongs.get(timeout=CLOCK_REPLY_TIMEOUT_S)
            except gevent.queue.Empty:
                continue
            if sample is not None:
                samples.append(sample)
        if not samples:
            return None
        return shared() if args.shared_clock else estimate(samples, "round trips over Locust messages")

    def send_batch(final: bool = False) -> None:
        recorder.flush()
        text = sink.take()
        data = {"seq": state["seq"], "rows": text, "count": text.count("\n"), "requests": recorder.requests,
                "final": final, "users": runner.user_count, "health": state["health"], "window": recorder.window(),
                "clock": state["sync"].to_json()}
        runner.send_message(ROWS, data)
        state["seq"] += 1

    def on_finish(environment: Any, msg: Any, **_: Any) -> None:
        runner.stop()  # users stop; requests they had finished are recorded
        state["final"] = True
        send_batch(final=True)

    runner.register_message(PONG, on_pong)
    runner.register_message(FINISH, on_finish)

    frozen = UsersOutOfGc()

    def housekeeping() -> None:
        next_health, next_clock = 0.0, time.monotonic() + CLOCK_REFRESH_S
        while not state["final"]:
            now = time.monotonic()
            if now >= next_health:
                frozen.after_spawning(runner.user_count)
                state["health"] = health.take()
                next_health = now + REPORT_INTERVAL_S
            if not args.shared_clock and now >= next_clock:
                state["sync"] = measure_clock() or state["sync"]
                recorder.clock = _shifted(state["sync"])
                next_clock = now + CLOCK_REFRESH_S
            send_batch()
            gevent.sleep(FLUSH_INTERVAL_S)

    sync = measure_clock()
    if sync is None:
        print(f"error: no answer from the load master at {args.master_host}:{args.master_port} within "
              f"{CLOCK_REPLY_TIMEOUT_S * CLOCK_ROUND_TRIPS:.0f} s", flush=True)
        runner.quit()
        return EXIT_NO_MASTER
    state["sync"] = sync
    recorder.clock = _shifted(sync)
    runner.send_message(HELLO, {"worker": args.worker_id, "clock": sync.to_json()})
    greenlets = [gevent.spawn(health.probe), gevent.spawn(housekeeping), watch_parent(stop)]

    def stop_on_signal() -> None:
        stop.wait()
        if not state["final"]:
            on_finish(env, None)
        runner.quit()

    stopper = gevent.spawn(stop_on_signal)
    runner.greenlet.join()  # until the master says quit (or we quit on SIGTERM)
    for greenlet in greenlets + [stopper]:
        greenlet.kill()
    return 0


def _shifted(sync: ClockSync) -> Any:
    """This host's monotonic clock moved onto the master's."""
    offset = sync.offset_s
    return lambda: time.monotonic() + offset
