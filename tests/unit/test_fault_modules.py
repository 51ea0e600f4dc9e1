"""Fault modules (targets/<target>/faults/): found by the nemeses, their rollback steps routed, the local
supervisor's one `fault` op dispatched to them, and a new fault added by one module with no other file changed."""

from __future__ import annotations

import dataclasses
import importlib
import signal
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from resilience.config import Settings, StackSettings, load_settings
from resilience.errors import UserError
from resilience.fault_registry import FAULTS, fault_call
from resilience.fault_table import faults_json
from resilience.targets import COMPOSITIONS, make_target, nemesis_classes
from resilience.targets.base import RollbackStep
from resilience.targets.fault_module import ModularNemesis
from resilience.targets.local import LocalPlatform
from resilience.targets.local.control import ControlServer
from resilience.targets.local.events import LoopGuard
from resilience.targets.local.faults import FAULTS as LOCAL_FAULTS
from resilience.targets.local.faults.fail_over_database import FailOverDatabase
from resilience.targets.local.faults.hold_replication import HoldReplication
from resilience.targets.local.faults.kill_replicas import KillReplicas
from resilience.targets.local.faults.lose_zone import LoseZone
from resilience.targets.local.faults.pause_replicas import PauseReplicas
from resilience.targets.local.injector import FaultInjector, StackParts
from resilience.targets.local.nemesis import LocalNemesis
from resilience.targets.local.topology import POSTGRES, REDIS, ComponentId, Topology
from test_fault_registry import CLOUD, VALID

SETTINGS = load_settings(None).stack
TOPOLOGY = Topology(SETTINGS.zones)

# the rollback step names earlier versions wrote into rollback.json: `resilience rollback` must still route them
OLD_STEPS = {"local": {"wait_replicas", "restore_zone", "restore_db", "restore_cache", "resume_replicas",
                       "resume_replication"},
             "kubernetes": {"restore_zone", "scale_replicas"}, "aws": {"restore_zone"}}


# -- discovery and routing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(nemesis_classes()))
def test_each_step_name_has_one_owner_and_old_names_still_route(name: str) -> None:
    nemesis = nemesis_classes()[name]
    assert issubclass(nemesis, ModularNemesis)
    owners = nemesis.FAULTS.step_owners()  # raises when two modules of one nemesis claim one name
    assert OLD_STEPS[name] <= {*owners, "scale_replicas"}, name
    for step, module in owners.items():
        assert module.fault in FAULTS and step in module.steps


def _dry(name: str) -> Any:
    return make_target(name, CLOUD, context="staging" if COMPOSITIONS[name].needs_context else None, dry_run=True)


@pytest.mark.parametrize("target_name", list(COMPOSITIONS))
def test_every_step_a_plan_names_is_routed_by_its_nemesis(target_name: str) -> None:
    """A step any module can emit (its plan says `rollback <step>:`) has an owner, or is `none`."""
    target = _dry(target_name)
    for fault, why in target.support().items():
        if why is not None or not FAULTS[fault].touches_target:
            continue
        call = fault_call(fault, VALID[fault])
        for name in target.composition.nemesis_names(fault):  # each module's plan, refused here or not
            nemesis = target.nemeses[name]
            named = {line.split()[1].rstrip(":") for line in nemesis.plan(call) if line.startswith("rollback ")}
            assert named and named <= set(nemesis.known_steps()), (target_name, fault, named)


def test_each_local_injection_returns_a_step_its_own_module_undoes() -> None:
    from test_fault_registry import RecordingPlatform
    platform = RecordingPlatform()
    nemesis = LocalNemesis(platform)
    owners = LOCAL_FAULTS.step_owners()
    for fault, why in nemesis.support().items():
        assert why is None
        step = nemesis.inject(fault_call(fault, VALID[fault]), seed=1)
        assert owners[step.capability].fault == fault


