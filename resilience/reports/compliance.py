"""The compliance report over a game-day: what was tested, what was measured, which controls it evidences.

It follows audit-report practice: metadata and scope first, objectives fixed
before the run, then per experiment the method, timeline, expected vs observed
and verdict, then deviations, findings with remediation hints, a control
coverage matrix and a sign-off block. Every figure comes from a run directory
with its definition and the run's manifest digest; nothing is estimated.

The mapping from experiments to controls is the table COVERAGE below: edit it
there, with a one-line rationale per control.
"""

from __future__ import annotations

import json
import math
import platform
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..checkers.measurement import status_label
from ..config import Settings
from ..evidence import LEDGER, verify_ledger
from ..fault_registry import FAULTS
from .compliance_detection import detection_evidence
from .compliance_dr import DR_COVERAGE, backup_and_dr
from .compliance_render import write_compliance_html, write_compliance_pdf
from .run import RunView, fmt_number, fmt_target, load_run, measurement_label

COMPLIANCE_SCHEMA_VERSION = 1  # compliance.json (a document of its own; result.json: results.RESULT_SCHEMA_VERSION)
IST = timezone(timedelta(hours=5, minutes=30), "IST")  # Asia/Kolkata: +05:30 all year, no DST


@dataclass(frozen=True)
class Control:
    framework: str
    ref: str
    title: str

    @property
    def id(self) -> str:
        return f"{self.framework} {self.ref}"


FRAMEWORKS = ("SOC 2", "ISO/IEC 27001:2022", "PCI DSS v4.0", "GDPR", "DPDP Rules 2025")
FRAMEWORK_ALIASES = {  # normalised spellings accepted in evidence.frameworks_in_scope
    "SOC 2": ("soc2", "soc2typeii", "soc2type2", "aicpatsc"),
    "ISO/IEC 27001:2022": ("isoiec270012022", "iso270012022", "iso27001", "isoiec27001"),
    "PCI DSS v4.0": ("pcidssv40", "pcidss40", "pcidss", "pcidssv4"),
    "GDPR": ("gdpr", "gdprart32", "eugdpr"),
    "DPDP Rules 2025": ("dpdprules2025", "dpdp", "dpdprules", "dpdpact", "dpdpa"),
}

CONTROLS = [
    Control("SOC 2", "A1.2", "Environmental protections, software, data back-up and recovery infrastructure"),
    Control("SOC 2", "A1.3", "Recovery plan procedures are tested"),
    Control("SOC 2", "CC7.4", "Response to identified incidents"),
    Control("SOC 2", "CC7.5", "Recovery from identified incidents"),
    Control("SOC 2", "CC9.1", "Risk mitigation for business disruptions"),
    Control("ISO/IEC 27001:2022", "A.5.29", "Information security during disruption"),
    Control("ISO/IEC 27001:2022", "A.5.30", "ICT readiness for business continuity"),
    Control("ISO/IEC 27001:2022", "A.8.13", "Information backup"),
    Control("ISO/IEC 27001:2022", "A.8.14", "Redundancy of information processing facilities"),
    Control("ISO/IEC 27001:2022", "A.8.16", "Monitoring activities"),
    Control("PCI DSS v4.0", "12.10.1", "Incident response plan exists and is ready to be activated"),
    Control("PCI DSS v4.0", "12.10.2", "Incident response plan reviewed and tested at least every 12 months"),
    Control("GDPR", "Art. 32(1)(b)", "Ongoing confidentiality, integrity, availability and resilience"),
    Control("GDPR", "Art. 32(1)(c)", "Timely restoration of availability and access after an incident"),
    Control("GDPR", "Art. 32(1)(d)", "Regular testing of the effectiveness of technical measures"),
    Control("DPDP Rules 2025", "Rule 6(1)", "Reasonable security safeguards, incl. continued processing and back-ups"),
]
CONTROL_IDS = [c.id for c in CONTROLS]

