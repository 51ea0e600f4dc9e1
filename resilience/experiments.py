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
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkers import MEASURES
from .config import Targets, override_targets
from .errors import UserError
from .fault_registry import FAULTS, FaultCall, fault_type
from .inputs import check_tree, load_yaml, printable
from .load.shape import MAX_DURATION_S, LoadSettings
from .load.process import user_classes_in
from .policy import Policy, check_experiment, check_locustfile

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXTENSION_NAME = "resilience"
PROFILES = ("full", "short")
# the fields of our extension block; a profile may override any of them except the first two
EXTENSION_FIELDS = ("name", "experiment", "hypothesis", "measures", "targets", "load", "durations",
                    "stop_condition", "profiles", "alerts")
PROFILE_FIELDS = ("hypothesis", "measures", "targets", "load", "durations", "stop_condition", "alerts")
# an experiment's name names its run directory and ledger entries: no path separators, no leading dot
EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ACTIVITY_TYPES = ("action", "probe")


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
    faults: tuple[FaultCall, ...] = field(default=())  # the method's faults, checked by the registry, in order
    alerts: tuple[str, ...] | None = None  # the alerts the fault must raise (None: detection not measured)

    def fault_names(self) -> list[str]:
        return [call.fault for call in self.faults]

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
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise UserError(f"{where}.{k} must be a number >= 0, got {v!r}.")
        if v > MAX_DURATION_S:
            raise UserError(f"{where}.{k} is {v!r}; at most {MAX_DURATION_S:.0f} (24 h). Shorten it.")
    return cls(**{k: float(v) for k, v in data.items()})


def load(name_or_path: str, profile: str = "full", *, load_overrides: dict[str, Any] | None = None,
         policy: Policy | None = None) -> ExperimentSpec:
    """Load and validate an experiment (ours and Chaos Toolkit's rules, and what it may run). Touches nothing.

    `policy` says which modules, programs, hosts and locustfiles the operator allows (default: only ours).
    """
    path = resolve(name_or_path)
    raw = load_yaml(path, "experiment file")
    return parse(raw, path, profile, load_overrides=load_overrides, policy=policy)


def load_from_raw(raw: dict[str, Any], profile: str = "full", policy: Policy | None = None) -> ExperimentSpec:
    """An experiment handed over by Chaos Toolkit (plain `chaos run`): named by its extension's `experiment`."""
    ext = _extension(raw, "the experiment") if isinstance(raw, dict) else {}
    name = ext.get("experiment") or "experiment"
    if not isinstance(name, str) or not EXPERIMENT_NAME.match(name):
        name = "experiment"  # parse() refuses the bad name with the full message
    return parse(raw, Path(f"{name}.yaml"), profile, policy=policy)


