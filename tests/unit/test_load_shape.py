"""Load stages and settings: parsing, validation, and what the shape asks for at a time."""

from __future__ import annotations

import io
import json
import math

import pytest

from resilience.errors import UserError
from resilience.history import Record
from resilience.load.shape import (FOREVER, LoadSettings, Stage, parse_duration, parse_stages, stage_index_at,
                                   total_duration, users_at)
from resilience.load.recorder import Recorder, op_name


@pytest.mark.parametrize("text, seconds", [
    ("20s", 20.0), ("20", 20.0), ("2m", 120.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0),
    ("1.5s", 1.5), (" 10s ", 10.0), ("inf", FOREVER),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "10x", "ten", "-5s", "5 s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UserError, match="duration"):
        parse_duration(text)


def test_parse_compact_stages_with_default_and_explicit_spawn_rates() -> None:
    assert parse_stages("20s:50,30s:250@50,20s:50", default_spawn_rate=5) == [
        Stage(20.0, 50, 5.0), Stage(30.0, 250, 50.0), Stage(20.0, 50, 5.0)]


def test_parse_stage_mappings() -> None:
    stages = parse_stages([{"duration_s": 10, "users": 5}, {"duration": "1m", "users": "7", "spawn_rate": 2},
                           {"duration_s": None, "users": 1}], default_spawn_rate=3)
    assert stages == [Stage(10.0, 5, 3.0), Stage(60.0, 7, 2.0), Stage(FOREVER, 1, 3.0)]


def test_stage_json_round_trip_keeps_forever() -> None:
    stages = [Stage(10.0, 5, 3.0), Stage(FOREVER, 1, 3.0)]
    assert parse_stages([s.to_json() for s in stages]) == stages
    assert stages[1].to_json()["duration_s"] is None  # JSON has no infinity


def test_no_stages() -> None:
    assert parse_stages(None) == []
    with pytest.raises(UserError, match="no stages"):
        parse_stages(" , ")


@pytest.mark.parametrize("spec, message", [
    ("20s50", "has no ':'"),
    ("20s:fifty", "stage 1 users must be a number"),
    ("20s:2.5", "whole number"),
    ("10s:5,0s:5", "stage 2 must last longer than 0 s"),
    ("10s:-1", "use 0 or more"),
    ("10s:5@0", "spawn rate"),
    ("10s:5@x", "spawn rate must be a number"),
    ("inf:5,10s:5", "lasts forever"),
    ([{"users": 5}], "needs 'duration_s'"),
    ([{"duration_s": 5, "users": 5, "rate": 1}], "unknown field"),
    ([5], "must be a mapping"),
    ([{"duration_s": True, "users": 5}], "must be a number"),
    (42, "expected a list of stages"),
])
def test_bad_stages_name_the_stage_and_the_fix(spec: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_stages(spec)  # type: ignore[arg-type]


def test_users_at_follows_the_stages_and_is_zero_outside() -> None:
    stages = parse_stages("10s:50,20s:250,10s:50")
    assert total_duration(stages) == 40.0
    assert [users_at(stages, t) for t in (-1, 0, 9.99, 10, 29.99, 30, 39.9, 40, 100)] == [
        0, 50, 50, 250, 250, 50, 50, 0, 0]
    assert [stage_index_at(stages, t) for t in (-0.1, 0, 15, 35, 40)] == [None, 0, 1, 2, None]


def test_a_last_stage_that_lasts_forever() -> None:
    stages = parse_stages("5s:10,inf:20")
    assert math.isinf(total_duration(stages))
    assert users_at(stages, 1e9) == 20


def test_settings_defaults_and_effective_stages() -> None:
    settings = LoadSettings()
    assert (settings.user_class, settings.timeout_s, settings.wait_min_s, settings.wait_max_s) == (
        "LunchRushUser", 2.0, None, None)  # None: the user class's own think time
    assert settings.effective_stages() == [Stage(FOREVER, 50, settings.spawn_rate)]
    staged = LoadSettings(stages=tuple(parse_stages("5s:3")))
    assert staged.effective_stages() == [Stage(5.0, 3, 10.0)]


@pytest.mark.parametrize("kwargs, message", [
    ({"users": -1}, "'users'"),
    ({"spawn_rate": 0}, "'spawn_rate'"),
    ({"timeout_s": 0}, "'timeout_s'"),
    ({"wait_min_s": 2.0, "wait_max_s": 1.0}, "'wait_min_s'"),
    ({"user_class": "lunch rush"}, "'user_class'"),
    ({"locustfile": ""}, "'locustfile'"),
    ({"stages": (Stage(0, 1, 1),)}, "stage 1 must last longer"),
])
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        LoadSettings(**kwargs)  # type: ignore[arg-type]


def test_settings_from_mapping() -> None:
    settings = LoadSettings.from_mapping({"users": 20, "spawn_rate": 4, "stages": "10s:5,10s:8@2",
                                          "user_class": "WriteHeavyUser", "timeout_s": 1}, "exp.yaml: load")
    assert settings.stages == (Stage(10.0, 5, 4.0), Stage(10.0, 8, 2.0))
    assert settings.user_class == "WriteHeavyUser" and settings.timeout_s == 1.0
    assert settings.to_json()["stages"][1] == {"duration_s": 10.0, "users": 8, "spawn_rate": 2.0}
    with pytest.raises(UserError, match=r"exp.yaml: load: unknown load setting\(s\) \['user'\]"):
        LoadSettings.from_mapping({"user": 5}, "exp.yaml: load")
    with pytest.raises(UserError, match="exp.yaml: load: 'users' must be a whole number"):
        LoadSettings.from_mapping({"users": 2.5}, "exp.yaml: load")


def test_op_name() -> None:
    assert op_name("GET", "GET /menu") == "GET /menu"
    assert op_name("GET", "/menu") == "GET /menu"
    assert op_name("POST", None) == "POST"


class _Response:
    def __init__(self, status_code: int, body: object) -> None:
        self.status_code = status_code
        self._body = body

    def json(self) -> object:
        if isinstance(self._body, Exception):
            raise self._body
        return self._body


def test_recorder_rows_and_window() -> None:
    now = [100.0]
    out = io.StringIO()
    recorder = Recorder(out, origin_monotonic=90.0, clock=lambda: now[0])
    recorder.users_changed(5)
    recorder.on_request("POST", "POST /orders", 20.0, _Response(201, {"order_id": "o1", "seq": 7}), {"key": "r-1-1"})
    recorder.on_request("POST", "POST /orders", 10.0, _Response(201, ValueError("not json")), {"key": "r-1-2"})
    recorder.on_request("GET", "GET /menu", 5.0, _Response(503, None), {}, exception=RuntimeError("503 Server Error"))
    assert out.getvalue() == ""  # buffered until flush
    recorder.flush()
    rows = [Record.from_row(json.loads(line)) for line in out.getvalue().splitlines()]
    assert rows[0] == Record(10.0, "load", "users", "info", None, None, {"users": 5})
    assert rows[1] == Record(9.98, "load", "POST /orders", "ok", 0.02, "r-1-1", {"order_id": "o1", "seq": 7})
    assert rows[2].status == "fail" and rows[2].detail == {"code": 201, "error": "2xx without order_id and seq"}
    assert rows[3] == Record(9.995, "load", "GET /menu", "fail", 0.005, None, {"code": 503})
    assert recorder.requests == 3
    window = recorder.window()
    assert window == {"rps": 0.6, "error_pct": pytest.approx(66.667), "p99_ms": 20.0}
    now[0] = 106.0  # everything is older than 5 s now
    assert recorder.window() == {"rps": 0.0, "error_pct": 0.0, "p99_ms": None}


def test_ramp_spreads_the_change_over_the_stage() -> None:
    from resilience.load.shape import ramp_rate
    stages = parse_stages("2m:10000@ramp,5m:10000,1m:1000@ramp")
    assert stages[0].spawn_rate == pytest.approx(10000 / 120)
    assert stages[1].spawn_rate == 10.0  # the default
    assert stages[2].spawn_rate == pytest.approx(9000 / 60)
    assert parse_stages([{"duration": "10s", "users": 0, "spawn_rate": "ramp"}])[0].spawn_rate == 0.1
    assert ramp_rate(5, 5, 10.0) == 0.1
    with pytest.raises(UserError, match="ramp"):
        parse_stages([{"duration_s": None, "users": 10, "spawn_rate": "ramp"}])
    with pytest.raises(UserError, match="spawn rate"):
        parse_stages("10s:5@rampage")


def test_workers_setting_and_its_default() -> None:
    from resilience.load.shape import default_workers
    assert default_workers(2, stack_here=True) == 1
    assert default_workers(8, stack_here=True) == 6
    assert default_workers(2, stack_here=False) == 2
    assert LoadSettings.from_mapping({"workers": 3}).worker_count() == 3
    assert LoadSettings().worker_count() == 1
    for bad in (0, -1, 65, True, 2.5):
        with pytest.raises(UserError, match="workers"):
            LoadSettings.from_mapping({"workers": bad}) if not isinstance(bad, bool) else LoadSettings(workers=bad)


def test_generator_health_figures() -> None:
    from resilience.load.health import GeneratorHealth, saturated
    wall, cpu = [0.0], [0.0]
    health = GeneratorHealth(clock=lambda: wall[0], cpu_clock=lambda: cpu[0])
    wall[0], cpu[0] = 2.0, 1.5
    health.lag(0.004)
    health.lag(0.012)
    assert health.take() == {"cpu_pct": 75.0, "lag_ms": 12.0, "gc_ms": 0.0}
    wall[0], cpu[0] = 4.0, 3.5
    assert health.take() == {"cpu_pct": 100.0, "lag_ms": 0.0, "gc_ms": 0.0}
    assert saturated({"cpu_pct": 100.0}) and not saturated({"cpu_pct": 50.0, "lag_ms": 10.0})


def test_think_time_is_both_ends_or_neither() -> None:
    from resilience.launcher import parse_think_time
    with pytest.raises(UserError, match="both 'wait_min_s' and 'wait_max_s'"):
        LoadSettings(wait_min_s=1.0)
    assert LoadSettings.from_mapping({"wait_min_s": None, "wait_max_s": None}).wait_min_s is None
    assert parse_think_time("10-50") == (10.0, 50.0)
    assert parse_think_time("class") == (None, None)
    for bad in ("10", "ten-20", "-"):
        with pytest.raises(UserError, match="--think-time"):
            parse_think_time(bad)


def test_an_experiment_naming_a_user_class_the_locustfile_lacks_is_refused() -> None:
    from resilience import experiments
    with pytest.raises(UserError, match="user class 'Nope' is not defined in .*lunch_rush.py .*LunchBreakStudent"):
        experiments.load("pod-kill", "short", load_overrides={"user_class": "Nope"})
    spec = experiments.load("traffic-spike", "short", load_overrides={"user_class": "LunchBreakStudent",
                                                                       "wait_min_s": None, "wait_max_s": None,
                                                                       "workers": 2})
    assert (spec.load.user_class, spec.load.wait_min_s, spec.load.workers) == ("LunchBreakStudent", None, 2)
