"""Every fault the harness can inject, defined once: its name, its arguments, what it does.

Experiment validation, the Chaos Toolkit actions (`resilience.faults`), the run,
the dry-run plan, `resilience rollback`, `resilience faults` and every target
read this table; nothing else lists fault names. A fault's arguments are
checked here once (types, bounds, defaults; NaN, infinity and negative values
refused), and the target receives a `FaultCall` whose arguments are already
valid. Whether a target supports a fault, and how it injects and undoes it, is
the target's part: each `Nemesis` (targets/base.py) states it for every fault
in this table, and a unit test holds them to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import UserError
from .load.shape import MAX_DURATION_S

INTEGER, NUMBER, CHOICE, TEXT = "integer", "number", "choice", "text"
MAX_COUNT = 10_000  # replicas a single fault may kill
MAX_TEXT = 64


@dataclass(frozen=True)
class Argument:
    """One argument of a fault: its type, bounds and default (None: optional, no default)."""

    name: str
    kind: str  # integer | number | choice | text
    help: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False  # the minimum itself is not allowed (e.g. percent > 0)
    choices: tuple[str, ...] = ()

    def check(self, value: Any, where: str) -> Any:
        """The value, normalised (numbers as int/float), or a UserError naming the argument and the fix."""
        here = f"{where}: argument {self.name}"
        if self.kind in (INTEGER, NUMBER):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{here} must be a {'whole ' if self.kind == INTEGER else ''}number, got {value!r}. "
                                f"{self.help}")
            if self.kind == INTEGER and (isinstance(value, float) and not value.is_integer()):
                raise UserError(f"{here} must be a whole number, got {value!r}.")
            if not math.isfinite(value):
                raise UserError(f"{here} must be a finite number, got {value!r}.")
            low_ok = (self.minimum is None or value > self.minimum if self.above_minimum
                      else self.minimum is None or value >= self.minimum)
            if not low_ok or (self.maximum is not None and value > self.maximum):
                raise UserError(f"{here} is {value!r}; it must be {self.bounds()}.")
            return int(value) if self.kind == INTEGER else float(value)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            raise UserError(f"{here} must be a short text (1..{MAX_TEXT} characters), got {value!r}. {self.help}")
        if "${" in value:  # Chaos Toolkit would substitute a configuration value (an env var, say) at run time
            raise UserError(f"{here} is {value!r}: ${{...}} is not allowed in fault arguments, which are checked "
                            f"here and must be what runs. Write the value itself.")
        if self.kind == CHOICE and value not in self.choices:
            raise UserError(f"{here} is {value!r}; use one of: {', '.join(self.choices)}.")
        return value

    def bounds(self) -> str:
        low = "" if self.minimum is None else (f"> {_number(self.minimum)}" if self.above_minimum
                                               else f">= {_number(self.minimum)}")
        high = "" if self.maximum is None else f"<= {_number(self.maximum)}"
        return " and ".join(p for p in (low, high) if p) or "any value"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.kind, "help": self.help, "default": self.default}
        if self.minimum is not None:
            out["minimum" if not self.above_minimum else "exclusive_minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices:
            out["choices"] = list(self.choices)
        return out


@dataclass(frozen=True)
class FaultCall:
    """One fault as a target receives it: a registered name and checked arguments (hold_s removed)."""

    fault: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.arguments.get(name)

    def to_json(self) -> dict[str, Any]:
        return {"fault": self.fault, "arguments": dict(self.arguments)}


@dataclass(frozen=True)
class FaultType:
    """One kind of fault. `touches_target` is False for faults made by the load itself (traffic_spike)."""

    name: str
    summary: str
    arguments: tuple[Argument, ...]
    touches_target: bool = True
    rule: Callable[[dict[str, Any]], str | None] | None = None  # a check across arguments: the problem, or None
    experiment_kind: str | None = None  # the catalogue experiment it is evidence for (the compliance report's rows)

    def argument(self, name: str) -> Argument:
        return next(a for a in self.arguments if a.name == name)

    def check(self, arguments: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
        """Checked arguments with defaults filled in; unknown names and bad values are refused."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            raise UserError(f"{where}: the arguments of {self.name} must be a mapping, got {arguments!r}.")
        known = {a.name for a in self.arguments}
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise UserError(f"{where}: {self.name} has no argument {', '.join(map(str, unknown))}; its arguments are: "
                            f"{', '.join(sorted(known)) or 'none'} (`resilience faults` lists them).")
        out: dict[str, Any] = {}
        for arg in self.arguments:
            value = arguments.get(arg.name)
            if value is None:
                if arg.default is not None:
                    out[arg.name] = arg.default
                continue
            out[arg.name] = arg.check(value, where)
        problem = self.rule(out) if self.rule else None
        if problem:
            raise UserError(f"{where}: {self.name}: {problem}")
        return out

    def call(self, arguments: Mapping[str, Any] | None, where: str) -> FaultCall:
        """What the target gets: the checked arguments without hold_s (holding is the run's business)."""
        checked = self.check(arguments, where)
        return FaultCall(self.name, {k: v for k, v in checked.items() if k != "hold_s"})

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "touches_target": self.touches_target,
                "arguments": [a.to_json() for a in self.arguments]}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _hold(default: float | None) -> Argument:
    shown = f"{default:g} s" if default is not None else "the experiment's durations.fault_s"
    return Argument("hold_s", NUMBER, f"seconds the fault is held before it is undone (default: {shown})",
                    default, 0, MAX_DURATION_S)