def parse(raw: Any, path: Path, profile: str = "full", *,
          load_overrides: dict[str, Any] | None = None, policy: Policy | None = None) -> ExperimentSpec:
    """Validate an experiment mapping; `path` names it in messages.

    The order matters: plain data first (types, depth), then what it may run (the
    policy, by module name only), and only then anything that could import code
    (Chaos Toolkit's own validation, done by the caller).
    """
    where = str(path)
    if not isinstance(raw, dict):
        raise UserError(f"{where}: an experiment must be a YAML mapping with title, method, extensions.")
    check_tree(raw, where)
    for key in ("title", "description", "method"):
        if key not in raw:
            raise UserError(f"{where}: missing '{key}', which Chaos Toolkit requires. Add it (see experiments/pod-kill.yaml).")
    _check_chaos_structure(raw, where)
    policy = policy or Policy()
    check_experiment(raw, where, policy)
    ext = _extension(raw, where)
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}.")
    _check_extension_fields(ext, where)
    name = ext.get("experiment") if ext.get("experiment") is not None else path.stem
    if not isinstance(name, str) or not EXPERIMENT_NAME.match(name):
        raise UserError(f"{where}: the experiment name {name!r} (extensions.resilience.experiment, or the file "
                        f"name) names its run directory: use 1 to 64 letters, digits, '.', '_' and '-', starting "
                        f"with a letter or digit (no '/', no leading '.'), e.g. experiment: zone-failure.")
    profiles = ext.get("profiles") or {}
    if profile != "full":
        if profile not in profiles:
            raise UserError(f"{where}: extensions.resilience.profiles has no {profile!r} profile. Add one or use --profile full.")
        ext = _deep_merge({k: v for k, v in ext.items() if k != "profiles"}, profiles[profile])
    hypothesis = ext.get("hypothesis")
    if not isinstance(hypothesis, str) or not hypothesis.strip():
        raise UserError(f"{where}: extensions.resilience.hypothesis must state, in words, what must hold.")
    measures = ext.get("measures")
    if (not isinstance(measures, list) or not measures or not all(isinstance(m, str) for m in measures)
            or any(m not in MEASURES for m in measures)):
        raise UserError(f"{where}: extensions.resilience.measures must be a non-empty list from {list(MEASURES)}; "
                        f"got {measures!r}.")
    overrides = ext.get("targets") or {}
    if not isinstance(overrides, dict):
        raise UserError(f"{where}: extensions.resilience.targets must be a mapping such as {{rto_s: 60}}.")
    override_targets(Targets(), overrides, f"{where}: extensions.resilience")  # validates names and values
    if not isinstance(ext.get("load") or {}, dict):
        raise UserError(f"{where}: extensions.resilience.load must be a mapping such as {{users: 50}}; "
                        f"got {ext.get('load')!r}.")
    load_data = dict(ext.get("load") or {})
    load_data.update(load_overrides or {})
    load_settings = LoadSettings.from_mapping(load_data, f"{where}: extensions.resilience.load")
    locustfile = check_locustfile(load_settings.locustfile, f"{where}: extensions.resilience.load", policy)
    if locustfile.is_file() and load_settings.user_class not in (classes := user_classes_in(locustfile)):
        raise UserError(f"{where}: extensions.resilience.load: the user class {load_settings.user_class!r} is not "
                        f"defined in {locustfile} (classes there: {', '.join(classes) or 'none'}). Set 'user_class' "
                        f"(or --user-class) to one of them.")
    durations = _dataclass_from(Durations, ext.get("durations"), f"{where}: extensions.resilience.durations")
    stop = _dataclass_from(StopCondition, ext.get("stop_condition"), f"{where}: extensions.resilience.stop_condition")
    if not 0 <= stop.availability_floor <= 1:
        raise UserError(f"{where}: extensions.resilience.stop_condition.availability_floor is a fraction 0..1.")
    faults = tuple(_faults(raw, where))
    alerts = _alerts(ext.get("alerts"), where)
    if "autoscaling" in measures and not load_settings.stages:
        raise UserError(f"{where}: measuring autoscaling needs load stages (a baseline then a step), e.g. "
                        f"load.stages: '20s:10,40s:60,20s:10'.")
    raw_with_profile = copy.deepcopy(raw)
    raw_with_profile["extensions"] = [ext if (isinstance(e, dict) and e.get("name") == EXTENSION_NAME) else e
                                      for e in raw.get("extensions", [])]
    return ExperimentSpec(name=name, path=path, raw=raw_with_profile, title=str(raw["title"]),
                          hypothesis=hypothesis.strip(), measures=tuple(measures), target_overrides=overrides,
                          load=load_settings, durations=durations, stop_condition=stop, profile=profile,
                          faults=faults, alerts=alerts)


def _alerts(value: Any, where: str) -> tuple[str, ...] | None:
    """The expected alerts: names of rules in deploy/monitoring/alerts.yaml ([] = the fault must raise none)."""
    if value is None:
        return None
    from .targets.local.alert_rules import RULES_PATH, load, windows
    known = sorted(windows(load()))
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value) or set(value) - set(known):
        raise UserError(f"{where}: extensions.resilience.alerts must be a list of alert names from {RULES_PATH} "
                        f"({', '.join(known)}), or [] when the fault must raise none; got {value!r}.")
    return tuple(value)


