"""The JSON report: result.json plus report metadata (schema in docs/reports.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .. import __version__
from ..result_file import RESULT_SCHEMA_VERSION
from .content import summary_counts
from .run import RunView

REPORT_KIND = "resilience-run-report"


def _finite(value: Any) -> Any:
    """Strict JSON has no Infinity: an unbounded measurement becomes the string "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else None)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def report_json(run: RunView) -> dict[str, Any]:
    data = run.result.to_json()
    data["schema_version"] = RESULT_SCHEMA_VERSION
    data["report"] = {
        "kind": REPORT_KIND,
        "schema_version": RESULT_SCHEMA_VERSION,
        "rendered_by": f"resilience {__version__}",
        "source": "result.json",
        "run_dir_name": run.run_dir.name,
        "summary": summary_counts(run),
    }
    return _finite(data)


def write_json(run: RunView, path: Path) -> Path:
    path.write_text(json.dumps(report_json(run), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
