"""The platform's alert rules (deploy/monitoring/alerts.yaml), scaled down for the local stack.

Production windows (`for: 5m`, `rate(...[1m])`) outlast a one-minute experiment, so the
local stack loads the same rules with every duration divided by `SCALE` (ranges kept at
least `MIN_RANGE_S`, five scrapes, so `rate()` has points to work with). One file is the
truth; the local profile is derived from it, never edited by hand.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ...errors import UserError

RULES_PATH = Path(__file__).resolve().parents[3] / "deploy" / "monitoring" / "alerts.yaml"
SCALE = 30  # local profile: every `for:` and range divided by 30 (5m -> 10s, 1m -> 2s)
MIN_RANGE_S = 5.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_RANGE = re.compile(r"\[((?:\d+(?:ms|s|m|h|d))+)\]")


def seconds(duration: str) -> float:
    """A Prometheus duration ("1m30s", "5m", "500ms") in seconds."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise UserError(f"{duration!r} is not a Prometheus duration (e.g. 30s, 5m, 1h30m); fix the rules file.")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def duration(value_s: float) -> str:
    """Seconds as a Prometheus duration, in whole milliseconds."""
    ms = max(0, round(value_s * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def load(path: Path = RULES_PATH) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read the alert rules {path}: {exc}. Restore it from the repository.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise UserError(f"{path} is not a Prometheus rules file (no 'groups' list).")
    return doc


def scaled(doc: dict[str, Any], scale: float = SCALE, min_range_s: float = MIN_RANGE_S) -> dict[str, Any]:
    """A copy of the rules with every `for:` divided by `scale` and every range too (at least `min_range_s`)."""
    def scale_range(match: re.Match[str]) -> str:
        return f"[{duration(max(min_range_s, seconds(match.group(1)) / scale))}]"

    groups = []
    for group in doc["groups"]:
        rules = []
        for rule in group.get("rules", []):
            rule = dict(rule)
            rule["expr"] = _RANGE.sub(scale_range, str(rule["expr"]))
            if "for" in rule:
                rule["for"] = duration(seconds(str(rule["for"])) / scale)
            rules.append(rule)
        groups.append({**group, "rules": rules})
    return {**doc, "groups": groups}


def windows(doc: dict[str, Any]) -> dict[str, float]:
    """Each alert's `for:` window in seconds (0 when it has none)."""
    return {str(rule["alert"]): seconds(str(rule.get("for", "0s")))
            for group in doc["groups"] for rule in group.get("rules", []) if "alert" in rule}


def render(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)