def _faults(raw: dict[str, Any], where: str) -> list[FaultCall]:
    """The method's fault actions, each checked against the fault registry (names, types, bounds)."""
    out = []
    for i, activity in enumerate(raw.get("method") or []):
        provider = activity.get("provider", {}) if isinstance(activity, dict) else {}
        if provider.get("type") == "python" and provider.get("module") == "resilience.faults":
            func = provider.get("func")
            if func in FAULTS:
                out.append(fault_type(func).call(provider.get("arguments"),
                                                 f"{where}: method[{i}] ({activity.get('name')!r})"))
            elif activity.get("type") == "action":
                raise UserError(f"{where}: method[{i}].provider.func {func!r} is not a fault we provide. "
                                f"Use one of: {', '.join(FAULTS)} (`resilience faults` describes them).")
    if not out:
        raise UserError(f"{where}: the method has no fault action from resilience.faults ({', '.join(FAULTS)}).")
    return out


def _check_extension_fields(ext: dict[str, Any], where: str) -> None:
    """Our block's fields have the right shapes, in every profile too (typos are refused, not ignored)."""
    unknown = sorted(set(ext) - set(EXTENSION_FIELDS))
    if unknown:
        raise UserError(f"{where}: extensions.resilience has unknown field(s) {unknown}; known: "
                        f"{', '.join(EXTENSION_FIELDS)}. Remove them or fix the spelling.")
    for key in ("load", "durations", "stop_condition", "targets"):
        if ext.get(key) is not None and not isinstance(ext[key], dict):
            raise UserError(f"{where}: extensions.resilience.{key} must be a mapping (key: value pairs); "
                            f"got {ext[key]!r}.")
    profiles = ext.get("profiles")
    if profiles is None:
        return
    if not isinstance(profiles, dict):
        raise UserError(f"{where}: extensions.resilience.profiles must be a mapping such as "
                        f"{{short: {{durations: {{fault_s: 20}}}}}}; got {profiles!r}.")
    for name, override in profiles.items():
        here = f"{where}: extensions.resilience.profiles.{name}"
        if name not in PROFILES or name == "full":
            raise UserError(f"{here}: unknown profile; the only profile a file may define is 'short'.")
        if not isinstance(override, dict):
            raise UserError(f"{here} must be a mapping of fields to override (e.g. durations, load); "
                            f"got {override!r}.")
        bad = sorted(set(override) - set(PROFILE_FIELDS))
        if bad:
            raise UserError(f"{here}: cannot override {bad}; a profile may override {', '.join(PROFILE_FIELDS)}.")
        for key in ("load", "durations", "stop_condition", "targets"):
            if override.get(key) is not None and not isinstance(override[key], dict):
                raise UserError(f"{here}.{key} must be a mapping (key: value pairs); got {override[key]!r}.")


def _check_activity(activity: Any, path: str, where: str) -> None:
    """One Chaos Toolkit activity: a mapping with type, name and a provider mapping (or a `ref`)."""
    if not isinstance(activity, dict):
        raise UserError(f"{where}: {path} must be an activity (a mapping with type, name and provider); "
                        f"got {activity!r}.")
    if "ref" in activity:
        if not isinstance(activity["ref"], str):
            raise UserError(f"{where}: {path}.ref must be the name of an activity; got {activity['ref']!r}.")
        return
    name = activity.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise UserError(f"{where}: {path}.name must be a short text naming the activity; got {name!r}.")
    label = f"{path} ({name!r})"
    if activity.get("type") not in ACTIVITY_TYPES:
        raise UserError(f"{where}: {label}.type must be action or probe; got {activity.get('type')!r}.")
    provider = activity.get("provider")
    if not isinstance(provider, dict):
        raise UserError(f"{where}: {label}.provider must be a mapping with type, module and func; got {provider!r}.")
    if provider.get("arguments") is not None and not isinstance(provider["arguments"], (dict, list, str)):
        raise UserError(f"{where}: {label}.provider.arguments must be a mapping; got {provider['arguments']!r}.")
    if provider.get("type") == "python" and not isinstance(provider.get("arguments") or {}, dict):
        raise UserError(f"{where}: {label}.provider.arguments must be a mapping of argument names to values; "
                        f"got {provider['arguments']!r}.")
    pauses = activity.get("pauses")
    if pauses is not None:
        if not isinstance(pauses, dict) or set(pauses) - {"before", "after"}:
            raise UserError(f"{where}: {label}.pauses must be a mapping with before and/or after (seconds).")
        for key, value in pauses.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DURATION_S:
                raise UserError(f"{where}: {label}.pauses.{key} must be 0..{MAX_DURATION_S:.0f} seconds; got {value!r}.")
    if activity.get("controls") is not None:
        _check_controls(activity["controls"], f"{label}.controls", where)


