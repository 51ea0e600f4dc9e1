"""The backend-calls plot (retry amplification on the timeline) and the run phases' shading on every plot."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import matplotlib.pyplot as plt

from resilience.checkers.measurement import judge
from resilience.reports.plots import backend_plot
from resilience.reports.run import RunView

PHASES = {"steady": (0.0, 10.0), "fault": (10.0, 25.0), "recovery": (25.0, 35.0)}


def run_with(values: dict[str, float]) -> RunView:
    found = {name: judge(name, value, "", None) for name, value in values.items()}
    return cast(RunView, SimpleNamespace(fault={"injected_t": 10.0}, rto_s=lambda: None, events=lambda: [],
                                         phases=PHASES, measurement=found.get))


def test_each_phase_gets_its_calls_per_request_with_its_pool_wait_and_bypasses_and_the_fault_is_shaded() -> None:
    plot = backend_plot(run_with({"backend_calls_per_request_steady": 1.4, "backend_calls_per_request_fault": 3.9,
                                  "pool_wait_ms_fault": 60.7, "cache_bypass_fault": 101.0,
                                  "backend_calls_per_request_recovery": 1.39}))
    assert plot is not None
    ax = plot.figure.axes[0]
    lines = [segment for collection in ax.collections if hasattr(collection, "get_segments")
             for segment in collection.get_segments()]
    assert [(round(s[0][0]), round(s[1][0]), s[0][1]) for s in lines] == [(0, 10, 1.4), (10, 25, 3.9), (25, 35, 1.39)]
    fault_note = next(t.get_text() for t in ax.texts if t.get_text().startswith("3.90"))
    assert "pool wait 60.70 ms" in fault_note and "101 cache bypasses" in fault_note
    shaded = [p for p in ax.patches if p.get_label() == "fault phase"]  # the run phases' shading (PHASE_COLOURS)
    assert shaded, "the fault phase is not shaded"
    plt.close(plot.figure)


def test_no_figures_no_plot() -> None:
    assert backend_plot(run_with({"p99_ms": 20.0})) is None
