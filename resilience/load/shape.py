"""The load shape: stages of (duration, users, spawn rate), and the load settings.

Pure data and parsing, no Locust: the harness imports this module, and the
Locust process (resilience.load.worker) receives the stages as JSON.

A stage holds `users` users for `duration_s` seconds; Locust ramps to that
count at `spawn_rate` users per second when the stage starts. The last stage
may last forever (`duration_s = inf`): the load then runs until it is stopped,
which is what an experiment wants when it does not know how long it will take.

Compact form, as on a command line: "20s:50,30s:250@50,20s:50"
(duration:users[@spawn_rate]); durations take ms, s, m or h ("1m30s", "90",
"inf"). A spawn rate left out is the settings' default spawn rate. `@ramp`
spreads the change over the whole stage: "2m:10000@ramp" goes from the
previous stage's users (0 before the first) to 10,000 in two minutes, a steady
ramp as at a lunch bell, instead of a burst followed by a hold.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import UserError

DEFAULT_LOCUSTFILE = "scenarios/lunch_rush.py"
DEFAULT_USER_CLASS = "LunchRushUser"
DEFAULT_SPAWN_RATE = 10.0
FOREVER = math.inf
# Upper bounds: a typo (an extra zero, 1e9) must be refused, not run for a year or fork a million users.
MAX_USERS = 100_000
MAX_SPAWN_RATE = 100_000.0
MAX_DURATION_S = 24 * 3600.0  # any stage, hold or wait; only the documented "forever" stage is longer
MAX_WORKERS = 64
LOCAL_STACK_CORES = 2  # cores the local stack needs under load (API replicas, PostgreSQL, HAProxy)
IN_CLUSTER_WORKERS = 2  # worker pods when --workers is not given and the load runs in the cluster

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_STAGE_SYNTAX = "duration:users[@spawn_rate|@ramp], e.g. '20s:50,30s:250@50,20s:50' or '2m:10000@ramp,5m:10000'"
RAMP = "ramp"  # a spawn rate that spreads the change in users over the stage


@dataclass(frozen=True)
class Stage:
    """Hold `users` users for `duration_s` seconds, ramping at `spawn_rate` users/s."""

    duration_s: float
    users: int
    spawn_rate: float

    def to_json(self) -> dict[str, Any]:
        """JSON has no infinity: a stage that lasts forever is written with duration_s null."""
        return {"duration_s": None if math.isinf(self.duration_s) else self.duration_s,
                "users": self.users, "spawn_rate": self.spawn_rate}


def parse_duration(text: str, where: str = "duration") -> float:
    """Seconds from '20s', '1m30s', '500ms', '2h', a bare number of seconds, or 'inf'."""
    cleaned = text.strip().lower()
    if cleaned in ("inf", "forever"):
        return FOREVER
    if not cleaned:
        raise UserError(f"{where}: empty duration. Write it like '20s', '2m', '1m30s' or 'inf'.")
    seconds = 0.0
    position = 0
    while position < len(cleaned):
        match = _DURATION_PART.match(cleaned, position)
        if match is None:
            raise UserError(f"{where}: cannot read duration {text!r}. Write it like '20s', '2m', '1m30s', '500ms' or 'inf'.")
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not seconds <= MAX_DURATION_S:
        raise UserError(f"{where}: duration {text[:40]!r} is longer than 24 h. Use at most '24h', or 'inf' for a last "
                        f"stage that runs until the load is stopped.")
    return seconds


def parse_stages(spec: str | Sequence[Mapping[str, Any] | Stage] | None,
                 default_spawn_rate: float = DEFAULT_SPAWN_RATE, where: str = "load stages") -> list[Stage]:
    """Stages from the compact string form or a list of mappings (duration_s, users, spawn_rate).

    In a mapping, `duration` may be given instead of `duration_s` (as text, e.g. "30s"),
    and a null duration means forever. Raises UserError naming the stage and the fix.
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        items: list[Mapping[str, Any] | Stage] = [_stage_mapping_from_text(part, i, where)
                                                  for i, part in enumerate(spec.split(",")) if part.strip()]
        if not items:
            raise UserError(f"{where}: {spec!r} has no stages. Write them as {_STAGE_SYNTAX}.")
    elif isinstance(spec, (list, tuple)):
        items = list(spec)
    else:
        raise UserError(f"{where}: expected a list of stages or a string like {_STAGE_SYNTAX}; "
                        f"got {type(spec).__name__}.")
    stages: list[Stage] = []
    for i, item in enumerate(items):
        previous_users = stages[-1].users if stages else 0
        stages.append(item if isinstance(item, Stage)
                      else _stage_from_mapping(item, i, default_spawn_rate, where, previous_users))
    validate_stages(stages, where)
    return stages