# experiment kind -> [(control id, why this experiment is evidence for it)]
COVERAGE: dict[str, list[tuple[str, str]]] = {
    "pod-kill": [
        ("SOC 2 A1.2", "replica replacement and load balancing are the recovery infrastructure under test"),
        ("SOC 2 A1.3", "a recovery procedure (automatic replacement) is exercised and timed (RTO)"),
        ("SOC 2 CC7.5", "recovery from a process failure is measured against the RTO target"),
        ("ISO/IEC 27001:2022 A.8.14", "shows redundant API replicas keep serving while one is lost"),
        ("ISO/IEC 27001:2022 A.5.30", "ICT readiness: the service recovers within its stated objective"),
        ("PCI DSS v4.0 12.10.2", "a recorded test of the recovery part of the incident response plan"),
        ("GDPR Art. 32(1)(b)", "availability and resilience of the processing service under a component failure"),
        ("GDPR Art. 32(1)(d)", "a regular, recorded test of a technical measure's effectiveness"),
        ("DPDP Rules 2025 Rule 6(1)", "continued processing of personal data when a component fails (clause (d))"),
    ],
    "zone-failure": [
        ("SOC 2 A1.2", "multi-zone recovery infrastructure is exercised by losing a whole zone"),
        ("SOC 2 A1.3", "the zone-loss recovery procedure is tested end to end and timed"),
        ("SOC 2 CC7.4", "the platform's automatic incident response (fail-over, re-routing) is observed"),
        ("SOC 2 CC7.5", "recovery from a zone outage is measured: RTO, RPO, availability"),
        ("SOC 2 CC9.1", "mitigation of a business-disruption risk (site loss) is demonstrated"),
        ("ISO/IEC 27001:2022 A.5.29", "security and service during a disruption: no acknowledged order lost (RPO)"),
        ("ISO/IEC 27001:2022 A.5.30", "ICT continuity readiness against the RTO/RPO objectives"),
        ("ISO/IEC 27001:2022 A.8.14", "redundancy across zones is shown to be effective"),
        ("ISO/IEC 27001:2022 A.8.16", "health checks detect the lost zone and route around it (events recorded)"),
        ("PCI DSS v4.0 12.10.1", "business recovery and continuity procedures of the plan are exercised"),
        ("PCI DSS v4.0 12.10.2", "a recorded test of the incident response plan"),
        ("GDPR Art. 32(1)(b)", "resilience of processing systems to a physical incident"),
        ("GDPR Art. 32(1)(c)", "restoration of availability and access to personal data, timed (RTO)"),
        ("GDPR Art. 32(1)(d)", "a regular, recorded test of a technical measure's effectiveness"),
        ("DPDP Rules 2025 Rule 6(1)", "continued processing and no loss of personal data on a zone outage (clause (d))"),
    ],
    "db-failover": [
        ("SOC 2 A1.2", "database replication and automatic fail-over are the recovery infrastructure under test"),
        ("SOC 2 A1.3", "the database recovery procedure (promotion) is tested and timed"),
        ("SOC 2 CC7.5", "recovery from a database failure is measured: promotion time and RPO"),
        ("ISO/IEC 27001:2022 A.5.30", "ICT continuity readiness of the data tier against RTO/RPO"),
        ("ISO/IEC 27001:2022 A.8.13", "replicated copies of data are shown to hold every acknowledged write (RPO)"),
        ("ISO/IEC 27001:2022 A.8.14", "the standby database takes over: redundancy is effective"),
        ("PCI DSS v4.0 12.10.1", "data back-up and recovery processes of the plan are exercised"),
        ("PCI DSS v4.0 12.10.2", "a recorded test of the incident response plan"),
        ("GDPR Art. 32(1)(b)", "integrity and availability of personal data under a database failure"),
        ("GDPR Art. 32(1)(c)", "timely restoration of access to personal data, measured"),
        ("GDPR Art. 32(1)(d)", "a regular, recorded test of a technical measure's effectiveness"),
        ("DPDP Rules 2025 Rule 6(1)", "data back-ups and continued processing when the database fails (clause (d))"),
    ],
    "redis-outage": [
        ("SOC 2 A1.2", "cache fail-over (Sentinel) and graceful degradation are exercised"),
        ("SOC 2 CC7.4", "the platform's response to a failed dependency is observed"),
        ("SOC 2 CC9.1", "mitigation of a dependency-outage risk is demonstrated"),
        ("ISO/IEC 27001:2022 A.5.29", "service continues, degraded but correct, during the disruption"),
        ("ISO/IEC 27001:2022 A.8.14", "the cache replica takes over: redundancy is effective"),
        ("PCI DSS v4.0 12.10.2", "a recorded test of the incident response plan"),
        ("GDPR Art. 32(1)(b)", "availability and resilience of processing when a dependency fails"),
        ("GDPR Art. 32(1)(d)", "a regular, recorded test of a technical measure's effectiveness"),
        ("DPDP Rules 2025 Rule 6(1)", "continued processing when the cache is lost (clause (d))"),
    ],
    "traffic-spike": [
        ("SOC 2 A1.2", "autoscaling capacity is part of the availability infrastructure under test"),
        ("SOC 2 CC9.1", "mitigation of a demand-surge disruption risk is demonstrated"),
        ("ISO/IEC 27001:2022 A.8.16", "utilisation is monitored and acted on by the autoscaler (latency measured)"),
        ("ISO/IEC 27001:2022 A.5.30", "ICT readiness: latency and availability objectives hold under peak load"),
        ("GDPR Art. 32(1)(b)", "availability and resilience of processing under peak load"),
        ("GDPR Art. 32(1)(d)", "a regular, recorded test of a technical measure's effectiveness"),
        ("DPDP Rules 2025 Rule 6(1)", "continued processing under peak load (clause (d))"),
    ],
    **DR_COVERAGE,  # recovery from backup and backup verification: compliance_dr.py
}