def test_a_step_no_module_owns_is_refused_before_anything_is_done() -> None:
    target = _dry("local")
    with pytest.raises(UserError, match="has no rollback 'restore_everything'"):
        target.rollback(RollbackStep("restore_everything", {}, "", "local"))


# -- the supervisor's side, with stub parts -----------------------------------------------------------------------

class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, source: str, op: str, /, **detail: Any) -> None:
        self.seen.append((source, op, detail))


class FakeReplicas:
    def __init__(self) -> None:
        self.signals: list[int] = []
        self.lost: list[str] = []

    def signal_all(self, sig: int) -> list[str]:
        self.signals.append(sig)
        return ["api-1", "api-2"]

    def lose_zone(self, zone: str) -> list[str]:
        self.lost.append(zone)
        return [f"api-{zone}"]

    def drop_lost(self, zone: str) -> None:
        self.lost.remove(zone)


class FakeExecutor:
    def kill(self) -> None:
        pass


class FakeProcesses:
    def __init__(self) -> None:
        self.services = set(TOPOLOGY.services)
        self.paused: set[ComponentId] = set()
        self.stopped: set[ComponentId] = set()
        self.done: list[tuple[str, str]] = []

    def freeze(self, c: ComponentId) -> None:
        self.paused.add(c)
        self.done.append(("freeze", c.name))

    def kill(self, c: ComponentId, reap: bool = True) -> None:
        self.stopped.add(c)
        self.done.append(("kill", c.name))

    def kill_frozen(self, c: ComponentId) -> None:
        self.paused.discard(c)
        self.done.append(("kill_frozen", c.name))

    def thaw(self, c: ComponentId) -> None:
        self.paused.discard(c)
        self.done.append(("thaw", c.name))

    def reap_killed(self, c: ComponentId) -> None:
        pass

    def executor(self, c: ComponentId) -> FakeExecutor:
        return FakeExecutor()

    def restart(self, c: ComponentId, redis_master: str | None = None) -> None:
        self.stopped.discard(c)
        self.done.append(("restart", c.name))

    def alive(self, c: ComponentId) -> bool:
        return c not in self.stopped


class FakeMonitor:
    def __init__(self, leader: str | None) -> None:
        from resilience.targets.local.monitor import Health, Observation
        obs = Observation(1.0, {}, addresses={}, sentinels={})
        self.current = Health(obs, {}, {}, {})
        self.leader = leader

    def refresh(self) -> Any:
        observation: Any = FakeObservation(self.leader)
        return dataclasses.replace(self.current, observation=observation)

    def primary_zone(self, observation: Any) -> str:
        return SETTINGS.zones[0]


class FakeProbes:
    def etcd_healthy(self, c: ComponentId) -> bool:
        return True


@dataclasses.dataclass
class FakeObservation:
    pg_leader: str | None
    redis_master: str | None = None


def stub_parts(leader: str | None = "postgres-1") -> tuple[StackParts, Events, FakeProcesses, FakeReplicas]:
    events, processes, replicas = Events(), FakeProcesses(), FakeReplicas()
    untyped: Any = None
    parts = StackParts(SETTINGS, TOPOLOGY, zones=untyped, zone_mode="process", probes=untyped, processes=untyped,
                       replicas=untyped, monitor=untyped, events=events, lock=threading.RLock())
    stubs: Any = (processes, replicas, FakeMonitor(leader), FakeProbes())
    parts.processes, parts.replicas, parts.monitor, parts.probes = stubs
    return parts, events, processes, replicas


def test_the_fault_op_names_what_exists_when_a_fault_or_phase_is_unknown() -> None:
    injector = FaultInjector(stub_parts()[0])
    with pytest.raises(UserError, match="no fault 'melt_down'.*kill_replicas"):
        injector.phase({"op": "fault", "fault": "melt_down", "phase": "inject"})
    with pytest.raises(UserError, match="no phase 'undo'; its phases are: inject"):
        injector.phase({"op": "fault", "fault": "kill_replicas", "phase": "undo"})
    module, phase = injector.phase({"op": "fault", "fault": "lose_zone", "phase": "undo"})
    assert isinstance(module, LoseZone)


