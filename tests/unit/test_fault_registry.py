"""The fault registry: one definition per fault, its bounds, and every target's answer for every fault."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

import pytest

from resilience import faults as chaos_actions
from resilience.cli import main
from resilience.config import AwsSettings, KubernetesSettings, Settings
from resilience.errors import UserError
from resilience.fault_registry import FAULTS, FaultCall, fault_call
from resilience.targets import COMPOSITIONS, make_target, nemesis_classes, support_table
from resilience.targets.local import LocalPlatform
from resilience.targets.local.nemesis import LocalNemesis
from resilience.targets.target import Target

ROOT = Path(__file__).resolve().parents[2]
CLOUD = Settings(kubernetes=KubernetesSettings(allowed_contexts=("staging",)),
                 aws=AwsSettings(allowed_accounts=("123456789012",), allowed_regions=("ap-south-1",),
                                 allowed_resources=("school-meals-db", "school-meals-cache")))

# one valid call of every fault, and the arguments each target would refuse
VALID: dict[str, dict[str, Any]] = {"kill_replicas": {"percent": 50}, "lose_zone": {"zone": "zone-a"}, "fail_over_database": {"mode": "kill"},
         "stop_cache": {"mode": "failover"}, "traffic_spike": {}, "pause_replicas": {}, "hold_replication": {},
         "corrupt_orders": {}, "lose_database": {}, "lose_region": {}, "restore_database": {"to": "latest", "repo": 2}}
VALID.update({"delay_network": {"delay_ms": 100, "jitter_ms": 20}, "drop_packets": {"percent": 5},  # issue 21
              "blackhole_network": {}, "reject_network": {}, "partition_primary": {}, "starve_cpu": {"percent": 10}})
VALID.update({"limit_bandwidth": {"kbit_s": 500}, "pressure_memory": {"percent": 90}, "throttle_disk_io": {}})


@pytest.mark.parametrize("fault,arguments,problem", [
    ("kill_replicas", {"percent": "fifty"}, "must be a number"),
    ("kill_replicas", {"percent": 0}, "must be > 0"),
    ("kill_replicas", {"percent": 100.5}, "<= 100"),
    ("kill_replicas", {"count": -1}, ">= 1"),
    ("kill_replicas", {"count": 0}, ">= 1"),
    ("kill_replicas", {"count": 2.5}, "whole number"),
    ("kill_replicas", {"count": True}, "whole number"),
    ("kill_replicas", {"count": 10_001}, "<= 10000"),
    ("kill_replicas", {}, "exactly one of 'count'"),
    ("kill_replicas", {"count": 1, "percent": 10}, "exactly one of 'count'"),
    ("kill_replicas", {"count": 1, "hold_s": math.nan}, "finite"),
    ("kill_replicas", {"count": 1, "hold_s": math.inf}, "finite"),
    ("kill_replicas", {"count": 1, "hold_s": -5}, ">= 0"),
    ("kill_replicas", {"count": 1, "hold_s": 10**9}, "<= 86400"),
    ("lose_zone", {"zone": ""}, "short text"),
    ("lose_zone", {"zone": 3}, "short text"),
    ("lose_zone", {"zone": "a", "region": "b"}, "has no argument region"),
    ("fail_over_database", {"mode": "explode"}, "use one of: kill, freeze"),
    ("stop_cache", {"mode": "failvoer"}, "use one of: failover, outage"),
    ("pause_replicas", {"hold_s": "5"}, "must be a number"),
    ("pause_replicas", [], "must be a mapping"),
])
def test_bad_arguments_are_refused_naming_the_argument(fault: str, arguments: Any, problem: str) -> None:
    with pytest.raises(UserError) as info:
        fault_call(fault, arguments, "exp.yaml: method[0]")
    assert problem in str(info.value)
    assert "exp.yaml: method[0]" in str(info.value)


def test_unknown_fault_lists_the_registry() -> None:
    with pytest.raises(UserError) as info:
        fault_call("kill_pods", {})
    assert all(name in str(info.value) for name in FAULTS)


def test_defaults_are_filled_and_hold_s_stays_with_the_run() -> None:
    assert fault_call("lose_zone", None).arguments == {"zone": "primary"}
    assert fault_call("fail_over_database", {}).arguments == {"mode": "kill"}
    assert fault_call("kill_replicas", {"percent": 50, "hold_s": 3}).arguments == {"percent": 50.0}
    assert FAULTS["pause_replicas"].check({}, "x") == {"hold_s": 5.0}


def test_every_chaos_action_takes_exactly_the_registered_arguments() -> None:
    """Chaos Toolkit validates an experiment's arguments against the function signature: they must agree."""
    for name, fault in FAULTS.items():
        signature = inspect.signature(getattr(chaos_actions, name))
        assert list(signature.parameters) == [a.name for a in fault.arguments], name
        for argument in fault.arguments:
            assert signature.parameters[argument.name].default == argument.default, (name, argument.name)
    assert set(chaos_actions.__all__) == {*FAULTS, "rollback", "platform_serving"}