# a run's fault (its capability: the registry's name) -> the experiment kind it is evidence for, as the registry says
KIND_BY_CAPABILITY = {name: fault.experiment_kind for name, fault in FAULTS.items() if fault.experiment_kind}

# measurement name prefix -> remediation hint when it is breached
REMEDIATION = {
    "rto_s": "Recovery took longer than the RTO target. Review fail-over settings: Patroni ttl / loop_wait / "
             "retry_timeout, Sentinel down-after-milliseconds and failover-timeout, HAProxy health-check "
             "inter / fall / rise, readiness probes and the replica controller's restart delay.",
    "rpo_s": "Acknowledged writes were lost. Acknowledge orders only after the commit is durable on a standby "
             "(synchronous_standby_names, synchronous_commit), and check WAL archiving / back-up frequency.",
    "lost_writes": "Acknowledged orders were missing after recovery. Use synchronous replication for the order path "
                   "and make clients retry with the same idempotency key.",
    "availability": "Requests failed during the fault. Add load-balancer retries with redispatch, keep replicas "
                    "spread over zones (PodDisruptionBudget, topology spread), and retry idempotent client calls.",
    "p99_ms": "Tail latency exceeded the target. Check capacity headroom (HPA minimum replicas, CPU limits), "
              "connection-pool sizes and the time-outs of cache and database fall-backs.",
    "autoscale_first_s": "The first extra replica came too late. Shorten the autoscaler's sync period and scale-up "
                         "stabilisation window, and make replicas ready faster.",
    "autoscale_s": "Autoscaling settled too slowly. Raise the scale-up policy (pods / percent per period), shorten "
                   "stabilisation, and make replicas ready faster (smaller images, pre-pulled).",
    "detection_s": "The fault was detected too late. Tighten alert rules and evaluation intervals.",
}
SEVERITY = {"rto_s": "high", "rpo_s": "high", "lost_writes": "high", "availability": "medium", "p99_ms": "medium",
            "autoscale_s": "medium", "autoscale_first_s": "low", "detection_s": "medium"}


