"""`resilience sweep`: sizes, the step experiments, the breaking point and the plot, with the runs faked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resilience.config import Targets
from resilience.errors import UserError
from resilience.experiments import parse, resolve
from resilience.inputs import load_yaml
from resilience.sweep import SWEEPS, Point, breaking_point, parse_size, run_sweep, sizes, step_experiment, text

KIND = SWEEPS["delay-database"]


def test_sizes_and_units() -> None:
    assert parse_size("250ms", "ms") == 250 and parse_size("0.5s", "ms") == 500 and parse_size("40", "ms") == 40
    assert sizes(0, 500, 5) == [0, 100, 200, 300, 400, 500]
    with pytest.raises(UserError, match="not a size"):
        parse_size("fast", "ms")
    with pytest.raises(UserError, match="--to must be above --from"):
        sizes(500, 0, 5)


def test_a_step_is_the_catalogue_experiment_at_one_size_and_valid(tmp_path: Path) -> None:
    raw = load_yaml(resolve("slow-database"), "experiment")
    step = step_experiment(raw, KIND, 300)
    path = tmp_path / "step.yaml"
    spec = parse(step, path, "full")
    assert spec.name == "delay-database-300ms"
    [call] = spec.faults
    assert call.fault == "delay_network" and call.arguments["delay_ms"] == 300 and call.arguments["jitter_ms"] == 0
    assert spec.durations.fault_s == 10 and spec.load.users == 25  # the short profile's load
    assert raw["method"][0]["provider"]["arguments"]["delay_ms"] == 100  # the catalogue file is untouched


def test_the_breaking_point_is_the_first_size_over_a_limit() -> None:
    targets = Targets(p99_ms=200, availability=0.999)
    points = [Point(0, 60, 1.0), Point(100, 150, 1.0), Point(200, 260, 1.0), Point(300, 400, 0.9)]
    assert breaking_point(points, targets).size == 200  # type: ignore[union-attr]
    assert breaking_point([Point(0, 60, 1.0), Point(100, 150, 0.99)], targets).size == 100  # type: ignore[union-attr]
    assert breaking_point(points[:2], targets) is None


def test_a_sweep_runs_each_step_and_writes_its_result_and_plot(tmp_path: Path) -> None:
    ran: list[str] = []

    def fake_run(path: Path) -> dict[str, Any]:
        size = float(path.stem.split("-")[1].removesuffix("ms"))
        ran.append(path.name)
        return {"verdict": "pass", "run_dir": "", "measurements": [
            {"name": "p99_ms_fault", "value": 20 + 2.1 * size}, {"name": "availability_fault", "value": 1.0},
            {"name": "p99_ms_steady", "value": 55.0}, {"name": "availability_steady", "value": 1.0}]}
    raw = load_yaml(resolve("slow-database"), "experiment")
    result = run_sweep(KIND, sizes(0, 300, 3), fake_run, tmp_path / "sweep", Targets(), raw)
    assert ran == ["step-100ms.yaml", "step-200ms.yaml", "step-300ms.yaml"]  # size 0 runs nothing of its own
    assert [p["size"] for p in result["points"]] == [0, 100, 200, 300]
    assert result["points"][0]["p99_ms"] == 55.0 and "steady" in result["points"][0]["note"]
    assert result["breaking_point"] == 100  # 230 ms > 200 ms
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["breaking_point"] == 100
    assert "breaking point: 100 ms" in text(result)


def test_a_loss_sweep_replaces_the_delay_with_packet_loss_on_the_same_path(tmp_path: Path) -> None:
    kind = SWEEPS["loss-database"]
    raw = load_yaml(resolve("slow-database"), "experiment")
    spec = parse(step_experiment(raw, kind, 10), tmp_path / "step.yaml", "full")
    [call] = spec.faults
    assert call.fault == "drop_packets" and call.arguments["percent"] == 10 and call.arguments["path"] == "api-database"
    assert "delay_ms" not in call.arguments and spec.name == "loss-database-10pct"
    assert parse_size("20%", "%") == 20 and parse_size("5", "%") == 5
    with pytest.raises(UserError, match="not a size"):
        parse_size("20ms", "%")
    with pytest.raises(UserError, match="percentages"):
        sizes(0, 120, 4, kind)


def test_a_cpu_sweep_grows_harsher_as_the_share_falls_and_breaks_at_the_mildest_share_over_a_limit(
        tmp_path: Path) -> None:
    kind = SWEEPS["starve-cpu"]
    with pytest.raises(UserError, match="--to must be below --from"):
        sizes(10, 100, 3, kind)
    steps = sizes(100, 10, 3, kind)
    assert steps == [100, 70, 40, 10]
    ran: list[str] = []

    def fake_run(path: Path) -> dict[str, Any]:
        share = float(path.stem.split("-")[1].removesuffix("pct"))
        ran.append(path.name)
        return {"verdict": "pass", "run_dir": "", "measurements": [
            {"name": "p99_ms_fault", "value": 4000 / share}, {"name": "availability_fault", "value": 1.0},
            {"name": "p99_ms_steady", "value": 30.0}, {"name": "availability_steady", "value": 1.0}]}
    raw = load_yaml(resolve("cpu-starved-replicas"), "experiment")
    result = run_sweep(kind, steps, fake_run, tmp_path / "sweep", Targets(p99_ms=200), raw)
    assert ran == ["step-70pct.yaml", "step-40pct.yaml", "step-10pct.yaml"]  # 100 % starves nothing: no run
    assert result["points"][0]["size"] == 100 and "steady" in result["points"][0]["note"]
    assert result["breaking_point"] == 10  # 57 ms at 70 %, 100 ms at 40 %, 400 ms at 10 %


def test_a_bad_size_is_refused_before_any_step_runs(tmp_path: Path) -> None:
    kind = SWEEPS["starve-cpu"]
    ran: list[Path] = []
    raw = load_yaml(resolve("cpu-starved-replicas"), "experiment")
    with pytest.raises(UserError):
        run_sweep(kind, [100, 50, 0], lambda path: ran.append(path) or {}, tmp_path / "sweep", Targets(), raw)
    assert ran == []