def ramp_rate(from_users: int, to_users: int, duration_s: float) -> float:
    """The spawn rate that takes the whole stage to go from `from_users` to `to_users` (at least 0.1 per s)."""
    if math.isinf(duration_s):
        return DEFAULT_SPAWN_RATE
    return max(0.1, abs(to_users - from_users) / duration_s)


def validate_stages(stages: Sequence[Stage], where: str = "load stages") -> None:
    """Each stage positive and sane; only the last one may last forever."""
    for i, stage in enumerate(stages):
        name = f"{where}: stage {i + 1}"
        if not stage.duration_s > 0:
            raise UserError(f"{name} must last longer than 0 s; got {stage.duration_s}.")
        if not math.isinf(stage.duration_s) and stage.duration_s > MAX_DURATION_S:
            raise UserError(f"{name} lasts {stage.duration_s} s, more than 24 h. Shorten it, or make the last "
                            f"stage last forever (duration: inf).")
        if math.isinf(stage.duration_s) and i != len(stages) - 1:
            raise UserError(f"{name} lasts forever, so the stages after it would never run. "
                            f"Give it a duration, or make it the last stage.")
        if stage.users < 0:
            raise UserError(f"{name} has {stage.users} users; use 0 or more.")
        if stage.users > MAX_USERS:
            raise UserError(f"{name} has {stage.users} users; at most {MAX_USERS}.")
        if not 0 < stage.spawn_rate <= MAX_SPAWN_RATE:
            raise UserError(f"{name} has spawn rate {stage.spawn_rate}; it must be more than 0 and at most "
                            f"{MAX_SPAWN_RATE:.0f} users per second.")


def _stage_mapping_from_text(part: str, index: int, where: str) -> dict[str, Any]:
    text = part.strip()
    duration_text, sep, rest = text.partition(":")
    if not sep:
        raise UserError(f"{where}: stage {index + 1} {text!r} has no ':'. Write stages as {_STAGE_SYNTAX}.")
    users_text, at, rate_text = rest.partition("@")
    mapping: dict[str, Any] = {"duration_s": parse_duration(duration_text, f"{where}: stage {index + 1}"),
                               "users": _number(users_text, int, f"{where}: stage {index + 1} users")}
    if at:
        mapping["spawn_rate"] = (RAMP if rate_text.strip().lower() == RAMP
                                 else _number(rate_text, float, f"{where}: stage {index + 1} spawn rate"))
    return mapping