def _count_or_percent(arguments: dict[str, Any]) -> str | None:
    given = [name for name in ("count", "percent") if arguments.get(name) is not None]
    if len(given) != 1:
        return (f"give exactly one of 'count' (replicas) or 'percent' (of the live replicas); got "
                f"{', '.join(given) or 'neither'}. E.g. arguments: {{percent: 50}}.")
    return None


def _path() -> Argument:
    return Argument("path", CHOICE, "the network path: api-database (the API replicas <-> PostgreSQL), api-cache "
                    "(the API replicas <-> Redis), lb-replica (the load balancer <-> one API replica), zone-zone "
                    "(every packet between two zones: from_zone, to_zone)", "api-database",
                    choices=("api-database", "api-cache", "lb-replica", "zone-zone"))


def _zone_pair() -> tuple[Argument, Argument]:
    """The two zones of `path: zone-zone` (docs/gray-failures.md)."""
    return (Argument("from_zone", TEXT, "path zone-zone: the zone whose packets to and from to_zone are hit "
                     "(default: the PostgreSQL primary's zone; 'primary' names it too)"),
            Argument("to_zone", TEXT, "path zone-zone: the other zone (default: the zone after from_zone)"))


def _zones_rule(arguments: dict[str, Any]) -> str | None:
    given = [n for n in ("from_zone", "to_zone") if arguments.get(n) is not None]
    if given and arguments.get("path") != "zone-zone":
        return f"{' and '.join(given)} go with path zone-zone only; got path {arguments.get('path')!r}."
    if len(given) == 2 and arguments["from_zone"] == arguments["to_zone"]:
        return f"from_zone and to_zone are both {arguments['from_zone']!r}: give two different zones."
    return None


def _both(*rules: Callable[[dict[str, Any]], str | None]) -> Callable[[dict[str, Any]], str | None]:
    return lambda arguments: next((p for p in (rule(arguments) for rule in rules) if p), None)


def _needs(name: str) -> Callable[[dict[str, Any]], str | None]:
    return lambda arguments: None if arguments.get(name) is not None else f"give '{name}', e.g. {{{name}: 5}}."