def test_every_nemesis_answers_for_every_fault_that_touches_a_target() -> None:
    target_faults = {name for name, fault in FAULTS.items() if fault.touches_target}
    for name, nemesis in nemesis_classes().items():
        assert set(nemesis.support()) == target_faults, name
        for fault, why in nemesis.support().items():
            assert why is None or len(why) > 20, (name, fault)  # a refusal says why
            assert why is None or "does not know" not in why, (name, fault)  # each refusal is declared, with a reason


def test_the_platforms_home_is_one_composition() -> None:
    aws = COMPOSITIONS["aws"]
    assert aws.platform == "kubernetes" and aws.services == ("aws",)
    assert aws.nemesis_names("fail_over_database") == ("aws",) and aws.nemesis_names("kill_replicas") == ("kubernetes",)
    assert aws.nemesis_names("lose_zone") == ("kubernetes", "aws")
    table = support_table()
    assert table["aws"]["stop_cache"] is None and table["kubernetes"]["stop_cache"] is not None
    assert all(why is None for why in table["local"].values())


def _dry_target(name: str) -> Target:
    return make_target(name, CLOUD, context="staging" if COMPOSITIONS[name].needs_context else None, dry_run=True)


@pytest.mark.parametrize("target_name", list(COMPOSITIONS))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_dry_run_refuses_exactly_what_the_run_refuses_with_the_same_words(target_name: str, fault: str) -> None:
    target = _dry_target(target_name)
    call = fault_call(fault, VALID[fault])
    why = target.support()[fault]
    try:
        target.check([call])
        refused = None
    except UserError as exc:
        refused = str(exc)
    if refused is None:
        assert why is None
        lines = target.plan([call])
        assert any(line.startswith(fault) for line in lines), lines
        if FAULTS[fault].touches_target:
            assert any(line.startswith("rollback ") for line in lines), lines
        return
    with pytest.raises(UserError) as planned:
        target.plan([call])
    with pytest.raises(UserError) as injected:
        target.inject(call)
    assert str(planned.value) == str(injected.value) == refused
    assert target_name in refused and (why is None or why in refused)


@pytest.mark.parametrize("target_name,fault,arguments,words", [
    ("kubernetes", "fail_over_database", {"mode": "freeze"}, "not available on Kubernetes"),
    ("aws", "fail_over_database", {"mode": "freeze"}, "not available on RDS"),
    ("aws", "stop_cache", {"mode": "outage"}, "not available on ElastiCache"),
    ("local", "lose_zone", {"zone": "zone-x"}, "not one of the local stack's zones"),
])
def test_arguments_a_target_cannot_honour_are_refused_before_anything_runs(target_name: str, fault: str,
                                                                          arguments: dict[str, Any],
                                                                          words: str) -> None:
    target = _dry_target(target_name)
    call = fault_call(fault, arguments)
    with pytest.raises(UserError, match=words):
        target.check([call])
    with pytest.raises(UserError, match=words):
        target.inject(call)


@pytest.mark.parametrize("aws,words", [
    (AwsSettings(allowed_accounts=("123456789012",)), "not in aws.allowed_regions"),
    (AwsSettings(allowed_accounts=("123456789012",), allowed_regions=("ap-south-1",),
                 allowed_resources=("school-meals-cache",)), "DB cluster 'school-meals-db' is not in aws.allowed_resources"),
])
def test_aws_faults_outside_the_allowed_regions_and_resources_are_refused_in_the_plan(aws: AwsSettings,
                                                                                      words: str) -> None:
    settings = Settings(kubernetes=CLOUD.kubernetes, aws=aws)
    target = make_target("aws", settings, context="staging", dry_run=True)
    for fault in ("fail_over_database", "lose_zone"):
        with pytest.raises(UserError, match=words):
            target.plan([fault_call(fault, VALID[fault])])


def test_a_namespace_outside_the_allow_list_is_refused() -> None:
    settings = Settings(kubernetes=KubernetesSettings(allowed_contexts=("staging",), allowed_namespaces=("shop",)))
    target = make_target("kubernetes", settings, context="staging", dry_run=True)
    with pytest.raises(UserError, match="namespace 'school-meals' is not in kubernetes.allowed_namespaces"):
        target.check([fault_call("kill_replicas", {"count": 1})])


