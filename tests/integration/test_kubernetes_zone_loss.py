"""A zone loss on Kubernetes that holds, and a rollback that undoes only what this run did (issue 18 item 3):
the node allow-list, the cordon mark, the guard against new nodes in the lost zone, replica bounds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import KubernetesSettings, Settings  # noqa: E402
from resilience.errors import UserError  # noqa: E402
from resilience.fault_registry import fault_call  # noqa: E402
from resilience.targets.base import RollbackStep  # noqa: E402
from resilience.targets.kubernetes.cordon import CORDONED_BY  # noqa: E402
from resilience.targets.kubernetes.platform import KubernetesPlatform  # noqa: E402
from tests.fakes.kube_api import FakeKubeApi  # noqa: E402
from tests.integration.test_kubernetes_target import (CONTEXT, NS, fake, nemesis, settings, target,  # noqa: E402,F401
                                                      wait_until)


def node(fake: FakeKubeApi, name: str) -> dict:
    found = fake.get("nodes", name)
    assert found is not None, name
    return found


def cordoned(fake: FakeKubeApi, name: str) -> bool:
    return bool(node(fake, name)["spec"].get("unschedulable"))


def mark_of(fake: FakeKubeApi, name: str) -> str | None:
    return node(fake, name)["metadata"].get("annotations", {}).get(CORDONED_BY)


def operator_cordons(fake: FakeKubeApi, name: str, zone: str) -> None:
    """Someone else's cordon: a node added unschedulable, no mark."""
    fake.add_node(name, zone)
    with fake._lock:
        obj = fake.store.require(("api/v1", "nodes", None, name))
        fake.store.put(("api/v1", "nodes", None, name), {**obj, "spec": {"unschedulable": True}})


def test_every_node_the_run_cordons_carries_its_mark_and_only_those_are_uncordoned(
        fake: FakeKubeApi, settings: Settings) -> None:
    t = target(settings)
    t.up()
    operator_cordons(fake, "node-zone-b-ops", "zone-b")
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    mark = step.arguments["mark"]
    assert mark and mark_of(fake, "node-zone-b-1") == mark and cordoned(fake, "node-zone-b-1")
    assert step.arguments["already_cordoned"] == ["node-zone-b-ops"] and mark_of(fake, "node-zone-b-ops") is None
    t.rollback(step)
    assert not cordoned(fake, "node-zone-b-1") and mark_of(fake, "node-zone-b-1") is None
    assert cordoned(fake, "node-zone-b-ops")  # the operator's cordon stands


def test_a_forged_rollback_json_without_already_cordoned_uncordons_nothing_else(
        fake: FakeKubeApi, settings: Settings, tmp_path: Path) -> None:
    """The file claims the operator's node as ours (no `already_cordoned`, a made-up mark): it carries no mark,
    so `resilience rollback` leaves it cordoned; a step with no mark at all is refused outright."""
    from resilience.recheck import replay_rollbacks
    t = target(settings)
    t.up()
    operator_cordons(fake, "node-zone-a-ops", "zone-a")
    steps = [{"fault": "lose_zone", "arguments": {}, "status": "pending",
              "step": {"capability": "restore_zone", "description": "uncordon", "nemesis": "kubernetes",
                       "arguments": arguments}}
             for arguments in ({"zone": "zone-a", "nodes": ["node-zone-a-ops"], "mark": "20260101T000000Z-forged"},
                               {"zone": "zone-a", "nodes": ["node-zone-a-ops"]})]
    (tmp_path / "rollback.json").write_text(json.dumps({"target": "kubernetes", "context": CONTEXT, "config": None,
                                                        "steps": steps}))
    before = len(fake.mutating_requests())
    replay = replay_rollbacks(tmp_path, t)
    assert replay.failed == 1 and "no resilience.dev/cordoned-by mark" in "\n".join(replay.lines)
    assert cordoned(fake, "node-zone-a-ops")
    assert len(fake.mutating_requests()) == before  # not a single write


def test_only_nodes_matching_the_node_selector_are_cordoned(fake: FakeKubeApi) -> None:
    s = Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace=NS,
                                               node_selector="chaos=allowed"))
    fake.add_node("node-zone-b-app", "zone-b", labels={"chaos": "allowed"})
    t = target(s)
    t.up()
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    assert step.arguments["nodes"] == ["node-zone-b-app"] and step.arguments["outside_selector"] == ["node-zone-b-1"]
    assert cordoned(fake, "node-zone-b-app") and not cordoned(fake, "node-zone-b-1")
    assert "chaos=allowed" in "\n".join(t.plan([fault_call("lose_zone", {"zone": "zone-b"})]))
    t.rollback(step)
    assert not cordoned(fake, "node-zone-b-app")


def test_a_node_that_appears_in_the_lost_zone_is_cordoned_until_the_rollback(
        fake: FakeKubeApi, settings: Settings) -> None:
    """Cluster Autoscaler / Karpenter start a fresh node in the lost zone: the guard cordons and marks it
    before it can take the evicted pods, and the rollback uncordons it with the rest."""
    t = target(settings)
    t.up()
    step = t.inject(fault_call("lose_zone", {"zone": "zone-b"}))
    fake.add_node("node-zone-b-new", "zone-b")
    wait_until(lambda: cordoned(fake, "node-zone-b-new"), 10, "the guard to cordon the new node")
    assert mark_of(fake, "node-zone-b-new") == step.arguments["mark"]
    fake.add_node("node-zone-c-new", "zone-c")  # another zone: none of the guard's business
    t.rollback(step)
    assert not cordoned(fake, "node-zone-b-new") and not cordoned(fake, "node-zone-b-1")
    assert not cordoned(fake, "node-zone-c-new")
    fake.add_node("node-zone-b-later", "zone-b")  # after the rollback the guard is gone
    import time
    time.sleep(1.5)
    assert not cordoned(fake, "node-zone-b-later")


def test_replica_steps_are_bounded_by_the_hpa(fake: FakeKubeApi, settings: Settings) -> None:
    t = target(settings)
    t.up()
    platform = t.platform
    assert isinstance(platform, KubernetesPlatform)
    low, high = platform.replica_bounds()
    assert (low, high) == (6, 50)
    with pytest.raises(UserError, match="outside 6..50"):
        nemesis(t).scale_replicas(0)
    before = len(fake.mutating_requests())
    for replicas in (0, 5, 51, "6", True):
        with pytest.raises(UserError, match="outside what this target may touch"):
            t.rollback(RollbackStep("scale_replicas", {"replicas": replicas}, "", "kubernetes"))
    assert len(fake.mutating_requests()) == before
    t.rollback(RollbackStep("scale_replicas", {"replicas": 7}, "", "kubernetes"))
    assert platform.desired_replicas() == 7