FAULTS: dict[str, FaultType] = {f.name: f for f in (
    FaultType("kill_replicas", "SIGKILL API replicas chosen at random; the platform must replace them", (
        Argument("count", INTEGER, "how many replicas to kill", None, 1, MAX_COUNT),
        Argument("percent", NUMBER, "the share of the live replicas to kill, in percent", None, 0, 100,
                 above_minimum=True),
        Argument("seed", INTEGER, "random seed for which replicas die (default: the run's --seed)", None, 0, 2**32 - 1),
        _hold(None)), rule=_count_or_percent, experiment_kind="pod-kill"),
    FaultType("lose_zone", "lose every component of one zone at once", (
        Argument("zone", TEXT, "the zone to lose; 'primary' is the zone that holds the database primary", "primary"),
        _hold(None)), experiment_kind="zone-failure"),
    FaultType("fail_over_database", "take the PostgreSQL primary away: kill it, or freeze it as a partition would", (
        Argument("mode", CHOICE, "kill: the primary dies; freeze: it stops answering (a partition)", "kill",
                 choices=("kill", "freeze")),
        _hold(None)), experiment_kind="db-failover"),
    FaultType("stop_cache", "stop Redis: the master only (a failover), or all of it (an outage)", (
        Argument("mode", CHOICE, "failover: kill the master; outage: stop every Redis server", "failover",
                 choices=("failover", "outage")),
        _hold(None)), experiment_kind="redis-outage"),
    FaultType("traffic_spike", "the load's own stages step up; the fault is the step (the target is not touched)",
              (_hold(None),), touches_target=False, experiment_kind="traffic-spike"),
    FaultType("pause_replicas", "freeze every API replica for exactly hold_s seconds (an outage of known length)",
              (_hold(5.0),)),
    FaultType("hold_replication", "hold replication for hold_s, then kill the primary: with asynchronous "
                                  "replication the writes acknowledged meanwhile are lost (RPO > 0)",
              (_hold(5.0),)),
    FaultType("corrupt_orders", "a logical corruption of the orders table at a recorded time (a bad migration): it "
                                "replicates, so failover cannot help; recovery is a point-in-time restore", (
        Argument("fraction", NUMBER, "the share of the orders hit (0 < f <= 1)", 0.3, 0, 1, above_minimum=True),
        Argument("mode", CHOICE, "delete: the rows are deleted; rewrite: their items and totals are changed", "delete",
                 choices=("delete", "rewrite")),
        _hold(None)), experiment_kind="data-corruption"),
    FaultType("lose_database", "lose every database member and its data directory at once (the whole cluster)",
              (_hold(None),), experiment_kind="database-loss"),
    FaultType("lose_region", "lose the primary region: every database member, its data and the in-region backup "
                             "repository (repo1); only the second region's repository (repo2) is left",
              (_hold(None),), experiment_kind="region-failure"),
    FaultType("restore_database", "the restore runbook as code: restore the database cluster from a backup "
                                  "repository (to just before the fault, or the latest point), re-form it, serve", (
        Argument("to", CHOICE, "before-fault: to just before the fault's recorded time; latest: all archived WAL",
                 "before-fault", choices=("before-fault", "latest")),
        Argument("repo", INTEGER, "the backup repository: 1 in region, 2 the second region", 1, 1, 2))),
    FaultType("delay_network", "add latency (with jitter) to every round trip on a network path", (
        _path(), Argument("delay_ms", NUMBER, "milliseconds added to each round trip", 100.0, 0, 60_000,
                          above_minimum=True),
        Argument("jitter_ms", NUMBER, "+- this many milliseconds, uniform, around delay_ms", 0.0, 0, 60_000),
        _hold(None))),
    FaultType("drop_packets", "drop a share of the packets on a network path, each way", (
        _path(), Argument("percent", NUMBER, "the share of packets dropped, in percent", None, 0, 100,
                          above_minimum=True), _hold(None), *_zone_pair()),
              rule=_both(_needs("percent"), _zones_rule)),
    FaultType("blackhole_network", "a network path forwards nothing (silent drop: clients wait for their timeouts)",
              (_path(), _hold(None), *_zone_pair()), rule=_zones_rule),
    FaultType("reject_network", "every connection on a network path is reset (fails fast)",
              (_path(), _hold(None), *_zone_pair()), rule=_zones_rule),
    FaultType("partition_primary", "cut the PostgreSQL primary off from etcd and the standby while the API still "
                                   "reaches it (the Jepsen partition: no lost write, one writable primary)",
              (_hold(None),)),
    FaultType("starve_cpu", "cut every API replica's CPU limit to a share of it (a starved replica, throttled)", (
        Argument("percent", NUMBER, "the share of its CPU limit each replica keeps, in percent", 10.0, 0, 100,
                 above_minimum=True), _hold(None))),
    FaultType("limit_bandwidth", "cap the bandwidth of every connection on a network path, each way", (
        _path(), Argument("kbit_s", NUMBER, "the bandwidth left, in kbit/s per connection and direction", 1000.0, 0,
                          10_000_000, above_minimum=True), _hold(None))),
    FaultType("pressure_memory", "fill every API replica's memory limit with a hog in its memory group (the replica "
                                 "works at its limit: reclaim, failed charges, the OOM killer near 100%)", (
        Argument("percent", NUMBER, "the share of the memory limit in use once the hog runs, in percent", 90.0, 1, 99),
        Argument("limit_mb", INTEGER, "each replica's memory limit in MiB (the Kubernetes manifests' 512Mi)", 512,
                 64, 65_536), _hold(None))),
    FaultType("throttle_disk_io", "throttle writes to the PostgreSQL primary's data directory's device (a slow disk: "
                                  "fsync and WAL writes wait)", (
        Argument("write_kib_s", NUMBER, "write bandwidth left, in KiB/s", 1024.0, 0, 10_000_000, above_minimum=True),
        Argument("write_iops", INTEGER, "write operations per second left (0: no IOPS limit)", 100, 0, 1_000_000),
        _hold(None))),
)}

ROLLBACK_NONE = "none"  # a rollback step that undoes nothing: the platform heals by itself


def fault_type(name: str, where: str = "fault") -> FaultType:
    """The registered fault called `name`, or a UserError listing the faults there are."""
    try:
        return FAULTS[name]
    except (KeyError, TypeError):
        raise UserError(f"{where}: {name!r} is not a fault we provide. Use one of: {', '.join(FAULTS)} "
                        f"(`resilience faults` describes them).") from None


def fault_call(name: str, arguments: Mapping[str, Any] | None, where: str = "fault") -> FaultCall:
    """A checked call of a registered fault (the one way a FaultCall is made from user input)."""
    return fault_type(name, where).call(arguments, where)
