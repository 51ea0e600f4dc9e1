"""One experiment run: deploy if needed, load, steady state, fault, rollback, recovery, measure, evidence.

The Chaos Toolkit control (`resilience.control`) drives a `Run` through its
life: `begin()` before the experiment, `inject()`/`hold()` from the fault
actions, `rollback_all()` from the rollbacks, `finish()` after the experiment.
`resilience run` and plain `chaos run` go through the same code.

Safety: each fault's rollback is written to `rollback.json` *before* the fault
is injected, and rollbacks run on success, failure, abort, Ctrl-C and errors;
`resilience rollback RUN_DIR` replays what a crash left pending.

Evidence as it happens: from `begin()` on, every harness record is streamed to
`history.partial.jsonl` (the load rows stream to `load/rows.jsonl`), so a
harness killed with SIGKILL leaves its records; `resilience rollback RUN_DIR`
seals such a run as aborted (`resilience.salvage`). A first Ctrl-C anywhere in
`finish()` makes the run aborted and lets finishing go on; a second one stops
at once (the streamed history remains). `write_results` is the one way a run
directory gets its result.json, reports and seal, live or salvaged.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from . import __version__
from .checkers import compute, verdict
from .checkers.measurement import Measurement
from .checkers.windows import ABORT_PHASE
from .config import Settings, Targets
from .errors import HarnessError, UserError
from .experiments import ExperimentSpec, PROJECT_ROOT
from .atomic import write_json_atomic
from .fault_registry import fault_call
from .history import (CHECK, CONTROLLER, FAIL, FAULT, INFO, LOAD, OK, PARTIAL, PHASE, PLATFORM, UNKNOWN, History,
                      Record)
from .progress import Progress
from .rollbackfile import ROLLBACK, write_rollback_file
from .targets import make_target
from .targets.base import RollbackStep
from .targets.target import Target

RESULT_SCHEMA_VERSION = 1
_current: "Run | None" = None


def current() -> "Run":
    if _current is None:
        raise HarnessError("no resilience run is active: the experiment must load the control "
                           "'resilience.control' (see experiments/*.yaml), or be started with `resilience run`.")
    return _current


def set_current(run: "Run | None") -> None:
    global _current
    _current = run


class Aborted(Exception):
    """The stop condition fired or the user interrupted the run."""


@dataclass
class RunOptions:
    target: str = "local"
    context: str | None = None
    target_overrides: dict[str, Any] = field(default_factory=dict)
    reports_dir: Path | None = None
    keep_up: bool = False  # leave a stack this run started running afterwards
    seed: int | None = None
    progress: bool = True


@dataclass
class RollbackEntry:
    fault: str
    arguments: dict[str, Any]
    step: RollbackStep | None
    status: str  # injecting | pending | done | failed

    def to_json(self) -> dict[str, Any]:
        return {"fault": self.fault, "arguments": self.arguments, "status": self.status,
                "step": self.step.to_json() if self.step else None}


class Run:
    def __init__(self, spec: ExperimentSpec, settings: Settings, options: RunOptions) -> None:
        self.spec = spec
        self.settings = settings
        self.options = options
        self.targets = spec.targets(settings.targets, options.target_overrides)
        self.history = History()
        self.run_id = uuid.uuid4().hex[:8]
        self.target: Target = make_target(options.target, settings, context=options.context)
        self.run_dir: Path | None = None
        self.load: Any = None  # resilience.load.process.LoadProcess
        self.started_stack = False
        self.rollbacks: list[RollbackEntry] = []
        self.abort_reason: str | None = None
        self.error: BaseException | None = None
        self.fault_info: dict[str, Any] = {}
        self.phase = "deploy"
        self.result: dict[str, Any] | None = None
        self.started_at = datetime.now(timezone.utc)
        self._stop_monitor = threading.Event()
        self._monitor: threading.Thread | None = None
        self.progress = Progress(spec.name, enabled=options.progress)
        self.owned_by_control = False  # created by the control under plain `chaos run`
        self.interrupts = 0  # Ctrl-Cs seen: the first one aborts the run, a second one stops finishing
        self._abort_noted = False  # a phase/abort record is in the history
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

    def begin(self) -> None:
        from .evidence import new_run_dir, record_start
        from .load.process import LoadProcess
        reports = Path(self.options.reports_dir or self.settings.evidence.reports_dir).resolve()
        reports.mkdir(parents=True, exist_ok=True)
        self.run_dir = new_run_dir(reports, self.spec.name, self.started_at)
        record_start(self.run_dir, self.spec.name, self.started_at)  # a run that never seals still shows
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
        ready = self.target.ready_replicas()  # the replica count the run starts from (events only carry changes)
        self.history.add(CONTROLLER, "replicas", INFO,
                         detail={"ready": ready, "desired": status.detail.get("desired_replicas", ready)})
        load_settings = self.spec.load
        if not Path(load_settings.locustfile).is_absolute() and not Path(load_settings.locustfile).exists():
            import dataclasses
            load_settings = dataclasses.replace(load_settings, locustfile=str(PROJECT_ROOT / load_settings.locustfile))
        self.load = LoadProcess(self.target.url(), load_settings, self.run_dir, self.history.origin_monotonic,
                                self.run_id)
        self.progress.phase("ramp-up")  # not a measured phase: cold caches and connections are not steady state
        self.load.start()
        self._monitor = threading.Thread(target=self._watch, name="monitor", daemon=True)
        self._monitor.start()
        first = load_settings.effective_stages()[0]
        self._wait(lambda: (s := self.load.stats()) is not None and s.users >= first.users,
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
                "harness": {"version": __version__, "git_commit": _git_commit()}}

    # -- waiting -----------------------------------------------------------------------
    def _check_abort(self) -> None:
        if self.abort_reason:
            raise Aborted(self.abort_reason)

    def _wait(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_abort()
            if condition():
                return
            if self.load is not None and not self.load.running():
                raise HarnessError(f"the load generator stopped unexpectedly:\n{self.load.log_tail()}")
            time.sleep(0.1)
        raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}")

    def hold(self, seconds: float) -> None:
        """Let time pass under load, checking the stop condition."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._check_abort()
            time.sleep(min(0.1, left))

    def _watch(self) -> None:
        """Progress display and the stop condition, once a second."""
        below_since: float | None = None
        floor = self.spec.stop_condition.availability_floor
        ready: int | None = None
        next_ready = 0.0
        while not self._stop_monitor.wait(1.0):
            stats = self.load.stats() if self.load else None
            now = time.monotonic()
            if now >= next_ready:
                try:
                    ready = self.target.ready_replicas()
                except Exception:
                    ready = None
                next_ready = now + 2.0
            self.progress.update(self.history.now(), stats, ready)
            if stats is None or stats.rps <= 0:
                continue
            availability = 1.0 - stats.error_pct / 100.0
            if availability < floor:
                below_since = below_since or now
                if now - below_since >= self.spec.stop_condition.for_s and not self.abort_reason:
                    self.abort_reason = (f"stop condition: availability {availability:.1%} stayed under the floor "
                                         f"{floor:.0%} for {self.spec.stop_condition.for_s:.0f} s")
                    self._note_abort()
            else:
                below_since = None

    # -- faults --------------------------------------------------------------------------
    def inject(self, fault: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Write the rollback, then inject the fault through the target."""
        self._check_abort()
        entry = RollbackEntry(fault, arguments, None, "injecting")
        self.rollbacks.append(entry)
        self._write_rollbacks()  # before the fault: a crash from here on can still be undone
        t = self.history.now()
        try:
            step = self._call_target(fault, arguments)
        except Exception as exc:
            entry.status = "failed"
            self._write_rollbacks()
            self.history.add(FAULT, "inject", FAIL, t=t, detail={"capability": fault, "arguments": arguments,
                                                                  "error": str(exc)})
            raise
        entry.step, entry.status = step, "pending"
        self._write_rollbacks()
        self.history.add(FAULT, "inject", OK, t=t, detail={"capability": fault, "arguments": arguments,
                                                            "rollback": step.to_json()})
        if not self.fault_info:
            self.fault_info = {"capability": fault, "arguments": arguments, "injected_t": t}
            self.mark_phase("fault", t=t)
        self.progress.say(f"fault injected: {fault} {arguments or ''} → rollback: {step.description}")
        return {"capability": fault, "arguments": arguments, "rollback": step.to_json()}

    def _call_target(self, fault: str, arguments: dict[str, Any]) -> RollbackStep:
        """The registry checks the arguments; the target's nemesis for this fault injects it."""
        call = fault_call(fault, arguments, f"fault {fault}")
        return self.target.inject(call, seed=self.options.seed)

    def rollback_all(self) -> list[dict[str, Any]]:
        """Undo every fault still pending, newest first; safe to call twice."""
        done = []
        for entry in reversed(self.rollbacks):
            if entry.status not in ("pending", "injecting"):
                continue
            step = entry.step or RollbackStep("heal", {}, "restore everything the fault may have touched")
            t = self.history.now()
            try:
                self.target.rollback(step)
                entry.status = "done"
                self.history.add(FAULT, "rollback", OK, t=t, detail=step.to_json())
            except Exception as exc:
                entry.status = "failed"
                self.history.add(FAULT, "rollback", FAIL, t=t, detail={**step.to_json(), "error": str(exc)})
                self.progress.say(f"ROLLBACK FAILED: {step.description}: {exc}")
            self._write_rollbacks()
            done.append(step.to_json())
        if done and self.phase in ("fault", "steady"):
            self.fault_info.setdefault("rolled_back_t", self.history.now())
            self.mark_phase("recovery")
        return done

    # -- the end --------------------------------------------------------------------------
    def _note_abort(self) -> None:
        """Put the abort in the history once (a `phase`/`abort` record): checkers see the run was cut short."""
        if not self._abort_noted and self.abort_reason:
            self._abort_noted = True
            self.history.add(PHASE, ABORT_PHASE, INFO, detail={"reason": self.abort_reason})

    def note_interrupt(self, where: str) -> bool:
        """Record a Ctrl-C. True for the first one (the run is aborted, finishing goes on); False for a second.

        A second Ctrl-C means "stop now": the caller lets KeyboardInterrupt escape;
        history.partial.jsonl still holds every record, for `resilience rollback`.
        """
        self.interrupts += 1
        if self.interrupts > 1:
            self.progress.say(f"interrupted again: stopping now. `resilience rollback {self.run_dir}` undoes what is "
                              f"left and seals what was recorded.")
            return False
        if not self.abort_reason:
            self.abort_reason = f"interrupted (Ctrl-C) during {where}"
        self._note_abort()
        self.progress.say(f"interrupted during {where}: finishing as an aborted run (Ctrl-C again to stop at once)")
        return True

    def _step(self, what: str, action: Callable[[], Any]) -> bool:
        """One step of finishing: True when it completed; a first Ctrl-C aborts the run and finishing goes on."""
        try:
            action()
            return True
        except KeyboardInterrupt:
            if not self.note_interrupt(what):
                raise
            return False

    def finish(self, journal: dict[str, Any]) -> dict[str, Any]:
        """Recovery window, readback, measurements, evidence. Always leaves no fault behind.

        Every step is guarded: a Ctrl-C in the recovery window, the read-back or
        while writing reports still ends with an aborted run and all its evidence.
        Rolling back and stopping the load are retried once after a Ctrl-C, since
        leaving a fault or the load running would be worse than waiting.
        """
        interrupted = journal.get("status") == "interrupted"
        if self.error is not None and not self.abort_reason:
            self.abort_reason = f"harness error: {self.error}"
        elif interrupted and not self.abort_reason:
            self.abort_reason = f"interrupted (Ctrl-C or a signal) during {self.phase}"
            self.interrupts = max(self.interrupts, 1)
        self._note_abort()
        try:
            if not self._step("the rollback", self.rollback_all):
                self._step("the rollback", self.rollback_all)
            if self.load is not None and not self.abort_reason:
                self._step("recovery", self._hold_recovery)
            self.mark_phase("end")
        finally:
            self._stop_monitor.set()
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
        try:
            if self.spec.load.stages:
                self._wait(lambda: not self.load.running(), self.spec.durations.recovery_s + 120,
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
        self.history.extend(self.load.records())
        self._load_collected = True

    def _read_back(self) -> None:
        """Read back every acknowledged order, also after an abort: the rollback restored the stack."""
        url = self.target.url()
        if not stack_answers(url):
            self.progress.say(f"the platform at {url} does not answer: acknowledged orders stay unverified")
            return
        self.progress.say("reading back every acknowledged order ...")
        self.history.extend(readback(url, self.history.records, self.history.now))

    def _collect_platform_events(self) -> None:
        try:
            events = self.target.events_since(self.history.origin_monotonic)
        except Exception as exc:
            self.history.add(PLATFORM, "events-unavailable", INFO, detail={"error": str(exc)})
            return
        for e in events:
            source = e.source if e.source in (CONTROLLER, PLATFORM) else PLATFORM
            op = e.op if e.source in (CONTROLLER, PLATFORM) else f"{e.source}:{e.op}"
            self.history.append(Record(self.history.at(e.monotonic), source, op, INFO, None, None, e.detail))

    def _write_results(self, journal: dict[str, Any]) -> dict[str, Any]:
        assert self.run_dir is not None
        key = self.settings.evidence.signing_key
        self.result = write_results(self.run_dir, self.history, self._facts(), journal,
                                    signing_key=Path(key) if key else None,
                                    ledger_dir=Path(self.options.reports_dir or self.settings.evidence.reports_dir),
                                    warn=self.progress.say)
        return self.result

    def _facts(self) -> "RunFacts":
        return RunFacts(
            experiment=self.spec.name, title=self.spec.title, hypothesis=self.spec.hypothesis,
            description=str(self.spec.raw.get("description", "")), target=self.target.name,
            target_detail=target_detail(self.target.name, self.history.records, self.options.context),
            measures=list(self.spec.measures), targets=self.targets, fault=self.fault_info,
            started_at=self.started_at,
            load={"users": self.spec.load.users, "stages": [s.to_json() for s in self.spec.load.stages],
                  "user_class": self.spec.load.user_class},
            profile=self.spec.profile, aborted_reason=self.abort_reason,
            failed_rollbacks=sum(1 for r in self.rollbacks if r.status == "failed"),
            error=None if self.error is None else str(self.error))

    def close(self) -> None:
        """Last-resort cleanup: stop load, undo faults, tear down a stack this run started."""
        self._stop_monitor.set()
        if self.load is not None:
            self.load.stop()
        self.rollback_all()
        if self.started_stack and not self.options.keep_up:
            self.progress.say("stopping the stack this run started (use --keep-up to keep it) ...")
            self.target.down()


@dataclass
class RunFacts:
    """What result.json states about a run besides its measurements.

    A live `Run` knows these; `resilience rollback` reads them back from a killed
    run's directory (settings.json, experiment.yaml, the history). Both hand them
    to `write_results`, so a salvaged run is written exactly like a finished one.
    """

    experiment: str
    title: str
    hypothesis: str
    description: str
    target: str
    target_detail: dict[str, Any]
    measures: list[str]
    targets: Targets
    fault: dict[str, Any]
    started_at: datetime
    load: dict[str, Any]
    profile: str
    aborted_reason: str | None
    failed_rollbacks: int = 0
    error: str | None = None


def write_results(run_dir: Path, history: History, facts: RunFacts, journal: dict[str, Any], *,
                  signing_key: Path | None, ledger_dir: Path, warn: Callable[[str], None]) -> dict[str, Any]:
    """history.jsonl, events, journal, result.json, every report, then the seal (manifest, signature, ledger line).

    The measurements come from the history exactly as stored, so `resilience
    check` recomputes the same figures. The streamed history.partial.jsonl is
    removed just before the seal: history.jsonl holds all of it (and the load
    rows), and a second copy in the manifest would only be a second truth.
    """
    from .evidence import seal_run
    history.dump(run_dir / "history.jsonl")
    records = History.load(run_dir / "history.jsonl").sorted()
    measurements = compute(records, targets=facts.targets, measures=facts.measures)
    deviations = run_deviations(journal, facts.failed_rollbacks, records)
    result_verdict = verdict(measurements, aborted=bool(facts.aborted_reason), deviated=bool(deviations))
    ended = datetime.now(timezone.utc)
    with (run_dir / "events.jsonl").open("w") as f:
        for r in records:
            if r.source != LOAD:
                f.write(json.dumps(r.to_row(), separators=(",", ":")) + "\n")
    write_json_atomic(run_dir / "journal.json", _jsonable(journal))
    result = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "experiment": facts.experiment, "title": facts.title, "hypothesis": facts.hypothesis,
        "description": facts.description,
        "target": facts.target, "target_detail": facts.target_detail,
        "run_dir": str(run_dir), "verdict": result_verdict, "aborted_reason": facts.aborted_reason,
        "deviations": deviations, "measurements": [_measurement_json(m) for m in measurements],
        "phases": _phase_spans(records), "fault": facts.fault,
        "started_at": _iso(facts.started_at), "ended_at": _iso(ended),
        "duration_s": round((ended - facts.started_at).total_seconds(), 3),
        "load": facts.load,
        "profile": facts.profile,
        "error": facts.error,
        "harness": {"version": __version__, "git_commit": _git_commit()},
        "tool_versions": _tool_versions(),
    }
    write_json_atomic(run_dir / "result.json", result)
    try:
        from .reports import render_all
        render_all(run_dir)
    except Exception as exc:  # reports are re-renderable: `resilience report RUN_DIR`
        warn(f"warning: rendering reports failed ({exc}); re-run `resilience report {run_dir}`")
    history.close_stream()
    (run_dir / PARTIAL).unlink(missing_ok=True)
    seal_run(run_dir, facts.experiment, result_verdict, signing_key, ledger_dir)
    return result


def target_detail(name: str, records: list[Record], context: str | None) -> dict[str, Any]:
    """The target as the run saw it: its URL, zone mode and size, from the history's platform/stack record."""
    detail: dict[str, Any] = {"name": name}
    for r in records:
        if r.source == PLATFORM and r.op == "stack" and r.detail:
            detail.update({"url": r.detail.get("url"), "zone_mode": r.detail.get("zone_mode"),
                           "components": len(r.detail.get("components", []))})
    if context:
        detail["context"] = context
    return detail


def run_deviations(journal: dict[str, Any], failed_rollbacks: int, records: list[Record]) -> list[str]:
    """Why a run did not go as planned: each reason makes the verdict at best a deviation, never a pass."""
    deviations = []
    if journal.get("deviated"):
        deviations.append("the steady-state hypothesis did not hold after the fault (Chaos Toolkit: deviated)")
    if journal.get("status") == "failed":
        deviations.append("an activity failed (see journal.json)")
    if failed_rollbacks:
        deviations.append(f"{failed_rollbacks} rollback(s) failed")
    for r in records:
        if r.source == PLATFORM and r.op == "heal_failed":
            pending = ", ".join(f"{n}: {why}" for n, why in (r.detail or {}).get("components", {}).items())
            deviations.append(f"the stack did not heal after the fault ({pending}); see the event log")
    return deviations


def stack_answers(url: str, timeout_s: float = 3.0) -> bool:
    """Whether the platform answers at `url` at all (any HTTP answer from /health/ready), within `timeout_s`."""
    import httpx
    try:
        httpx.get(url.rstrip("/") + "/health/ready", timeout=timeout_s)
        return True
    except httpx.HTTPError:
        return False


def readback(url: str, records: list[Record], now: Any, batch: int = 2000) -> list[Record]:
    """Read back every acknowledged order; one check record per order (ok found, fail missing, unknown).

    A batch that gets no answer after its retries marks the remaining batches
    unknown without trying them: the platform is not answering, and retrying
    every batch would keep a finished (or salvaged) run waiting for minutes.
    """
    import httpx
    acked = {r.key: r for r in records if r.source == LOAD and r.op == "POST /orders" and r.status == OK
             and r.key and r.detail and r.detail.get("order_id")}
    keys = list(acked)
    out: list[Record] = []
    answered = True
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for i in range(0, len(keys), batch):
            chunk = keys[i:i + batch]
            found: dict[str, Any] | None = None
            for attempt in range(10 if answered else 0):
                try:
                    resp = client.post("/orders/lookup", json={"keys": chunk})
                    if resp.status_code == 200:
                        found = resp.json().get("found", {})
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5 * (attempt + 1))
            answered = found is not None
            t = now()
            for key in chunk:
                ack = acked[key]
                detail = {"order_id": ack.detail.get("order_id") if ack.detail else None,
                          "ack_t": round(ack.t + (ack.latency or 0.0), 6)}
                status = UNKNOWN if found is None else (OK if key in found else FAIL)
                out.append(Record(t, CHECK, "readback", status, None, key, detail))
    return out


