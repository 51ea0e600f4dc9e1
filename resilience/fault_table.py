"""The fault registry joined with what each target supports: `resilience faults` and its --json."""

from __future__ import annotations

from typing import Any

from .fault_registry import FAULTS, Argument

SCHEMA_VERSION = 1


def faults_json() -> dict[str, Any]:
    """Every fault, its arguments (type, bounds, default) and, per target, supported or why not."""
    from .targets import COMPOSITIONS, support_table
    support = support_table()
    return {
        "schema_version": SCHEMA_VERSION,
        "targets": {name: c.description for name, c in COMPOSITIONS.items()},
        "faults": [{**fault.to_json(),
                    "targets": {target: {"supported": why is None, **({"why_not": why} if why else {})}
                                for target, table in support.items() for why in [table[name]]}}
                   for name, fault in FAULTS.items()],
    }


def _argument_line(arg: Argument) -> str:
    kind = "|".join(arg.choices) if arg.choices else arg.kind
    bounds = f", {arg.bounds()}" if arg.kind in ("integer", "number") else ""
    default = f", default {arg.default!r}" if arg.default is not None else ""
    return f"    {arg.name} ({kind}{bounds}{default}): {arg.help}"


def faults_text() -> str:
    """The same, for people: each fault, its arguments, then one line per target."""
    data = faults_json()
    lines = []
    for fault in data["faults"]:
        lines.append(f"{fault['name']}: {fault['summary']}")
        lines += [_argument_line(arg) for arg in FAULTS[fault["name"]].arguments]
        for target, support in fault["targets"].items():
            lines.append(f"    on {target:<10} " + ("yes" if support["supported"] else f"no: {support['why_not']}"))
        lines.append("")
    lines.append("Targets: " + "; ".join(f"{name}: {text}" for name, text in data["targets"].items()))
    return "\n".join(lines)