@dataclass(frozen=True)
class GamedayEntry:
    """One experiment of a game-day: its run directory, or the error that left it without one."""

    experiment: str
    run_dir: Path | None
    error: str | None = None
    skipped: str | None = None  # not run: why its target refuses it (not a failure)


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def framework_scope(in_scope: tuple[str, ...] | list[str]) -> tuple[dict[str, str], list[str]]:
    """Each framework -> "in scope" | "readiness claim only"; plus names in settings that match none."""
    wanted = {_normalise(n) for n in in_scope}
    scope: dict[str, str] = {}
    matched: set[str] = set()
    for framework in FRAMEWORKS:
        names = {_normalise(framework), *FRAMEWORK_ALIASES.get(framework, ())}
        hit = wanted & names
        matched |= hit
        scope[framework] = "in scope" if hit else "readiness claim only"
    unknown = [n for n in in_scope if _normalise(n) not in matched]
    return scope, unknown


def experiment_kind(run: RunView | None, experiment: str) -> str | None:
    """Which COVERAGE row applies: by name, then by the fault's capability, then by a name prefix."""
    if experiment in COVERAGE:
        return experiment
    if run is not None:
        kind = KIND_BY_CAPABILITY.get(str(run.fault.get("capability")))
        if kind:
            return kind
    return next((k for k in COVERAGE if experiment.startswith(k)), None)


