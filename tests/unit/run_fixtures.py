"""The hand-built run directories of tests/fixtures/runs/generate.py, shared by the unit test modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

GENERATOR = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "generate.py"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fixture_runs", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
