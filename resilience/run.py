"""One experiment run: deploy if needed, load, steady state, fault, rollback, recovery, measure, evidence.

The Chaos Toolkit control (`resilience.control`) drives a `Run`: `begin()` before the experiment, the
fault actions (`resilience.faults`) through its public methods (`inject`, `hold`, `release`, ...),
`rollback_all()` from the rollbacks, `finish()` after it; `resilience run` and `chaos run` alike. It is
given the target, the load plan and a load factory, and the evidence store (`rundeps` states what each
must do; `runbuild.build_run` makes the real ones).

Safety: each fault's rollback is written to `rollback.json` *before* the fault is injected, and
rollbacks run on success, failure, abort, Ctrl-C, SIGTERM/SIGHUP and errors; `resilience rollback
RUN_DIR` replays what a crash left pending. Evidence as it happens: every harness record is streamed to
`history.partial.jsonl` (load rows to `load/rows.jsonl`), so a harness killed with SIGKILL leaves its
records (`resilience.salvage` seals them). A first Ctrl-C in `finish()` makes the run aborted and lets
finishing go on; a second one stops at once.

History of a fault step: `fault`/`inject` stamped when the target call started (the request),
`fault`/`inject-done` when it returned (`detail: {capability, seconds}`), and `fault`/`effect` when
it took effect (resilience.effect_watch; the checkers time the fault from it). Rollbacks likewise:
`rollback` then `rollback-done`. A fault activity cut short by a signal aborts the run; by anything
else, the run records `fault`/`cut-short` and is inconclusive, never judged as a whole outage.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from .abort import Abort, Aborted
from .config import Settings
from .errors import HarnessError, UserError
from .experiments import ExperimentSpec
from .atomic import write_json_atomic
from .backend_scrape import record_scrape
from .fault_registry import fault_call
from .effect_watch import EffectWatch
from .event_feed import EventFeed
from .history import ALERT, CONTROLLER, FAIL, FAULT, INFO, LOAD, OK, PARTIAL, PHASE, PLATFORM, PROBE, History
from .load.process import load_summary
from .monitor import Monitor
from .progress import Progress
from .readback import read_back_orders
from .results import RunFacts, RunResult, harness_info, target_detail, write_results
from .rollbackfile import ROLLBACK, RollbackEntry, write_rollback_file
from .rundeps import LoadFactory, LoadHandle, LoadPlan, RunOptions, RunStore
from .targets.base import FaultSession, RollbackStep
from .targets.target import Target

if TYPE_CHECKING:
    from .load.clock_sync import ClockSync
    from .load.process import LoadStats

INJECT_DONE = "inject-done"  # fault op: the target's inject call returned (detail: capability, seconds)
ROLLBACK_DONE = "rollback-done"  # fault op: the target's rollback call returned (detail: capability, seconds)
_DONE = {"inject": INJECT_DONE, "rollback": ROLLBACK_DONE}


class Run:
    def __init__(self, spec: ExperimentSpec, settings: Settings, options: RunOptions, *, target: Target,
                 load_plan: LoadPlan, load_factory: LoadFactory, store: RunStore) -> None:
        self.spec = spec
        self.settings = settings
        self.options = options
        self.targets = spec.targets(settings.targets, options.target_overrides)
        self.history = History()
        self.run_id = uuid.uuid4().hex[:8]
        self.target = target
        self.load_plan = load_plan  # decided once, by build_run
        self.load_factory = load_factory
        self.store = store
        self.run_dir: Path | None = None
        self.load: LoadHandle | None = None
        self.load_workers: int | None = None  # Locust processes making the load, once resolved
        self._clock_at_start: "ClockSync | None" = None  # the load's clocks against ours, as first measured
        self.started_stack = False
        self.rollbacks: list[RollbackEntry] = []
        self.error: BaseException | None = None
        self.fault_info: dict[str, Any] = {}
        self.phase = "deploy"
        self.result: RunResult | None = None
        self.started_at = datetime.now(timezone.utc)
        self.progress = Progress(spec.name, enabled=options.progress)
        self.aborts = Abort(self.history, self.progress.say)
        self._monitor = Monitor(spec.stop_condition, self.progress, stats=self.load_stats,
                                ready_replicas=self.ready_replicas, elapsed=self.history.now,
                                on_abort=self.aborts.abort, every_2s=self._poll_events)
        self.events = EventFeed(self.target.events_since, self.history, on_stop=self.aborts.abort)
        self.effects = EffectWatch(self.history, self.progress.say)
        self.owned_by_control = False  # created by the control under plain `chaos run`
        self._load_collected = False

    # -- files ---------------------------------------------------------------------
    def path(self, name: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / name

    def _write_json(self, name: str, data: Any) -> None:
        write_json_atomic(self.path(name), data)

    def _write_rollbacks(self) -> None:
        write_rollback_file(self.path(ROLLBACK), {"target": self.options.target, "context": self.options.context,
                                                  "config": self.settings.source,
                                                  "steps": [r.to_json() for r in self.rollbacks]})

    # -- phases ----------------------------------------------------------------------
    def mark_phase(self, phase: str, t: float | None = None) -> None:
        self.phase = phase
        self.history.add(PHASE, phase, INFO, t=t)
        self.progress.phase(phase)
        record_scrape(self.history, self.target, phase)  # the replicas' backend counters as it starts (issue 21)

    def begin(self) -> None:
        self.run_dir = self.store.open_run(self.spec.name, self.started_at)  # a run that never seals still shows
        self.history.stream_to(self.path(PARTIAL))  # a killed harness still leaves its records
        self.path("experiment.yaml").write_text(yaml.safe_dump(self.spec.raw, sort_keys=False))
        self._write_json("settings.json", self._settings_json())
        self._write_rollbacks()
        self.progress.say(f"run directory {self.run_dir}")
        if not self.target.status().running:
            self.progress.say(f"deploying the platform on target '{self.target.name}' ...")
            t0 = time.monotonic()
            self.target.up()
            self.started_stack = True
            self.history.add(PLATFORM, "deployed", INFO, detail={"seconds": round(time.monotonic() - t0, 2)})
        status = self.target.status()
        deadline = time.monotonic() + 30  # a stack just healed by the previous experiment may still be settling
        while not status.healthy and time.monotonic() < deadline:
            time.sleep(0.5)
            status = self.target.status()
        if not status.healthy:
            problems = status.detail.get("problems") or {}
            bad = [f"{c.name}: {problems.get(c.name, 'unhealthy')}" for c in status.components if not c.healthy]
            raise HarnessError(f"the platform is not healthy before the experiment ({'; '.join(bad)}); "
                               f"see `resilience status`, or rebuild it with `resilience down` and `resilience up`.")
        self.history.add(PLATFORM, "stack", INFO, detail=status.to_json())
        self.target.start_observing()  # watches (cloud), alerts (local) record what the platform does from here on
        if self.spec.alerts is not None:  # what checkers/detection.py judges the alerts against
            self.history.add(ALERT, "expected", INFO, detail={"alerts": list(self.spec.alerts)})
        ready = self.target.ready_replicas()  # the replica count the run starts from (events only carry changes)
        self.history.add(CONTROLLER, "replicas", INFO,
                         detail={"ready": ready, "desired": status.detail.get("desired_replicas", ready)})
        load_settings = self.load_plan.settings
        self.load_workers = self.load_plan.workers
        load = self.load_factory(self.target.url(), load_settings, self.run_dir, self.history.origin_monotonic,
                                 self.run_id)
        self.load = load
        self.progress.phase("ramp-up")  # not a measured phase: cold caches and connections are not steady state
        load.start()
        self._clock_at_start = load.clock_sync()
        self.history.add(LOAD, "clock", INFO, detail=self._clock_at_start.to_json())
        self._monitor.start()
        first = load_settings.effective_stages()[0]
        self._wait(lambda: (s := load.stats()) is not None and s.users >= first.users,
                   max(30.0, 3 * first.users / first.spawn_rate), "the load to ramp up to its first stage")
        self.mark_phase("steady")
        if not load_settings.stages:
            self.hold(self.spec.durations.steady_s)

    def _settings_json(self) -> dict[str, Any]:
        return {"target": self.options.target, "context": self.options.context, "profile": self.spec.profile,
                "experiment": self.spec.name, "experiment_file": str(self.spec.path),
                "measures": list(self.spec.measures), "targets": self.targets.__dict__,
                "durations": self.spec.durations.__dict__, "stop_condition": self.spec.stop_condition.__dict__,
                "load": self.spec.load.to_json(), "settings": self.settings.to_json(),
                "cli_target_overrides": self.options.target_overrides, "seed": self.options.seed,
                "harness": harness_info()}

    # -- waiting -----------------------------------------------------------------------
    @property
    def abort_reason(self) -> str | None:
        return self.aborts.reason

    def check_abort(self) -> None:
        """Raise `Aborted` once the stop condition fired or the run was interrupted."""
        self.aborts.check()

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_abort()
            if condition():
                return
            if self.load is not None and not self.load.running():
                raise HarnessError(f"the load generator stopped unexpectedly:\n{self.load.log_tail()}")
            time.sleep(poll)
        raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}")

    def hold(self, seconds: float) -> None:
        """Let time pass under load, checking the stop condition."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check_abort()
            time.sleep(min(0.1, left))

    # -- what the fault actions and probes use (resilience.faults) ---------------------------
    def load_stats(self) -> "LoadStats | None":
        """The load generator's latest figures (None before it reports, or without a load)."""
        return self.load.stats() if self.load is not None else None

    def ready_replicas(self) -> int:
        """Ready API replicas, as the target counts them now."""
        return self.target.ready_replicas()

    def note_probe_error(self, probe: str, exc: BaseException) -> None:
        """A steady-state probe that could not ask the target: it answered "not serving"; the history says why."""
        self.history.add(PROBE, probe, FAIL, detail={"error": f"{type(exc).__name__}: {exc}"})

    def wait_for_load_stage(self, stage: int, timeout_s: float) -> None:
        """Wait until the load runs its stage `stage` (0-based) or a later one; HarnessError after `timeout_s`."""
        self._wait(lambda: (s := self.load_stats()) is not None and s.stage >= stage, timeout_s,
                   f"the load to reach its stage {stage + 1}", poll=0.05)

    def record_traffic_spike(self, from_users: int, to_users: int) -> float:
        """The load's own step up is the fault: record it as injected now, start the fault phase; returns its t."""
        t = self.history.now()
        self.history.add(FAULT, "inject", OK, t=t, detail={"capability": "traffic_spike",
                                                            "arguments": {"from_users": from_users,
                                                                          "to_users": to_users}})
        self.fault_info = {"capability": "traffic_spike", "arguments": {"to_users": to_users}, "injected_t": t}
        self.effects.start("traffic_spike", t, [])  # the load's own step: in effect as it is made
        self.mark_phase("fault", t=t)
        return t

    def end_fault(self) -> None:
        """A fault that ends by itself, with no rollback step (the spike's stages): note when; recovery starts."""
        self.fault_info["rolled_back_t"] = self.history.now()
        self.mark_phase("recovery")

    def release(self, fault: str) -> None:
        """Undo now the pending steps of `fault` (e.g. held replication once the primary it held back is killed).

        Not a rollback of the run: the phase does not change and the history gets no record (a tidy-up, as before).
        """
        for entry in self.rollbacks:
            if entry.fault == fault and entry.status == "pending" and entry.step is not None:
                self.target.rollback(entry.step)
                entry.status = "done"
                self._write_rollbacks()

    # -- faults --------------------------------------------------------------------------
    def inject(self, fault: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Write the rollback, then inject the fault through the target."""
        self.check_abort()
        entry = RollbackEntry(fault, arguments, None, "injecting")
        self.rollbacks.append(entry)
        self._write_rollbacks()  # before the fault: a crash from here on can still be undone
        t = self.history.now()
        try:
            step = self._call_target(fault, arguments, entry)
        except Exception as exc:
            done_t = self.history.now()
            # a step handed over before acting is undone like any pending one (undoing is safe twice);
            # without one, nothing is known to have changed
            entry.status = "pending" if entry.step is not None else "not-injected"
            self._write_rollbacks()
            self._record_step("inject", FAIL, t, done_t, fault, {"capability": fault, "arguments": arguments,
                                                                  "error": str(exc)})
            raise
        done_t = self.history.now()
        entry.step, entry.status = step, "pending"
        self._write_rollbacks()
        self._record_step("inject", OK, t, done_t, fault, {"capability": fault, "arguments": arguments,
                                                            "rollback": step.to_json()})
        self.effects.start(fault, t, lambda: self.target.effects(fault_call(fault, arguments, f"fault {fault}"), step))
        if not self.fault_info:
            self.fault_info = {"capability": fault, "arguments": arguments, "injected_t": t}
            self.mark_phase("fault", t=t)
        self.progress.say(f"fault injected: {fault} {arguments or ''} → rollback: {step.description}")
        return {"capability": fault, "arguments": arguments, "rollback": step.to_json()}

    def _record_step(self, op: str, status: str, t: float, done_t: float, capability: str,
                     detail: dict[str, Any]) -> None:
        """A fault step in the history: `op` at its start `t` (what checkers use), `op`-done when it returned."""
        self.history.add(FAULT, op, status, t=t, detail=detail)
        self.history.add(FAULT, _DONE[op], status, t=done_t,
                         detail={"capability": capability, "seconds": round(done_t - t, 6)})

    def _call_target(self, fault: str, arguments: dict[str, Any], entry: RollbackEntry) -> RollbackStep:
        """The registry checks the arguments; the target's nemeses inject it (a step handed over before acting
        goes into rollback.json at once, so a crash mid-fault undoes exactly what was done)."""
        def record(step: RollbackStep) -> None:
            entry.step = step
            self._write_rollbacks()

        call = fault_call(fault, arguments, f"fault {fault}")
        return self.target.inject(call, seed=self.options.seed, record=record)

    def then(self, fault: str, arguments: dict[str, Any], session: FaultSession) -> None:
        """What follows the injection of `fault`, as its module says: hold it, or a composite's further steps."""
        self.target.then(fault_call(fault, arguments, f"fault {fault}"), session)

    def undo(self, fault: str) -> list[dict[str, Any]]:
        """Undo the pending steps of `fault` only, as `rollback_all` does (e.g. pause_replicas after its hold)."""
        return self.rollback_all(lambda entry: entry.fault == fault)

    def rollback_all(self, chosen: Callable[[RollbackEntry], bool] = lambda entry: True) -> list[dict[str, Any]]:
        """Undo every fault still pending (or those `chosen`), newest first; safe to call twice."""
        done = []
        for entry in reversed(self.rollbacks):
            if entry.status not in ("pending", "injecting") or not chosen(entry):
                continue
            step = entry.step or RollbackStep("heal", {}, "restore everything the fault may have touched")
            t = self.history.now()
            try:
                self.target.rollback(step)
                entry.status = "done"
                self._record_step("rollback", OK, t, self.history.now(), step.capability, step.to_json())
            except Exception as exc:
                entry.status = "failed"
                self._record_step("rollback", FAIL, t, self.history.now(), step.capability,
                                  {**step.to_json(), "error": str(exc)})
                self.progress.say(f"ROLLBACK FAILED: {step.description}: {exc}")
            self._write_rollbacks()
            done.append(step.to_json())
        if done and self.phase in ("fault", "steady"):
            self.fault_info.setdefault("rolled_back_t", self.history.now())
            self.mark_phase("recovery")
        return done

    def fault_ended_early(self, fault: str, reason: str, *, interrupted: bool) -> None:
        """The fault activity ended before its hold was over: a signal aborts the run, anything else makes it
        inconclusive (`fault`/`cut-short`); either way the outage is never judged as if it had run its course."""
        if interrupted:
            self.aborts.abort(f"interrupted ({reason}) during {self.phase}")
        else:
            self.history.add(FAULT, "cut-short", FAIL, detail={"capability": fault, "reason": reason})

    # -- the end --------------------------------------------------------------------------
    def note_interrupt(self, where: str) -> bool:
        """A Ctrl-C during `where`: True for the first (the run is aborted, finishing goes on), False for a second."""
        return self.aborts.interrupt(where, self.run_dir)

    def _step(self, what: str, action: Callable[[], Any]) -> bool:
        return self.aborts.guard(what, action, self.run_dir)

    def finish(self, journal: dict[str, Any]) -> RunResult:
        """Recovery window, readback, measurements, evidence. Always leaves no fault behind.

        Every step is guarded: a Ctrl-C (or SIGTERM/SIGHUP) in any of them still ends with an aborted run and
        all its evidence; rolling back and stopping the load are retried once after one.
        """
        interrupted = journal.get("status") == "interrupted"
        if self.error is not None and not self.abort_reason:
            self.aborts.abort(f"harness error: {self.error}")
        elif interrupted and not self.abort_reason:
            self.aborts.abort(f"interrupted (Ctrl-C or a signal) during {self.phase}")
            self.aborts.interrupts = max(self.aborts.interrupts, 1)
        self.aborts.note()
        try:
            if not self._step("the rollback", self.rollback_all):
                self._step("the rollback", self.rollback_all)
            if self.load is not None and not self.abort_reason:
                self._step("recovery", self._hold_recovery)
            self.mark_phase("end")
        finally:
            self._monitor.stop()
            self._step("the last look for the fault's effect", self.effects.stop)
            if not self._step("stopping the load", self._collect_load):
                self._step("stopping the load", self._collect_load)
            self.progress.done()
        self._step("collecting platform events", self._collect_platform_events)
        if self.load is not None and "rpo" in self.spec.measures:
            self._step("the read-back", self._read_back)
        while True:
            try:
                return self._write_results(journal)
            except KeyboardInterrupt:  # start over: the verdict is now "aborted" and half-written reports are redone
                if not self.note_interrupt("writing the results and reports"):
                    raise

    def _hold_recovery(self) -> None:
        """The recovery window: hold under load (or let the load's stages run out) after the rollback."""
        if self.phase != "recovery":
            self.mark_phase("recovery")
        load = self.load
        try:
            if self.spec.load.stages and load is not None:
                self._wait(lambda: not load.running(), self.spec.durations.recovery_s + 120,
                           "the load stages to finish")
            else:
                self.hold(self.spec.durations.recovery_s)
        except Aborted:
            pass

    def _collect_load(self) -> None:
        """Stop the load generator and take its rows into the history (once)."""
        if self.load is None or self._load_collected:
            return
        self.load.stop()
        records = self.load.records()
        self.history.extend(records)
        self._load_collected = True
        self.history.add(LOAD, "summary", INFO, detail=load_summary(records, self.load.stats()))
        clock = self.load.clock_sync() if self._clock_at_start is not None else None
        if clock is not None and clock != self._clock_at_start:  # measured again at the end: drift widens the bound
            self.history.add(LOAD, "clock", INFO, detail=clock.to_json())

    def _read_back(self) -> None:
        read_back_orders(self.history, self.target.url(), self.history.now, self.progress.say)

    def _poll_events(self) -> None:
        """The platform's events so far into the (streamed) history; the monitor calls this every 2 s."""
        if self.run_dir is not None:
            self.events.poll()

    def _collect_platform_events(self) -> None:
        """After the load stopped: the target's observers stop (each takes its last look), then the last poll."""
        try:
            self.target.stop_observing()
        finally:
            try:
                self.events.poll()
            except Exception as exc:
                self.history.add(PLATFORM, "events-unavailable", INFO, detail={"error": str(exc)})

    def _write_results(self, journal: dict[str, Any]) -> RunResult:
        assert self.run_dir is not None
        self.result = write_results(self.run_dir, self.history, self._facts(), journal, sealer=self.store,
                                    warn=self.progress.say)
        return self.result

    def _facts(self) -> RunFacts:
        return RunFacts(
            experiment=self.spec.name, title=self.spec.title, hypothesis=self.spec.hypothesis,
            description=str(self.spec.raw.get("description", "")), target=self.target.name,
            target_detail=target_detail(self.target.name, self.history.records, self.options.context),
            measures=list(self.spec.measures), targets=self.targets, fault=self.fault_info,
            started_at=self.started_at,
            load={"users": self.spec.load.users, "stages": [s.to_json() for s in self.spec.load.stages],
                  "workers": self.load_workers, "user_class": self.load_plan.user_class},
            profile=self.spec.profile, aborted_reason=self.abort_reason,
            failed_rollbacks=sum(1 for r in self.rollbacks if r.status == "failed"),
            error=None if self.error is None else str(self.error))

    def close(self) -> None:
        """Last-resort cleanup: stop load, undo faults, tear down a stack this run started."""
        self._monitor.stop()
        self.effects.stop(timeout_s=1.0)
        self.target.stop_observing()
        if self.load is not None:
            self.load.stop()
        self.rollback_all()
        if self.started_stack and not self.options.keep_up:
            self.progress.say("stopping the stack this run started (use --keep-up to keep it) ...")
            self.target.down()