def _number(value: Any) -> Any:
    """JSON-safe: infinity becomes "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else None
    return value


def _wall(run: RunView, value: Any) -> str | None:
    if not isinstance(value, (int, float)):
        return None
    when = run.wall(float(value))
    return when.isoformat().replace("+00:00", "Z") if when else None


def _experiment_section(entry: GamedayEntry) -> dict[str, Any]:
    if entry.skipped is not None:
        return {**_experiment_section(GamedayEntry(entry.experiment, None, entry.skipped)), "verdict": "skipped",
                "verdict_word": "SKIPPED", "aborted_reason": None, "skipped_reason": entry.skipped,
                "method": f"not run: {entry.skipped}"}
    if entry.run_dir is None or not (entry.run_dir / "result.json").is_file():
        reason = entry.error or "the run left no result.json"
        return {"experiment": entry.experiment, "kind": experiment_kind(None, entry.experiment),
                "run_dir": str(entry.run_dir) if entry.run_dir else None, "verdict": "aborted",
                "verdict_word": "ABORTED", "aborted_reason": f"harness error: {reason}", "title": "",
                "hypothesis": "", "method": "not run to completion", "timeline": [], "measurements": [],
                "rto": None, "rpo": None, "deviations": [], "manifest_sha256": None, "signed": False,
                "target": None, "started_at": None, "ended_at": None}
    run = load_run(entry.run_dir)
    fault = run.fault
    load = run.result.load
    method = (f"fault {fault.get('capability')} {json.dumps(fault.get('arguments') or {}, default=str)}"
              if fault else "no fault injected")
    if load:
        method += f"; load {load.get('users', '?')} users ({load.get('user_class', '?')})"
    timeline: list[dict[str, Any]] = [{"event": f"{name} phase", "t_start": span[0], "t_end": span[1], "utc_start": _wall(run, span[0]),
                 "utc_end": _wall(run, span[1])} for name, span in run.phases.items()]
    if fault:
        for label, key in (("fault injected", "injected_t"), ("fault rolled back", "rolled_back_t")):
            if isinstance(fault.get(key), (int, float)):
                timeline.append({"event": label, "t_start": fault[key], "t_end": None,
                                 "utc_start": _wall(run, fault[key]), "utc_end": None})
    for r in run.events():
        if r.source == "platform" and r.op == "failover":
            timeline.append({"event": f"failover {json.dumps(r.detail or {}, default=str)}", "t_start": r.t,
                             "t_end": None, "utc_start": _wall(run, r.t), "utc_end": None})
    timeline.sort(key=lambda e: float(e["t_start"]))
    measurements = [{"name": measurement_label(m), "measure": m.name, "phase": m.phase, "unit": m.unit,
                     "value": _number(m.value), "observed": fmt_number(m.value, m.unit), "target": _number(m.target),
                     "expected": fmt_target(m), "comparison": m.comparison, "status": m.status,
                     "label": status_label(m.status, m.target),
                     "definition": m.definition, "reason": (m.detail or {}).get("reason")}
                    for m in run.measurements]
    rto, rpo = run.measurement("rto_s"), run.measurement("rpo_s")
    return {
        "experiment": run.experiment, "kind": experiment_kind(run, run.experiment), "run_dir": run.run_dir.name,
        "title": run.result.title, "hypothesis": run.result.hypothesis,
        "method": method, "target": run.target, "target_detail": run.result.target_detail or None,
        "started_at": run.result.started_at, "ended_at": run.result.ended_at,
        "timeline": timeline, "measurements": measurements,
        "rto": fmt_number(rto.value, rto.unit) if rto else "not measured in this experiment",
        "rpo": fmt_number(rpo.value, rpo.unit) if rpo else "not measured in this experiment",
        "verdict": run.verdict, "verdict_word": run.verdict_word, "aborted_reason": run.result.aborted_reason,
        "deviations": list(run.result.deviations), "manifest_sha256": run.manifest_sha256,
        "signed": run.signed, "harness": run.result.harness,
        "tool_versions": run.result.tool_versions,
    }


def findings(sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Breached and inconclusive measurements, aborts, deviations and unsealed runs, each with a remediation hint."""
    found: list[dict[str, Any]] = []

    def add(section: dict[str, Any], severity: str, what: str, remediation: str) -> None:
        found.append({"id": f"F-{len(found) + 1}", "experiment": section["experiment"],
                      "run_dir": section.get("run_dir"), "severity": severity, "finding": what,
                      "remediation": remediation})

    for s in sections:
        if s["verdict"] == "skipped":
            add(s, "low", f"not run: {s['skipped_reason']}", "Run it where it applies (another target), or take it "
                "out of this target's suite; a skipped experiment evidences nothing.")
        if s["verdict"] == "aborted":
            add(s, "high", f"run aborted: {s.get('aborted_reason') or 'no reason recorded'}",
                "Fix the cause of the abort and re-run the experiment; an aborted run evidences nothing.")
        for m in s["measurements"]:
            if m["status"] == "breached":
                hint = next((h for prefix, h in REMEDIATION.items() if m["measure"].startswith(prefix)),
                            "Investigate the breach and re-run the experiment.")
                severity = next((v for prefix, v in SEVERITY.items() if m["measure"].startswith(prefix)), "medium")
                add(s, severity, f"{m['name']} = {m['observed']}, target {m['expected']}: breached", hint)
            elif m["status"] == "inconclusive":
                add(s, "medium", f"{m['name']} could not be measured ({m.get('reason') or 'no reason recorded'})",
                    "Fix the instrumentation (e.g. read-back of acknowledged writes after recovery) and re-run; "
                    "an inconclusive measurement is not evidence that the objective is met.")
        for d in s["deviations"]:
            add(s, "medium", f"deviation: {d}", "Explain or remove the deviation and re-run the experiment as planned.")
        if s["run_dir"] and not s["manifest_sha256"]:
            add(s, "medium", "never sealed: the run directory has no MANIFEST.sha256, so its integrity cannot be "
                             "shown",
                "Seal runs (the harness writes the manifest at the end of every run); re-run the experiment.")
    return found