def test_a_lost_zone_is_frozen_and_comes_back_with_events_in_the_registrys_words() -> None:
    parts, events, processes, replicas = stub_parts()
    zone = SETTINGS.zones[1]
    lost = LoseZone().lose(parts, {"zone": zone})
    assert parts.lost() == {zone} and replicas.lost == [zone]
    assert set(lost["services"]) == {c.name for c in TOPOLOGY.in_zone(zone)}
    assert all(c in processes.paused for c in TOPOLOGY.in_zone(zone))
    back = LoseZone().restore(parts, {"zone": zone})
    assert back["restored"] and parts.lost() == frozenset() and not processes.paused
    assert LoseZone().rejoins("undo", {}, back) == back["services"]
    assert [(op, d["phase"]) for _, op, d in events.seen] == [("lose_zone", "inject"), ("lose_zone", "undo")]
    assert LoseZone().restore(parts, {"zone": zone}) == {"zone": zone, "restored": False}  # safe twice
    with pytest.raises(UserError, match="unknown zone"):
        LoseZone().lose(parts, {"zone": "zone-x"})


def test_pause_replicas_stops_and_continues_every_replica() -> None:
    parts, events, _, replicas = stub_parts()
    PauseReplicas().pause(parts, {})
    PauseReplicas().resume(parts, {})
    assert replicas.signals == [signal.SIGSTOP, signal.SIGCONT]
    assert [(op, d["phase"]) for _, op, d in events.seen] == [("pause_replicas", "inject"), ("pause_replicas", "undo")]


def test_the_database_primary_is_killed_or_frozen_and_restarted() -> None:
    parts, events, processes, _ = stub_parts()
    assert FailOverDatabase().take_primary(parts, {"mode": "freeze"}) == {"member": "postgres-1", "mode": "freeze"}
    FailOverDatabase().restore(parts, {"member": "postgres-1"})
    assert processes.done == [("freeze", "postgres-1"), ("kill_frozen", "postgres-1"), ("restart", "postgres-1")]
    with pytest.raises(UserError, match="use kill or freeze"):
        FailOverDatabase().take_primary(parts, {"mode": "melt"})


def test_released_wal_senders_are_the_held_ones_and_only_once() -> None:
    parts, events, _, _ = stub_parts()
    parts.state["hold_replication"] = [2**22 + 1]  # no such process: released all the same
    assert HoldReplication().release(parts, {}) == {"pids": [2**22 + 1]}
    assert HoldReplication().release(parts, {}) == {"pids": []}


def test_a_heal_undoes_what_each_module_left_then_any_process_still_down() -> None:
    parts, events, processes, replicas = stub_parts()
    zone = SETTINGS.zones[2]
    LoseZone().lose(parts, {"zone": zone})
    primary = TOPOLOGY.named("postgres-1")
    redis = next(c for c in TOPOLOGY.members(REDIS) if c.zone != zone)
    processes.kill(primary)
    processes.kill(redis)
    FaultInjector(parts).heal()
    assert parts.lost() == frozenset() and not processes.paused and not processes.stopped
    assert signal.SIGCONT in replicas.signals
    assert ("restart", primary.name) in processes.done and ("restart", redis.name) in processes.done
    assert events.seen[-1][:2] == ("fault", "heal")
    assert [e[1] for e in events.seen if e[1] == "fail_over_database"] == ["fail_over_database"]  # restored its way
    assert primary.kind == POSTGRES


def test_kill_replicas_has_no_undo_phase_in_the_supervisor() -> None:
    assert set(KillReplicas().phases()) == {"inject"}


# -- a new fault: the registry entry and one module, nothing else ---------------------------------------------

