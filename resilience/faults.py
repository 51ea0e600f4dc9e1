"""Our Chaos Toolkit extension: the actions and probes experiments call.

Each function is one fault of the registry (`resilience.fault_registry`, which
checks its arguments; a unit test keeps the signatures equal to it), never a
target's internals, and all take one path (`_fault`): the active run hands the
fault to its target, writes the rollback first, records the injection in the
history, then does what the fault's module says comes next (`then`): hold the
fault for `hold_s` seconds (default: the experiment's `durations.fault_s`) while
watching the stop condition, or, for a composite fault, more (e.g. hold_replication
kills the primary after its hold; pause_replicas undoes itself).
Chaos Toolkit gives python activities no timeout: every call here is bounded
by the target's own timeouts and by `hold_s`.

These functions use the run only through `FaultRun`, the public part of `Run`
they need (mypy holds them to it); the run itself comes from `active.current()`,
the one module-level lookup (Chaos Toolkit calls module-level functions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chaoslib.exceptions import ActivityFailed, InterruptExecution

from . import active
from .abort import Aborted
from .errors import HarnessError, UserError
from .experiments import ExperimentSpec

if TYPE_CHECKING:
    from .load.process import LoadStats
    from .targets.base import FaultSession

__all__ = ["kill_replicas", "lose_zone", "fail_over_database", "stop_cache", "traffic_spike",
           "pause_replicas", "hold_replication", "rollback", "platform_serving",
           "corrupt_orders", "lose_database", "lose_region", "restore_database",
           "delay_network", "drop_packets", "blackhole_network", "reject_network",
           "partition_primary", "starve_cpu",
           "limit_bandwidth", "pressure_memory", "throttle_disk_io"]


class FaultRun(Protocol):
    """What the actions and the probe use of the run in progress (`resilience.run.Run`)."""

    spec: ExperimentSpec

    def inject(self, fault: str, arguments: dict[str, Any]) -> dict[str, Any]: ...
    def then(self, fault: str, arguments: dict[str, Any], session: FaultSession) -> None: ...
    def hold(self, seconds: float) -> None: ...
    def check_abort(self) -> None: ...
    def release(self, fault: str) -> None: ...
    def undo(self, fault: str) -> list[dict[str, Any]]: ...
    def rollback_all(self) -> list[dict[str, Any]]: ...
    def wait_for_load_stage(self, stage: int, timeout_s: float) -> None: ...
    def record_traffic_spike(self, from_users: int, to_users: int) -> float: ...
    def end_fault(self) -> None: ...
    def load_stats(self) -> "LoadStats | None": ...
    def ready_replicas(self) -> int: ...
    def note_probe_error(self, probe: str, exc: BaseException) -> None: ...
    def fault_ended_early(self, fault: str, reason: str, *, interrupted: bool) -> None: ...


def current() -> FaultRun:
    """The run in progress, seen through `FaultRun`."""
    return active.current()


@dataclass
class Held:
    """The run as a fault's `then` sees it once the fault is injected (`targets.base.FaultSession`)."""

    run: FaultRun
    hold_s: float
    fault_s: float

    def hold(self, seconds: float) -> None:
        self.run.hold(seconds)

    def inject(self, fault: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.run.inject(fault, arguments)

    def release(self, fault: str) -> None:
        self.run.release(fault)

    def undo(self, fault: str) -> None:
        self.run.undo(fault)


def _fault(name: str, arguments: dict[str, Any], hold_s: float | None) -> dict[str, Any]:
    """Every fault that touches the target: inject it, then what its module does next (hold it, by default)."""
    run = current()
    fault_s = run.spec.durations.fault_s
    result: dict[str, Any] | None = None
    try:
        result = run.inject(name, arguments)
        run.then(name, arguments, Held(run, fault_s if hold_s is None else float(hold_s), fault_s))
        return result
    except Aborted as exc:  # the run is aborted already (stop condition, interrupt)
        raise InterruptExecution(str(exc)) from None
    except InterruptExecution as exc:  # chaoslib's own SIGTERM handler (plain `chaos run`): an interrupt
        run.fault_ended_early(name, str(exc), interrupted=True)
        raise
    except Exception as exc:  # noqa: BLE001 - after the injection, the fault did not run its course
        if result is not None:
            run.fault_ended_early(name, f"the fault activity ended early: {exc}", interrupted=False)
        if isinstance(exc, (UserError, HarnessError)):
            raise ActivityFailed(str(exc)) from None
        raise


def kill_replicas(count: int | None = None, percent: float | None = None, seed: int | None = None,
                  hold_s: float | None = None) -> dict[str, Any]:
    """SIGKILL API replicas chosen at random (by count, or a percentage of the live ones)."""
    return _fault("kill_replicas", {"count": count, "percent": percent, "seed": seed}, hold_s)


def lose_zone(zone: str = "primary", hold_s: float | None = None) -> dict[str, Any]:
    """Lose every component of one zone at once; zone 'primary' is the zone that holds the database primary."""
    return _fault("lose_zone", {"zone": zone}, hold_s)


def fail_over_database(mode: str = "kill", hold_s: float | None = None) -> dict[str, Any]:
    """Kill ('kill') or freeze, as a partition ('freeze'), the PostgreSQL primary node."""
    return _fault("fail_over_database", {"mode": mode}, hold_s)


def stop_cache(mode: str = "failover", hold_s: float | None = None) -> dict[str, Any]:
    """Kill the Redis master ('failover') or all of Redis ('outage')."""
    return _fault("stop_cache", {"mode": mode}, hold_s)


def pause_replicas(hold_s: float = 5.0) -> dict[str, Any]:
    """Freeze every API replica for exactly `hold_s` seconds, then resume them (an outage of known length)."""
    return _fault("pause_replicas", {}, hold_s)


def hold_replication(hold_s: float = 5.0) -> dict[str, Any]:
    """Hold replication (the primary's WAL senders) for `hold_s` s, then kill the primary: with asynchronous
    replication the writes acknowledged meanwhile exist only on the dead primary (RPO > 0)."""
    return _fault("hold_replication", {}, hold_s)


def corrupt_orders(fraction: float = 0.3, mode: str = "delete", hold_s: float | None = None) -> dict[str, Any]:
    """Corrupt a share of the orders table at a recorded time (deleted or rewritten rows); it replicates."""
    return _fault("corrupt_orders", {"fraction": fraction, "mode": mode}, hold_s)


def lose_database(hold_s: float | None = None) -> dict[str, Any]:
    """Lose every database member and its data directory at once; only the backups are left."""
    return _fault("lose_database", {}, hold_s)


def lose_region(hold_s: float | None = None) -> dict[str, Any]:
    """Lose the primary region: every database member, its data and the in-region repository (repo1)."""
    return _fault("lose_region", {}, hold_s)


def restore_database(to: str = "before-fault", repo: int = 1) -> dict[str, Any]:
    """The restore runbook as code: restore from backup repository `repo` (to just before the fault, or the
    latest point), re-form the cluster, and return once the API serves from it (steps in the history)."""
    return _fault("restore_database", {"to": to, "repo": repo}, None)
def delay_network(path: str = "api-database", delay_ms: float = 100.0, jitter_ms: float = 0.0,
                  hold_s: float | None = None) -> dict[str, Any]:
    """Add `delay_ms` +- `jitter_ms` to every round trip on a network path (measured before it counts)."""
    return _fault("delay_network", {"path": path, "delay_ms": delay_ms, "jitter_ms": jitter_ms}, hold_s)


def drop_packets(path: str = "api-database", percent: float | None = None, hold_s: float | None = None,
                 from_zone: str | None = None, to_zone: str | None = None) -> dict[str, Any]:
    """Drop `percent` of the packets on a network path, each way (path zone-zone: between from_zone and to_zone)."""
    return _fault("drop_packets", {"path": path, "percent": percent, "from_zone": from_zone, "to_zone": to_zone},
                  hold_s)


def blackhole_network(path: str = "api-database", hold_s: float | None = None, from_zone: str | None = None,
                      to_zone: str | None = None) -> dict[str, Any]:
    """A network path forwards nothing: connections hang until the clients' own timeouts."""
    return _fault("blackhole_network", {"path": path, "from_zone": from_zone, "to_zone": to_zone}, hold_s)


def reject_network(path: str = "api-database", hold_s: float | None = None, from_zone: str | None = None,
                   to_zone: str | None = None) -> dict[str, Any]:
    """Every connection on a network path is reset (TCP RST): clients fail fast."""
    return _fault("reject_network", {"path": path, "from_zone": from_zone, "to_zone": to_zone}, hold_s)


def partition_primary(hold_s: float | None = None) -> dict[str, Any]:
    """The PostgreSQL primary cut off from etcd and the standby; the API still reaches it."""
    return _fault("partition_primary", {}, hold_s)


def starve_cpu(percent: float = 10.0, hold_s: float | None = None) -> dict[str, Any]:
    """Every API replica keeps `percent` of its CPU limit (the kernel throttles it)."""
    return _fault("starve_cpu", {"percent": percent}, hold_s)


def limit_bandwidth(path: str = "api-database", kbit_s: float = 1000.0, hold_s: float | None = None) -> dict[str, Any]:
    """Every connection on a network path carries at most `kbit_s` each way (measured before it counts)."""
    return _fault("limit_bandwidth", {"path": path, "kbit_s": kbit_s}, hold_s)


def pressure_memory(percent: float = 90.0, limit_mb: int = 512, hold_s: float | None = None) -> dict[str, Any]:
    """Every API replica's memory limit (`limit_mb`) filled to `percent` by a hog in its memory group."""
    return _fault("pressure_memory", {"percent": percent, "limit_mb": limit_mb}, hold_s)


def throttle_disk_io(write_kib_s: float = 1024.0, write_iops: int = 100, hold_s: float | None = None) -> dict[str, Any]:
    """Writes of the PostgreSQL primary to its data directory's device throttled (a slow disk)."""
    return _fault("throttle_disk_io", {"write_kib_s": write_kib_s, "write_iops": write_iops}, hold_s)


def traffic_spike(hold_s: float | None = None) -> dict[str, Any]:
    """The load's own stages step up: wait for the step, record it as the fault, hold through the spike."""
    run = current()
    stages = run.spec.load.stages
    if len(stages) < 2:
        raise ActivityFailed("traffic_spike needs load stages with a step (at least two stages)")
    try:
        run.wait_for_load_stage(1, stages[0].duration_s + 30)
        run.record_traffic_spike(stages[0].users, stages[1].users)
        run.hold(stages[1].duration_s if hold_s is None else float(hold_s))
        run.end_fault()
    except Aborted as exc:
        raise InterruptExecution(str(exc)) from None
    except InterruptExecution as exc:
        run.fault_ended_early("traffic_spike", str(exc), interrupted=True)
        raise
    except HarnessError as exc:
        raise ActivityFailed(f"the load never reached its spike stage: {exc}") from None
    return {"capability": "traffic_spike", "to_users": stages[1].users}


def rollback() -> list[dict[str, Any]]:
    """Undo every fault of the active run that is still pending (safe to call twice)."""
    return current().rollback_all()


def platform_serving(min_availability: float = 0.95, window_s: float = 5.0) -> bool:
    """Steady-state probe: over the last `window_s` seconds the load's requests succeed at least this often,
    and the target reports the platform healthy enough to serve (ready replicas > 0)."""
    run = current()
    stats = run.load_stats()
    if stats is None or stats.rps <= 0:
        return False
    availability = 1.0 - stats.error_pct / 100.0
    try:
        ready = run.ready_replicas()
    except Exception as exc:  # broad: a probe answers, it never raises into Chaos Toolkit; said in the history
        run.note_probe_error("platform_serving", exc)
        ready = 0
    return availability >= min_availability and ready > 0