def _stage_from_mapping(item: Mapping[str, Any], index: int, default_spawn_rate: float, where: str,
                        previous_users: int = 0) -> Stage:
    name = f"{where}: stage {index + 1}"
    if not isinstance(item, Mapping):
        raise UserError(f"{name} must be a mapping with duration_s, users and optionally spawn_rate; got {item!r}.")
    unknown = set(item) - {"duration_s", "duration", "users", "spawn_rate"}
    if unknown:
        raise UserError(f"{name} has unknown field(s) {sorted(unknown)}. Known: duration_s (or duration), users, spawn_rate.")
    if "users" not in item or ("duration_s" not in item and "duration" not in item):
        raise UserError(f"{name} needs 'duration_s' (or 'duration') and 'users'; got {dict(item)!r}.")
    raw_duration = item["duration_s"] if "duration_s" in item else item["duration"]
    if raw_duration is None or (isinstance(raw_duration, float) and math.isinf(raw_duration) and raw_duration > 0):
        duration = FOREVER
    elif isinstance(raw_duration, str):
        duration = parse_duration(raw_duration, name)
    else:
        duration = _number(raw_duration, float, f"{name} duration_s")
    users = _number(item["users"], int, f"{name} users")
    raw_rate = item.get("spawn_rate", default_spawn_rate)
    if isinstance(raw_rate, str) and raw_rate.strip().lower() == RAMP:
        if math.isinf(duration):
            raise UserError(f"{name}: spawn rate 'ramp' needs a stage with a duration (this one lasts forever). "
                            f"Give the stage a duration, or a spawn rate in users per second.")
        return Stage(duration, users, ramp_rate(previous_users, users, duration))
    return Stage(duration, users, _number(raw_rate, float, f"{name} spawn_rate"))


def _number(value: Any, kind: type, what: str) -> Any:
    """int or float from a number or numeric text; booleans and 2.5 users are refused."""
    if isinstance(value, bool):
        raise UserError(f"{what} must be a number; got {value!r}.")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise UserError(f"{what} must be a number; got {value!r}.") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{what} must be a finite number; got {value!r}.")
    if kind is int:
        if value != int(value):
            raise UserError(f"{what} must be a whole number; got {value!r}.")
        return int(value)
    return float(value)


def total_duration(stages: Sequence[Stage]) -> float:
    """Seconds until the last stage ends (inf when the last stage lasts forever)."""
    return sum(stage.duration_s for stage in stages)


def stage_index_at(stages: Sequence[Stage], t: float) -> int | None:
    """Index of the stage running `t` seconds after the load started; None before or after."""
    if t < 0:
        return None
    end = 0.0
    for i, stage in enumerate(stages):
        end += stage.duration_s
        if t < end:
            return i
    return None


def users_at(stages: Sequence[Stage], t: float) -> int:
    """Target user count `t` seconds after the load started (0 before and after the stages).

    This is the target, not the ramp: Locust reaches it at the stage's spawn rate.
    """
    index = stage_index_at(stages, t)
    return 0 if index is None else stages[index].users


def default_workers(cpus: int, stack_here: bool) -> int:
    """One Locust worker per core the platform does not need, at least one.

    With the stack on this machine (the local target) it keeps LOCAL_STACK_CORES
    cores; a cloud target's platform runs elsewhere and leaves every core.
    """
    return max(1, min(MAX_WORKERS, cpus - (LOCAL_STACK_CORES if stack_here else 0)))


