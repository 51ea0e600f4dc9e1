"""Experiments: Chaos Toolkit files plus our `resilience` extension block.

An experiment is a plain Chaos Toolkit experiment (it also runs with
`chaos run FILE`). Our part lives in `extensions: [{name: resilience, ...}]`:

    hypothesis: what must hold
    measures: [availability, p99, rto, rpo, autoscaling]
    targets: {rto_s: ..., ...}            # overrides of the platform's objectives
    load: {users, spawn_rate, user_class, stages, timeout_s, ...}
    durations: {steady_s, fault_s, recovery_s}
    stop_condition: {availability_floor: 0.5, for_s: 30}
    profiles: {short: {load: {...}, durations: {...}}}   # e.g. for CI

Every problem is reported with the file, the field and the fix, before anything runs.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .checkers import MEASURES
from .config import Targets, override_targets
from .errors import UserError
from .load.shape import LoadSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXTENSION_NAME = "resilience"
FAULT_FUNCTIONS = ("kill_replicas", "lose_zone", "fail_over_database", "stop_cache", "traffic_spike",
                   "pause_replicas", "hold_replication")
PROFILES = ("full", "short")


@dataclass(frozen=True)
class Durations:
    steady_s: float = 30.0  # steady state under load before the fault
    fault_s: float = 60.0  # how long the fault is held before rollback
    recovery_s: float = 60.0  # load keeps running after rollback (RTO hold window, readback)


@dataclass(frozen=True)
class StopCondition:
    """Abort when availability stays under `availability_floor` for `for_s` seconds."""

    availability_floor: float = 0.2
    for_s: float = 60.0


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    path: Path
    raw: dict[str, Any]  # the Chaos Toolkit experiment as loaded (with the chosen profile applied)
    title: str
    hypothesis: str
    measures: tuple[str, ...]
    target_overrides: dict[str, Any]
    load: LoadSettings
    durations: Durations
    stop_condition: StopCondition
    profile: str
    faults: tuple[tuple[str, dict[str, Any]], ...] = field(default=())  # (function, arguments) in method order

    def capabilities(self) -> list[tuple[str, dict[str, Any]]]:
        """The faults as target capabilities: `zone: primary` means "the zone the target finds the primary in"."""
        out = []
        for func, args in self.faults:
            args = {k: v for k, v in args.items() if k != "hold_s"}
            if func == "lose_zone" and args.get("zone") in (None, "primary"):
                args["zone"] = None
            out.append((func, args))
        return out

    def targets(self, base: Targets, cli_overrides: dict[str, Any] | None = None) -> Targets:
        merged = {**self.target_overrides, **(cli_overrides or {})}
        return override_targets(base, merged, str(self.path)) if merged else base


def experiments_dir() -> Path:
    local = Path.cwd() / "experiments"
    return local if local.is_dir() else PROJECT_ROOT / "experiments"


def catalogue() -> list[Path]:
    return sorted(p for p in experiments_dir().glob("*.yaml") if p.name != "suites.yaml")


def resolve(name_or_path: str) -> Path:
    """A catalogue name (zone-failure) or a file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or os.sep in name_or_path:
        if not path.is_file():
            raise UserError(f"experiment file {path} does not exist. Pass an existing file, or a catalogue name "
                            f"(`resilience list`).")
        return path
    candidate = experiments_dir() / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    names = ", ".join(p.stem for p in catalogue())
    raise UserError(f"unknown experiment {name_or_path!r}. The catalogue ({experiments_dir()}) has: {names}. "
                    f"Run `resilience list` to see them with their faults.")


def _extension(raw: dict[str, Any], where: str) -> dict[str, Any]:
    for ext in raw.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == EXTENSION_NAME:
            return ext
    raise UserError(f"{where}: no 'extensions' entry with name: {EXTENSION_NAME}. Add one with the hypothesis, "
                    f"measures, load and durations (see experiments/zone-failure.yaml).")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _dataclass_from(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping, got {data!r}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise UserError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(names)}.")
    for k, v in data.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise UserError(f"{where}.{k} must be a number >= 0, got {v!r}.")
    return cls(**{k: float(v) for k, v in data.items()})


def load(name_or_path: str, profile: str = "full", *, load_overrides: dict[str, Any] | None = None) -> ExperimentSpec:
    """Load and validate an experiment (ours and Chaos Toolkit's rules). Touches nothing."""
    path = resolve(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc}). Fix the syntax.") from None
    return parse(raw, path, profile, load_overrides=load_overrides)


def load_from_raw(raw: dict[str, Any], profile: str = "full") -> ExperimentSpec:
    """An experiment handed over by Chaos Toolkit (plain `chaos run`): named by its extension's `experiment`."""
    ext = _extension(raw, "the experiment") if isinstance(raw, dict) else {}
    name = str(ext.get("experiment") or "experiment")
    return parse(raw, Path(f"{name}.yaml"), profile)