PLUGIN = '''
"""A throw-away fault: flips a flag in the supervisor, and flips it back."""

from resilience.fault_registry import FAULTS, Argument, FaultType, _hold
from resilience.targets.base import RollbackStep
from resilience.targets.local.faults import FAULTS as LOCAL, LocalFault

FAULTS["flip_flag"] = FaultType("flip_flag", "flip a flag in the supervisor (a test's fault)", (
    Argument("flag", "text", "which flag", "red"), _hold(None)))


@LOCAL.register
class FlipFlag(LocalFault):
    fault = "flip_flag"
    steps = ("unflip_flag",)

    def plan(self, nemesis, call):
        return [f"flip_flag: flip {call.get('flag')}", "rollback unflip_flag: flip it back"]

    def inject(self, nemesis, call, context):
        nemesis.ask(self.fault, "inject", flag=call.get("flag"))
        return RollbackStep("unflip_flag", {"flag": call.get("flag")}, "flip it back")

    def undo(self, nemesis, step):
        nemesis.ask(self.fault, "undo", flag=step.arguments["flag"])

    def phases(self):
        return {"inject": self.flip, "undo": self.unflip}

    def flip(self, parts, request):
        parts.state.setdefault(self.fault, set()).add(request["flag"])
        parts.event(self.fault, "inject", flag=request["flag"])
        return {}

    def unflip(self, parts, request):
        parts.state[self.fault].discard(request["flag"])
        parts.event(self.fault, "undo", flag=request["flag"])
        return {}
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / "flip_flag_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FAULTS, "flip_flag", FAULTS["kill_replicas"])  # restored (removed) after the test
    del FAULTS["flip_flag"]
    importlib.import_module("flip_flag_plugin")
    try:
        yield
    finally:
        LOCAL_FAULTS.unregister("flip_flag")
        sys.modules.pop("flip_flag_plugin", None)


def test_a_new_fault_is_listed_planned_injected_and_undone_from_its_one_module(
        plugin: None, tmp_path: Path) -> None:
    listed = next(f for f in faults_json()["faults"] if f["name"] == "flip_flag")
    assert listed["targets"]["local"] == {"supported": True}
    assert listed["targets"]["kubernetes"]["supported"] is False  # no kubernetes module: said so, not a crash

    call = fault_call("flip_flag", {"flag": "blue"})
    assert _dry("local").plan([call])[-2:] == ["flip_flag: flip blue", "rollback unflip_flag: flip it back"]

    # injected and undone through the local nemesis and a real control socket, against stub supervisor parts
    settings = Settings(stack=StackSettings(state_dir=str(tmp_path / "state")))
    (tmp_path / "state").mkdir()
    parts, events, _, _ = stub_parts()
    injector = FaultInjector(parts)
    untyped: Any = None
    server = ControlServer("http://stub", "process", untyped, untyped, untyped, untyped, injector, untyped,
                           LoopGuard(events), threading.Event()).serve(tmp_path / "state" / "control.sock")
    try:
        target = make_target("local", settings)
        step = target.inject(call)
        assert parts.state["flip_flag"] == {"blue"} and step.capability == "unflip_flag"
        target.rollback(step)
        assert parts.state["flip_flag"] == set()
    finally:
        server.shutdown()
        server.server_close()
    assert [(op, d["phase"]) for _, op, d in events.seen] == [("flip_flag", "inject"), ("flip_flag", "undo")]
    assert isinstance(target.platform, LocalPlatform)


def test_a_heal_keeps_its_order_zones_replicas_processes_then_wal_senders() -> None:
    parts, events, processes, _ = stub_parts()
    LoseZone().lose(parts, {"zone": SETTINGS.zones[0]})
    processes.kill(TOPOLOGY.named("postgres-2"))
    parts.state["hold_replication"] = []
    events.seen.clear()
    FaultInjector(parts).heal()
    assert [(op, d.get("phase")) for _, op, d in events.seen] == [
        ("lose_zone", "undo"), ("pause_replicas", "undo"), ("fail_over_database", "undo"),
        ("hold_replication", "undo"), ("heal", None)]
