"""The fault registry joined with what each target supports: `resilience faults` and its --json."""

from __future__ import annotations

from typing import Any

from .config import Settings
from .fault_registry import FAULTS, Argument

SCHEMA_VERSION = 1

# (target, fault) -> the arguments or settings a supported fault needs there (the target refuses the rest)
CONDITIONS = {
    ("kubernetes", "fail_over_database"): "mode kill only, and only with kubernetes.database: cloudnativepg",
    ("aws", "fail_over_database"): "mode kill only (an RDS cluster failover)",
    ("aws", "stop_cache"): "mode failover only (ElastiCache TestFailover); an outage is refused",
}


def _settings_refusal(target: str, fault: str, settings: Settings) -> str | None:
    """Why these settings make a target refuse a fault it supports in general (the dry-run would say the same)."""
    if (target, fault) == ("kubernetes", "fail_over_database") and settings.kubernetes.database != "cloudnativepg":
        return (f"with kubernetes.database: {settings.kubernetes.database} (from {settings.source}) PostgreSQL is "
                f"AWS RDS, not a pod: use --target aws, or set kubernetes.database: cloudnativepg for an in-cluster "
                f"CloudNativePG cluster")
    return None


def faults_json(settings: Settings | None = None) -> dict[str, Any]:
    """Every fault, its arguments (type, bounds, default) and, per target, supported or why not (with `settings`)."""
    from .targets import COMPOSITIONS, support_table
    settings = settings or Settings()
    support = support_table()

    def on(target: str, name: str) -> dict[str, Any]:
        why = support[target][name] or _settings_refusal(target, name, settings)
        condition = CONDITIONS.get((target, name))
        return {"supported": why is None, **({"why_not": why} if why else {}),
                **({"condition": condition} if condition and why is None else {})}

    return {
        "schema_version": SCHEMA_VERSION,
        "targets": {name: c.description for name, c in COMPOSITIONS.items()},
        "faults": [{**fault.to_json(), "targets": {target: on(target, name) for target in support}}
                   for name, fault in FAULTS.items()],
    }


def _argument_line(arg: Argument) -> str:
    kind = "|".join(arg.choices) if arg.choices else arg.kind
    bounds = f", {arg.bounds()}" if arg.kind in ("integer", "number") else ""
    default = f", default {arg.default!r}" if arg.default is not None else ""
    return f"    {arg.name} ({kind}{bounds}{default}): {arg.help}"


def faults_text(settings: Settings | None = None) -> str:
    """The same, for people: each fault, its arguments, then one line per target."""
    data = faults_json(settings)
    lines = []
    for fault in data["faults"]:
        lines.append(f"{fault['name']}: {fault['summary']}")
        lines += [_argument_line(arg) for arg in FAULTS[fault["name"]].arguments]
        for target, support in fault["targets"].items():
            said = (f"yes, {support['condition']}" if "condition" in support else "yes") if support["supported"] \
                else f"no: {support['why_not']}"
            lines.append(f"    on {target:<10} {said}")
        lines.append("")
    lines.append("Targets: " + "; ".join(f"{name}: {text}" for name, text in data["targets"].items()))
    return "\n".join(lines)
