"""Issue 21's network faults on the local stack, without a stack: what each module asks the supervisor, what
its measurement must show to count as in effect, and that a fault that silently did not apply leaves the
run inconclusive (never a pass)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from resilience.checkers import compute
from resilience.checkers.measurement import INCONCLUSIVE, verdict
from resilience.config import Settings, Targets
from resilience.effect_watch import EffectWatch
from resilience.fault_registry import fault_call
from resilience.history import FAULT, History, Record
from resilience.targets.base import RollbackStep
from resilience.targets.fault_module import InjectContext
from resilience.targets.local import LocalPlatform
from resilience.targets.local.faults import FAULTS
from resilience.targets.local.nemesis import LocalNemesis
from resilience.targets.local.netfaults import NFT_TABLE, loss_script, summarize

BASELINE = {"samples": 12, "answered": 12, "timeout": 0, "reset": 0, "refused": 0, "closed": 0, "rtt_p50_ms": 0.4}


class ScriptedSupervisor(LocalPlatform):
    """Answers the fault requests from a script: `during` is what a measurement of the path shows."""

    def __init__(self, during: dict[str, Any]) -> None:
        super().__init__(Settings())
        self.during = during
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def request(self, op: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
        phase = f"{args.pop('fault')}/{args.pop('phase')}" if op == "fault" else op
        self.requests.append((phase, args))
        if phase.endswith("/inject"):
            return {"ok": True, "baseline": BASELINE, "mechanism": "proxy"}
        return {"ok": True, **(self.during if phase.endswith("/measure") else {})}


def _effect_facts(fault: str, arguments: dict[str, Any], during: dict[str, Any]) -> tuple[Any, ScriptedSupervisor]:
    platform = ScriptedSupervisor(during)
    nemesis = LocalNemesis(platform)
    call = fault_call(fault, arguments)
    module = FAULTS.load().modules[fault]
    step = module.inject(nemesis, call, InjectContext())
    effect = module.effect(nemesis, call, step)
    return effect, platform


def test_delay_is_in_effect_only_when_the_path_measures_slower() -> None:
    slow = {**BASELINE, "rtt_p50_ms": 101.2, "rtt_p99_ms": 119.0}
    effect, platform = _effect_facts("delay_network", {"delay_ms": 100, "jitter_ms": 20}, slow)
    facts = effect.look()
    assert facts["injected_rtt_ms"] == pytest.approx(100.8) and facts["mechanism"] == "proxy"
    assert facts["baseline"]["rtt_p50_ms"] == 0.4 and facts["during"]["rtt_p99_ms"] == 119.0
    assert platform.requests[0] == ("delay_network/inject", {"path": "api-database", "delay_ms": 100.0,
                                                             "jitter_ms": 20.0})
    unchanged, _ = _effect_facts("delay_network", {"delay_ms": 100}, {**BASELINE, "rtt_p50_ms": 0.5})
    assert unchanged.look() is None


def test_a_delay_that_did_not_take_effect_makes_the_run_inconclusive() -> None:
    effect, _ = _effect_facts("delay_network", {"delay_ms": 100}, dict(BASELINE))  # the path is as fast as before
    history = History()
    watch = EffectWatch(history, lambda _: None, poll_s=0.01)
    watch.start("delay_network", 10.0, [dataclasses.replace(effect, deadline_s=0.05)])
    time.sleep(0.3)
    watch.stop()
    [missed] = [r for r in history.records if r.source == FAULT and r.op == "effect"]
    assert missed.status == "fail" and "round trips on api-database 100 ms slower" in missed.detail["reason"]
    records = [Record(1.0, "phase", "steady", "info"),
               Record(10.0, FAULT, "inject", "ok", detail={"capability": "delay_network"}),
               Record(10.0, "phase", "fault", "info"), Record(30.0, "phase", "recovery", "info"),
               Record(40.0, "phase", "end", "info"), missed]
    records += [Record(i * 0.1, "load", "GET /menu", "ok", 0.01) for i in range(400)]
    measured = compute(records, targets=Targets(availability=0.99, p99_ms=200), measures=["availability", "p99"])
    judged = [m for m in measured if m.target is not None]  # availability and P99, judged with the fault
    assert judged and all(m.status == INCONCLUSIVE for m in judged)
    assert verdict(measured) == "inconclusive"


@pytest.mark.parametrize("fault,during,seen", [
    ("drop_packets", {**BASELINE, "nft": {"seen": 200, "dropped": 9}}, True),
    ("drop_packets", {**BASELINE, "nft": {"seen": 200, "dropped": 0}}, False),
    ("blackhole_network", {"samples": 3, "answered": 0, "timeout": 3, "reset": 0}, True),
    ("blackhole_network", {"samples": 3, "answered": 1, "timeout": 2, "reset": 0}, False),
    ("reject_network", {"samples": 4, "answered": 0, "timeout": 0, "reset": 4}, True),
    ("reject_network", {"samples": 4, "answered": 0, "timeout": 4, "reset": 0}, False),  # a blackhole, not a reject
])
def test_what_shows_each_network_fault(fault: str, during: dict[str, Any], seen: bool) -> None:
    effect, _ = _effect_facts(fault, {"percent": 5} if fault == "drop_packets" else {}, during)
    facts = effect.look()
    assert (facts is not None) == seen
    if fault == "drop_packets" and seen:
        assert facts["observed_loss_pct"] == 4.5


def test_undo_names_the_path_and_the_rollback_step_is_the_modules() -> None:
    platform = ScriptedSupervisor({})
    nemesis = LocalNemesis(platform)
    step = nemesis.inject(fault_call("drop_packets", {"percent": 5}))
    assert step.capability == "clear_packet_loss"
    nemesis.rollback(RollbackStep(step.capability, step.arguments, ""))
    assert platform.requests[-1] == ("drop_packets/undo", {"path": "api-database"})


def test_the_loss_table_is_ours_and_counts_both_ways() -> None:
    script = loss_script([5541, 5542], 5)
    assert f"table inet {NFT_TABLE}" in script and NFT_TABLE.startswith("rsl-")
    assert script.count("numgen random mod 100 < 5 counter drop") == 2
    assert "tcp dport { 5541, 5542 }" in script and "tcp sport { 5541, 5542 }" in script


def test_summarize_round_trips() -> None:
    out = summarize([("ok", 0.1), ("ok", 0.12), ("timeout", 1.0), ("reset", 0.001)])
    assert out["answered"] == 2 and out["timeout"] == 1 and out["reset"] == 1 and out["rtt_p50_ms"] == 110.0


@pytest.mark.parametrize("arguments,problem", [({"delay_ms": 0}, "must be > 0"), ({"path": "api-moon"}, "use one of"),
                                               ({"jitter_ms": -1}, ">= 0")])
def test_bad_arguments_are_refused(arguments: dict[str, Any], problem: str) -> None:
    from resilience.errors import UserError
    with pytest.raises(UserError, match=problem):
        fault_call("delay_network", arguments)
    with pytest.raises(UserError, match="give 'percent'"):
        fault_call("drop_packets", {})