def coverage_matrix(sections: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows per experiment run, a cell per control, and per control the runs that evidence it."""
    rows = []
    by_control: dict[str, list[dict[str, str]]] = {cid: [] for cid in CONTROL_IDS}
    for s in sections:
        mapped = dict(COVERAGE.get(s["kind"] or "", []))
        rows.append({"experiment": s["experiment"], "run_dir": s["run_dir"], "verdict": s["verdict"],
                     "controls": {cid: mapped.get(cid) for cid in CONTROL_IDS if cid in mapped}})
        for cid in mapped:
            by_control[cid].append({"experiment": s["experiment"], "verdict": s["verdict"]})
    summary = {}
    for cid, runs in by_control.items():
        if not runs:
            state = "not evidenced by this game-day"
        elif all(r["verdict"] == "pass" for r in runs):
            state = "evidenced: every mapped experiment passed"
        elif any(r["verdict"] == "pass" for r in runs):
            state = "partly evidenced: exceptions in the findings"
        else:
            state = "not evidenced: every mapped experiment failed, was inconclusive or aborted"
        summary[cid] = {"state": state, "runs": runs}
    return {"controls": [{"id": c.id, "framework": c.framework, "ref": c.ref, "title": c.title} for c in CONTROLS],
            "rows": rows, "summary": summary}


def overall_verdict(verdicts: list[str]) -> str:
    """pass only if every experiment run passed (skipped ones aside); otherwise the worst: aborted > fail >
    inconclusive."""
    verdicts = [v for v in verdicts if v != "skipped"]
    if not verdicts:
        return "inconclusive"
    for worst in ("aborted", "fail", "inconclusive"):
        if worst in verdicts:
            return worst
    return "pass"


def _target_details(sections: list[dict[str, Any]]) -> dict[str, Any]:
    """Target detail per experiment, or once under "all experiments" when every run had the same."""
    details = {s["experiment"]: s.get("target_detail") for s in sections if s.get("target_detail")}
    distinct = {json.dumps(d, sort_keys=True, default=str) for d in details.values()}
    if len(distinct) == 1:
        return {"all experiments": next(iter(details.values()))}
    return details


def ledger_status(reports_dir: Path | None) -> dict[str, Any] | None:
    """The ledger as this report found it: its head (to keep where the run host cannot rewrite it), whether the
    chain and the runs agree, and every run that started but was never sealed (a crash is reported, not omitted)."""
    if reports_dir is None or not (reports_dir / LEDGER).is_file():
        return None
    found = verify_ledger(reports_dir)
    return {"path": str(reports_dir / LEDGER), "head": found.head, "entries": found.entries, "ok": found.ok,
            "problems": found.problems, "never_sealed": found.never_sealed}


def build_compliance(entries: list[GamedayEntry], settings: Settings, suite: str, report_id: str,
                     now: datetime, reports_dir: Path | None = None) -> dict[str, Any]:
    """The compliance report as data (also written as compliance.json); `reports_dir` holds the ledger."""
    sections = [_experiment_section(e) for e in entries]
    ledger = ledger_status(reports_dir)
    found = findings(sections)
    reported = {Path(s["run_dir"]).name for s in sections if s.get("run_dir")}  # these have their own findings
    for name in (n for n in (ledger or {}).get("never_sealed", []) if n not in reported):
        found.append({"id": f"F-{len(found) + 1}", "experiment": name, "run_dir": name, "severity": "medium",
                      "finding": "the ledger records this run's start, but it was never sealed",
                      "remediation": "Find out why the run stopped (crash, kill, host loss), roll back its faults "
                                     "with `resilience rollback`, and re-run the experiment."})
    for problem in (ledger or {}).get("problems", []):
        found.append({"id": f"F-{len(found) + 1}", "experiment": "ledger", "run_dir": None, "severity": "high",
                      "finding": f"ledger: {problem}",
                      "remediation": "Treat the evidence named here as altered until explained; compare with a "
                                     "ledger head kept outside the run host."})
    scope, unknown = framework_scope(settings.evidence.frameworks_in_scope)
    harness = next((s["harness"] for s in sections if s.get("harness")), {}) or {"version": __version__}
    tools: dict[str, Any] = {}
    for s in sections:
        tools.update(s.get("tool_versions") or {})
    targets = sorted({str(s["target"]) for s in sections if s.get("target")})
    t = settings.targets
    return {
        "schema_version": COMPLIANCE_SCHEMA_VERSION,
        "kind": "resilience-compliance-report",
        "report_id": report_id,
        "suite": suite,
        "overall_verdict": overall_verdict([s["verdict"] for s in sections]),
        "metadata": {
            "harness_version": harness.get("version", __version__),
            "harness_git_commit": harness.get("git_commit"),
            "tool_versions": tools,
            "generated_at_utc": now.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "generated_at_ist": now.astimezone(IST).isoformat(timespec="seconds") + " (IST, Asia/Kolkata)",
            "targets": targets or ["none (no run completed)"],
            "target_details": _target_details(sections),
            "environment": {"host_os": platform.platform(), "python": platform.python_version(),
                            "settings_source": settings.source},
        },
        "scope": {
            "experiments": [e.experiment for e in entries],
            "frameworks": scope,
            "unknown_frameworks_in_settings": unknown,
            "statement": "Frameworks marked 'in scope' are part of the audit scope set in the harness settings "
                         "(evidence.frameworks_in_scope); for the others this report supports a readiness claim only.",
        },
        "objectives": [
            {"objective": "Recovery time (RTO)", "measure": "rto_s", "target": f"<= {t.rto_s:g} s"},
            {"objective": "Recovery point (RPO)", "measure": "rpo_s", "target": f"<= {t.rpo_s:g} s"},
            {"objective": "Acknowledged writes lost", "measure": "lost_writes", "target": "0"},
            {"objective": "Availability", "measure": "availability", "target": f">= {t.availability * 100:g} %"},
            {"objective": "P99 latency", "measure": "p99_ms", "target": f"<= {t.p99_ms:g} ms"},
            {"objective": "Autoscaling reaction", "measure": "autoscale_s", "target": f"<= {t.autoscale_s:g} s"},
            {"objective": "Healthy hold window for RTO", "measure": "rto_hold_s",
             "target": f"{t.rto_hold_s:g} s at >= {t.rto_success_ratio * 100:g} % success per second"},
        ],
        "objectives_note": "Targets as fixed in the settings before the game-day; an experiment may override a "
                           "target, and the target each run was judged against is quoted in its own section.",
        "measurement_statement": "Every figure is measured from the run's recorded history and quoted with its "
                                 "definition; nothing is estimated. A figure that could not be measured is shown "
                                 "as 'not measured' and makes its run inconclusive, never a pass.",
        "experiments": sections,
        "deviations": [{"experiment": s["experiment"], "deviation": d} for s in sections for d in s["deviations"]],
        "findings": found, "ledger": ledger, "coverage": coverage_matrix(sections),
        "backup_and_dr": backup_and_dr(e.run_dir for e in entries if e.skipped is None),
        "detection": detection_evidence(e.run_dir for e in entries if e.skipped is None),  # compliance_detection.py
        "sign_off": [{"role": role, "name": "", "date": "", "signature": ""} for role in ("Reviewer", "Approver")],
    }


def write_compliance_json(model: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(model, indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_compliance(report_dir: Path, model: dict[str, Any]) -> list[Path]:
    """compliance.json, compliance.html and compliance.pdf in report_dir (model from build_compliance)."""
    return [write_compliance_json(model, report_dir / "compliance.json"),
            write_compliance_html(model, report_dir / "compliance.html"),
            write_compliance_pdf(model, report_dir / "compliance.pdf")]