def _phase_spans(records: list[Record]) -> dict[str, list[float]]:
    marks = [(r.t, r.op) for r in records if r.source == PHASE and r.op != "abort"]
    spans: dict[str, list[float]] = {}
    for (t, op), nxt in zip(marks, marks[1:] + [(None, None)]):
        if op == "end":
            continue
        spans[op] = [round(t, 6), round(nxt[0], 6) if nxt[0] is not None else round(t, 6)]
    return spans


def _measurement_json(m: Measurement) -> dict[str, Any]:
    data = m.to_json()
    if isinstance(data.get("value"), float) and data["value"] in (float("inf"), float("-inf")):
        data["value"] = "inf" if data["value"] > 0 else "-inf"  # strict JSON has no Infinity
    return data


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _git_commit() -> str | None:
    head = PROJECT_ROOT / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            path = PROJECT_ROOT / ".git" / ref[5:]
            if path.exists():
                return path.read_text().strip()
            packed = (PROJECT_ROOT / ".git" / "packed-refs").read_text().splitlines()
            return next((line.split()[0] for line in packed if line.endswith(ref[5:])), None)
        return ref
    except OSError:
        return None


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": sys.version.split()[0]}
    for pkg in ("chaostoolkit-lib", "chaostoolkit", "locust", "fastapi", "asyncpg", "redis"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