class RecordingPlatform(LocalPlatform):
    """A local platform whose supervisor answers from a script: the nemesis' requests are recorded, not sent."""

    def __init__(self) -> None:
        super().__init__(Settings())
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def request(self, op: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
        """A `fault` request is recorded under its fault and phase, e.g. ("lose_zone/inject", {"zone": ...})."""
        if op == "fault":
            op = f"{args.pop('fault')}/{args.pop('phase')}"
        self.requests.append((op, args))
        answers: dict[str, dict[str, Any]] = {
            "ready_replicas": {"desired": 3, "ready": 3}, "fail_over_database/inject": {"member": "postgres-1"},
            "stop_cache/inject": {"members": ["redis-1"]}, "status": {"primary_zone": "zone-b"}}
        return {"ok": True, **answers.get(op, {})}

    def ready_replicas(self) -> int:
        return 3


@pytest.mark.parametrize("fault", [name for name, fault in FAULTS.items() if fault.touches_target])
def test_local_plan_names_the_rollback_that_the_injection_returns(fault: str) -> None:
    platform = RecordingPlatform()
    nemesis = LocalNemesis(platform)
    call = fault_call(fault, VALID[fault])
    step = nemesis.inject(call, seed=7)
    assert f"rollback {step.capability}:" in "\n".join(nemesis.plan(call))
    nemesis.rollback(step)
    assert platform.requests, "the nemesis asked the supervisor for nothing"


def test_zone_primary_is_the_database_primarys_zone() -> None:
    platform = RecordingPlatform()
    target = Target(COMPOSITIONS["local"], platform, {"local": LocalNemesis(platform)})
    step = target.inject(fault_call("lose_zone", {}))
    assert step.arguments == {"zone": "zone-b"} and step.nemesis == "local"
    assert ("lose_zone/inject", {"zone": "zone-b"}) in platform.requests


def test_kill_replicas_gets_the_runs_seed_unless_the_experiment_names_one() -> None:
    platform = RecordingPlatform()
    nemesis = LocalNemesis(platform)
    nemesis.inject(fault_call("kill_replicas", {"count": 1}), seed=7)
    nemesis.inject(fault_call("kill_replicas", {"count": 1, "seed": 3}), seed=7)
    seeds = [args["seed"] for op, args in platform.requests if op == "kill_replicas/inject"]
    assert seeds == [7, 3]


def test_faults_json_lists_every_fault_with_arguments_and_support(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["faults", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in data["faults"]] == list(FAULTS)
    kill = data["faults"][0]
    percent = next(a for a in kill["arguments"] if a["name"] == "percent")
    assert percent["exclusive_minimum"] == 0 and percent["maximum"] == 100 and percent["type"] == "number"
    for fault in data["faults"]:
        assert set(fault["targets"]) == set(COMPOSITIONS)
        for support in fault["targets"].values():
            assert support["supported"] or support["why_not"]
    assert main(["faults"]) == 0
    assert "on kubernetes" in capsys.readouterr().out


def test_an_experiment_with_a_bad_fault_argument_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "experiments" / "pod-kill.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("percent: 50", "percent: fifty"))
    assert "percent: fifty" in bad.read_text()
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "argument percent must be a number" in err and "bad.yaml" in err


def test_dry_run_of_a_fault_the_target_refuses_is_exit_2_with_the_runs_words(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "resilience.yaml"
    config.write_text("kubernetes:\n  allowed_contexts: [staging]\n")
    assert main(["run", "redis-failover", "--target", "kubernetes", "--context", "staging", "--dry-run",
                 "--config", str(config)]) == 2
    assert "stop_cache cannot run on the kubernetes target: Redis is AWS ElastiCache" in capsys.readouterr().err


def test_local_dry_run_prints_the_plan_and_touches_nothing(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESILIENCE_STATE_DIR", str(tmp_path / "state"))
    assert main(["run", "zone-failure", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "lose_zone: cut zone <the zone of the PostgreSQL primary" in out and "rollback restore_zone" in out
    assert not (tmp_path / "state").exists()


def test_fault_call_is_plain_data() -> None:
    call = FaultCall("lose_zone", {"zone": "zone-a"})
    assert call.to_json() == {"fault": "lose_zone", "arguments": {"zone": "zone-a"}}


def test_a_database_failover_on_kubernetes_needs_an_in_cluster_database() -> None:
    from dataclasses import replace
    call = fault_call("fail_over_database", {})
    with pytest.raises(UserError, match="PostgreSQL is external .*use --target aws"):
        _dry_target("kubernetes").check([call])
    in_cluster = replace(CLOUD, kubernetes=replace(CLOUD.kubernetes, database="cloudnativepg"))
    target = make_target("kubernetes", in_cluster, context="staging", dry_run=True)
    assert any("cnpg.io/instanceRole=primary" in line for line in target.plan([call]))
