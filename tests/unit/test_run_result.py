"""RunResult: result.json typed, read back exactly; the fixture runs recheck as they did before it existed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from resilience.launcher import json_summary as _json_summary
from resilience.errors import UserError
from resilience.history import FAULT, History, Record
from resilience.recheck import recheck
from resilience.reports.content import event_rows
from resilience.reports.run import load_run
from resilience.results import RESULT_SCHEMA_VERSION, RunResult, read_result
from run_fixtures import GENERATOR, load_generator

# recheck() of every fixture run, recorded before RunResult and the fault-step completion records existed
RECHECKED = json.loads((GENERATOR.parent / "rechecked.json").read_text())


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    return load_generator().make_runs(tmp_path)


def stored(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def test_every_fixture_result_reads_back_to_the_same_keys_values_and_order(runs: dict[str, Path]) -> None:
    assert set(runs) == set(RECHECKED)
    for kind, run_dir in runs.items():
        data = stored(run_dir)
        again = RunResult.from_json(data).to_json()
        assert again == data and list(again) == list(data), kind
        assert read_result(run_dir).to_json() == data


def test_attributes_are_typed_and_keys_an_older_harness_did_not_write_stay_absent(runs: dict[str, Path]) -> None:
    result = read_result(runs["aborted"])
    assert result.verdict == "aborted" and result.experiment == "redis-outage" and result.fault is None
    assert result.measurements[0].name == "availability" and result.deviations == ()
    assert {"profile", "error"} <= result.absent and result.profile is None and result.error is None
    assert "profile" not in result.to_json()


def test_unknown_keys_are_kept_and_an_unbounded_value_is_infinity_in_between(runs: dict[str, Path]) -> None:
    data = stored(runs["fail"])
    data["future_field"] = {"x": 1}
    data["measurements"][0]["value"] = "inf"
    result = RunResult.from_json(data)
    assert math.isinf(result.measurements[0].value or 0.0) and result.extra == {"future_field": {"x": 1}}
    assert result.to_json() == data
    assert json.loads(json.dumps(_json_summary(result)))["measurements"][0]["value"] == "inf"


@pytest.mark.parametrize("key, value, message", [
    ("verdict", 3, "'verdict' must be a string"),
    ("deviations", "none", "'deviations' must be a list"),
    ("fault", [], "'fault' must be an object or null"),
    ("measurements", [{"name": "x", "colour": "red"}], "a measurement has unexpected fields"),
    ("schema_version", 2, "schema_version 2 is not supported"),
])
def test_a_field_of_the_wrong_type_is_refused_naming_it(runs: dict[str, Path], key: str, value: object,
                                                        message: str) -> None:
    data = stored(runs["pass"])
    data[key] = value
    with pytest.raises(UserError, match=message):
        RunResult.from_json(data, "somewhere/result.json")


def test_the_cli_summary_uses_the_one_schema_version(runs: dict[str, Path]) -> None:
    summary = _json_summary(read_result(runs["pass"]))
    assert summary["schema_version"] == RESULT_SCHEMA_VERSION == stored(runs["pass"])["schema_version"]
    assert list(summary["measurements"][0]) == ["name", "value", "unit", "target", "status"]


def test_every_fixture_run_rechecks_as_it_did_before(runs: dict[str, Path]) -> None:
    for kind, run_dir in runs.items():
        result, same = recheck(run_dir)
        figures = result.to_json()["measurements"]
        assert (result.verdict, same, figures) == (RECHECKED[kind]["verdict"], RECHECKED[kind]["same"],
                                                   RECHECKED[kind]["measurements"]), kind


def test_fault_step_completion_records_change_no_measurement(runs: dict[str, Path]) -> None:
    """`inject-done` / `rollback-done` (a step's end, minutes after its start for a drain) are not measured from."""
    for kind, run_dir in runs.items():
        path = run_dir / "history.jsonl"
        history = History.load(path)
        steps = [r for r in history.records if r.source == FAULT]
        for r in steps:
            history.append(Record(r.t + 7.5, FAULT, f"{r.op}-done", r.status, None, None,
                                  {"capability": (r.detail or {}).get("capability"), "seconds": 7.5}))
        history.dump(path)
        result, _ = recheck(run_dir)
        assert result.to_json()["measurements"] == RECHECKED[kind]["measurements"], kind
        shown = [(row.op, row.status) for row in event_rows(load_run(run_dir))[0] if row.source == FAULT]
        assert shown == [] if not steps else [("inject", "ok"), ("inject-done", "ok"), ("rollback", "ok"),
                                              ("rollback-done", "ok")], kind  # the report's event log lists them