def parse(raw: Any, path: Path, profile: str = "full", *,
          load_overrides: dict[str, Any] | None = None) -> ExperimentSpec:
    """Validate an experiment mapping; `path` names it in messages."""
    where = str(path)
    if not isinstance(raw, dict):
        raise UserError(f"{where}: an experiment must be a YAML mapping with title, method, extensions.")
    for key in ("title", "description", "method"):
        if key not in raw:
            raise UserError(f"{where}: missing '{key}', which Chaos Toolkit requires. Add it (see experiments/pod-kill.yaml).")
    ext = _extension(raw, where)
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}.")
    profiles = ext.get("profiles") or {}
    if profile != "full":
        if profile not in profiles:
            raise UserError(f"{where}: extensions.resilience.profiles has no {profile!r} profile. Add one or use --profile full.")
        ext = _deep_merge({k: v for k, v in ext.items() if k != "profiles"}, profiles[profile])
    hypothesis = ext.get("hypothesis")
    if not isinstance(hypothesis, str) or not hypothesis.strip():
        raise UserError(f"{where}: extensions.resilience.hypothesis must state, in words, what must hold.")
    measures = ext.get("measures")
    if not isinstance(measures, list) or not measures or any(m not in MEASURES for m in measures):
        raise UserError(f"{where}: extensions.resilience.measures must be a non-empty list from {list(MEASURES)}; "
                        f"got {measures!r}.")
    overrides = ext.get("targets") or {}
    if not isinstance(overrides, dict):
        raise UserError(f"{where}: extensions.resilience.targets must be a mapping such as {{rto_s: 60}}.")
    override_targets(Targets(), overrides, f"{where}: extensions.resilience")  # validates names and values
    load_data = dict(ext.get("load") or {})
    load_data.update(load_overrides or {})
    load_settings = LoadSettings.from_mapping(load_data, f"{where}: extensions.resilience.load")
    durations = _dataclass_from(Durations, ext.get("durations"), f"{where}: extensions.resilience.durations")
    stop = _dataclass_from(StopCondition, ext.get("stop_condition"), f"{where}: extensions.resilience.stop_condition")
    if not 0 <= stop.availability_floor <= 1:
        raise UserError(f"{where}: extensions.resilience.stop_condition.availability_floor is a fraction 0..1.")
    faults = tuple(_faults(raw, where))
    if "autoscaling" in measures and not load_settings.stages:
        raise UserError(f"{where}: measuring autoscaling needs load stages (a baseline then a step), e.g. "
                        f"load.stages: '20s:10,40s:60,20s:10'.")
    raw_with_profile = copy.deepcopy(raw)
    raw_with_profile["extensions"] = [ext if (isinstance(e, dict) and e.get("name") == EXTENSION_NAME) else e
                                      for e in raw.get("extensions", [])]
    name = str(ext.get("experiment") or path.stem)
    return ExperimentSpec(name=name, path=path, raw=raw_with_profile, title=str(raw["title"]),
                          hypothesis=hypothesis.strip(), measures=tuple(measures), target_overrides=overrides,
                          load=load_settings, durations=durations, stop_condition=stop, profile=profile,
                          faults=faults)


def _faults(raw: dict[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for i, activity in enumerate(raw.get("method") or []):
        provider = activity.get("provider", {}) if isinstance(activity, dict) else {}
        if provider.get("type") == "python" and provider.get("module") == "resilience.faults":
            func = provider.get("func")
            if func in FAULT_FUNCTIONS:
                out.append((func, dict(provider.get("arguments") or {})))
            elif activity.get("type") == "action":
                raise UserError(f"{where}: method[{i}].provider.func {func!r} is not a fault we provide. "
                                f"Use one of: {', '.join(FAULT_FUNCTIONS)}.")
    if not out:
        raise UserError(f"{where}: the method has no fault action from resilience.faults ({', '.join(FAULT_FUNCTIONS)}).")
    return out


def validate_with_chaostoolkit(spec: ExperimentSpec) -> None:
    """Chaos Toolkit's own validation: schema, and that every python activity's function and arguments exist."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid
    try:
        ensure_experiment_is_valid(copy.deepcopy(spec.raw))
    except ChaosException as exc:
        raise UserError(f"{spec.path}: Chaos Toolkit rejects this experiment: {exc}. Fix the field it names.") from None


def summary_line(path: Path) -> str:
    """One line for `resilience list`: name, fault, title."""
    try:
        spec = load(str(path))
        faults = ", ".join(f for f, _ in spec.faults)
        return f"{spec.name:<16} {faults:<22} {spec.title}"
    except UserError as exc:
        return f"{path.stem:<16} INVALID: {exc}"