@dataclass(frozen=True)
class LoadSettings:
    """How to load the platform: which scenario, how many users, how patient a client is.

    With no `stages`, the load is `users` users (ramped at `spawn_rate`) until stopped.
    """

    users: int = 50
    spawn_rate: float = DEFAULT_SPAWN_RATE
    stages: tuple[Stage, ...] = ()
    user_class: str = DEFAULT_USER_CLASS
    timeout_s: float = 2.0  # a request without an answer by then is recorded as "unknown"
    # each user waits between wait_min_s and wait_max_s between tasks; None: the user class's own think time
    # (LunchRushUser 0.5-1.5 s, an impatient rush; LunchBreakStudent 10-50 s, a student's real pace)
    wait_min_s: float | None = None
    wait_max_s: float | None = None
    locustfile: str = DEFAULT_LOCUSTFILE
    workers: int | None = None  # Locust processes making requests; None: default_workers() for the target
    source: str = field(default="load settings", compare=False)  # where these came from, for messages

    def __post_init__(self) -> None:
        where = self.source
        if (isinstance(self.users, bool) or not isinstance(self.users, int) or not 0 <= self.users <= MAX_USERS):
            raise UserError(f"{where}: 'users' must be a whole number from 0 to {MAX_USERS}; got {self.users!r}.")
        if not 0 < self.spawn_rate <= MAX_SPAWN_RATE:
            raise UserError(f"{where}: 'spawn_rate' must be more than 0 users per second (at most "
                            f"{MAX_SPAWN_RATE:.0f}); got {self.spawn_rate!r}.")
        if not 0 < self.timeout_s <= MAX_DURATION_S:
            raise UserError(f"{where}: 'timeout_s' must be more than 0 seconds (at most 24 h); got {self.timeout_s!r}.")
        if (self.wait_min_s is None) != (self.wait_max_s is None):
            raise UserError(f"{where}: give both 'wait_min_s' and 'wait_max_s' (the think time between a user's "
                            f"tasks), or neither for the user class's own; got {self.wait_min_s!r} and "
                            f"{self.wait_max_s!r}.")
        if self.wait_min_s is not None and self.wait_max_s is not None and not (
                0 <= self.wait_min_s <= self.wait_max_s <= MAX_DURATION_S):
            raise UserError(f"{where}: need 0 <= 'wait_min_s' <= 'wait_max_s' <= 86400; got {self.wait_min_s!r} and "
                            f"{self.wait_max_s!r}.")
        if not isinstance(self.user_class, str) or not self.user_class.isidentifier() or len(self.user_class) > 200:
            raise UserError(f"{where}: 'user_class' must be a Python class name such as {DEFAULT_USER_CLASS!r}; "
                            f"got {self.user_class!r}.")
        if not self.locustfile:
            raise UserError(f"{where}: 'locustfile' is empty; use e.g. {DEFAULT_LOCUSTFILE!r}.")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or not 1 <= self.workers <= MAX_WORKERS):
            raise UserError(f"{where}: 'workers' must be a whole number from 1 to {MAX_WORKERS} (Locust processes "
                            f"making requests; 1 = a single process); got {self.workers!r}.")
        validate_stages(self.stages, f"{where}: 'stages'")

    def worker_count(self) -> int:
        """Locust processes that make requests: `workers`, or 1 when not resolved (see default_workers)."""
        return self.workers or 1

    def effective_stages(self) -> list[Stage]:
        """The stages to run: the given ones, or `users` forever."""
        return list(self.stages) or [Stage(FOREVER, self.users, self.spawn_rate)]

    def locustfile_path(self, base: Path | None = None) -> Path:
        """The locustfile as an absolute path (relative paths are taken from `base`, default the cwd)."""
        path = Path(self.locustfile)
        return path if path.is_absolute() else (base or Path.cwd()) / path

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source"}
        data["stages"] = [stage.to_json() for stage in self.stages]
        return data

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "load settings") -> "LoadSettings":
        """Settings from a mapping (e.g. an experiment's YAML); `stages` may be a list or a compact string."""
        if not isinstance(data, Mapping):
            raise UserError(f"{where}: load settings must be a mapping; got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)} - {"source"}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"{where}: unknown load setting(s) {sorted(unknown)}. Known: {', '.join(sorted(known))}.")
        kwargs: dict[str, Any] = {}
        for name in ("users", "workers"):
            if name in data:
                kwargs[name] = _number(data[name], int, f"{where}: '{name}'")
        for name in ("spawn_rate", "timeout_s", "wait_min_s", "wait_max_s"):
            if name in data and not (name.startswith("wait_") and data[name] is None):
                kwargs[name] = _number(data[name], float, f"{where}: '{name}'")
        for name in ("user_class", "locustfile"):
            if name in data:
                if not isinstance(data[name], str):
                    raise UserError(f"{where}: '{name}' must be a string; got {data[name]!r}.")
                kwargs[name] = data[name]
        if data.get("stages") is not None:
            spawn_rate = kwargs.get("spawn_rate", DEFAULT_SPAWN_RATE)
            kwargs["stages"] = tuple(parse_stages(data["stages"], spawn_rate, f"{where}: 'stages'"))
        return cls(source=where, **kwargs)