def _check_list(raw: dict[str, Any], key: str, where: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise UserError(f"{where}: '{key}' must be a list; got {type(value).__name__}. Write it as a YAML list.")
    return value


def _check_controls(controls: Any, path: str, where: str) -> None:
    if not isinstance(controls, list):
        raise UserError(f"{where}: {path} must be a list of controls (name, provider); got {controls!r}.")
    for i, control in enumerate(controls):
        if not isinstance(control, dict) or not isinstance(control.get("name"), str):
            raise UserError(f"{where}: {path}[{i}] must be a mapping with a name and a provider; got {control!r}.")
        provider = control.get("provider")
        if provider is not None and not isinstance(provider, dict):
            raise UserError(f"{where}: {path}[{i}] ({control['name']!r}).provider must be a mapping; got {provider!r}.")


def _check_chaos_structure(raw: dict[str, Any], where: str) -> None:
    """The Chaos Toolkit parts have the shapes Chaos Toolkit expects, so no later step meets a surprise type."""
    for key in ("title", "description"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise UserError(f"{where}: '{key}' must be text; got {raw[key]!r}.")
    tags = _check_list(raw, "tags", where)
    if not all(isinstance(t, str) for t in tags):
        raise UserError(f"{where}: 'tags' must be a list of words; got {tags!r}.")
    method = _check_list(raw, "method", where)
    for i, activity in enumerate(method):
        _check_activity(activity, f"method[{i}]", where)
    for i, activity in enumerate(_check_list(raw, "rollbacks", where)):
        _check_activity(activity, f"rollbacks[{i}]", where)
    _check_controls(_check_list(raw, "controls", where), "controls", where)
    extensions = _check_list(raw, "extensions", where)
    if not all(isinstance(e, dict) for e in extensions):
        raise UserError(f"{where}: every entry of 'extensions' must be a mapping with a name.")
    for key in ("configuration", "secrets"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise UserError(f"{where}: '{key}' must be a mapping; got {type(raw[key]).__name__}.")
    ssh = raw.get("steady-state-hypothesis")
    if ssh is not None:
        if not isinstance(ssh, dict) or not isinstance(ssh.get("title"), str):
            raise UserError(f"{where}: 'steady-state-hypothesis' must be a mapping with a title and probes.")
        probes = ssh.get("probes") or []
        if not isinstance(probes, list):
            raise UserError(f"{where}: 'steady-state-hypothesis.probes' must be a list of probes.")
        for i, probe in enumerate(probes):
            _check_activity(probe, f"steady-state-hypothesis.probes[{i}]", where)


def validate_with_chaostoolkit(spec: ExperimentSpec) -> None:
    """Chaos Toolkit's own validation: schema, and that every python activity's function and arguments exist."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid
    try:
        ensure_experiment_is_valid(copy.deepcopy(spec.raw))
    except ChaosException as exc:
        raise UserError(f"{spec.path}: Chaos Toolkit rejects this experiment: {exc}. Fix the field it names.") from None


def profiles_of(spec: ExperimentSpec) -> list[str]:
    """The profiles an experiment file defines (besides 'full')."""
    return list(_extension(spec.raw, str(spec.path)).get("profiles") or {})


LIST_HEADER = f"{'experiment':<21} {'faults':<33} title"


def summary_line(path: Path, policy: Policy | None = None) -> str:
    """One line for `resilience list`: name, faults, title (columns as LIST_HEADER)."""
    try:
        spec = load(str(path), policy=policy)
        faults = ", ".join(spec.fault_names())
        return printable(f"{spec.name:<21} {faults:<33} {spec.title}")
    except UserError as exc:
        return printable(f"{path.stem:<21} INVALID: {exc}")  # the file name, too, reaches the terminal
