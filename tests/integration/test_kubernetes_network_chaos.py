"""Network faults on the kubernetes target: Chaos Mesh NetworkChaos through the official client, against the fake
API server's Chaos Mesh (tests/fakes/kube/chaosmesh.py), which follows the documentation:

- https://chaos-mesh.org/docs/simulate-network-chaos-on-kubernetes/ : `action` delay (`delay.latency`,
  `jitter`), loss (`loss.loss`, percent), partition; `selector`, `mode`, `direction`, `target` /
  `externalTargets`; `duration` (Chaos Mesh recovers by itself when it ends);
- the API reference's ChaosStatus: conditions Selected, AllInjected, AllRecovered, Paused;
- a group the API server does not serve answers 404 to discovery: refused while the CRDs are absent.
The fault's effect is measured on the modelled path (tests/fakes/netpath_app.py) through the API's
probe endpoint, never assumed from the object's status.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import KubernetesSettings, Settings  # noqa: E402
from resilience.errors import UserError  # noqa: E402
from resilience.fault_registry import FAULTS, fault_call  # noqa: E402
from resilience.targets.base import RollbackStep  # noqa: E402
from resilience.targets.fault_module import InjectContext  # noqa: E402
from resilience.targets.kubernetes.chaosmesh import GROUP, PLURAL, VERSION, condition  # noqa: E402
from resilience.targets.kubernetes.nemesis import KubernetesNemesis  # noqa: E402
from resilience.targets.recovery_log import RecoveryLog  # noqa: E402
from tests.fakes.kube.chaosmesh import ChaosMeshKubeApi  # noqa: E402
from tests.fakes.kube.testing import api_client, deployment, namespace  # noqa: E402
from tests.fakes.kube_api import ApiError  # noqa: E402
from tests.fakes.netpath_app import FakePathApp, PathState  # noqa: E402
from tests.fakes.waiting import wait_for  # noqa: E402

NS = "school-meals"
APP_LABELS = {"app.kubernetes.io/name": "school-meals-api"}


class Platform:
    """What the kubernetes nemesis and chaosmesh.py use of KubernetesPlatform (url: the API's address)."""

    def __init__(self, fake: ChaosMeshKubeApi, app: FakePathApp, database: str = "cloudnativepg") -> None:
        self.settings = Settings(kubernetes=KubernetesSettings(namespace=NS, database=database,
                                                               database_host="db.example.internal"))
        self.namespace = NS
        self.recovery = RecoveryLog()
        self._api = api_client(fake)
        self.app = app

    def core(self) -> Any:
        from kubernetes import client
        return client.CoreV1Api(self._api)

    def url(self) -> str:
        return self.app.url


@pytest.fixture
def path() -> PathState:
    return PathState()


@pytest.fixture
def kube() -> Iterator[ChaosMeshKubeApi]:
    with ChaosMeshKubeApi(time_scale=0.01) as fake:
        from kubernetes import client
        api = api_client(fake)
        client.CoreV1Api(api).create_namespace(namespace(NS))
        client.AppsV1Api(api).create_namespaced_deployment(NS, deployment("school-meals-api", 2, labels=APP_LABELS))
        yield fake


@pytest.fixture
def app(path: PathState) -> Iterator[FakePathApp]:
    with FakePathApp(path, base_ms=5.0, db_timeout_s=0.3) as served:
        yield served


def nemesis(kube: ChaosMeshKubeApi, app: FakePathApp, **options: Any) -> KubernetesNemesis:
    return KubernetesNemesis(Platform(kube, app, **options))  # type: ignore[arg-type]


def inject(nem: KubernetesNemesis, fault: str, **arguments: Any) -> tuple[RollbackStep, Any]:
    call = fault_call(fault, arguments)
    assert nem.argument_refusal(call) is None
    recorded: list[RollbackStep] = []
    step = nem.inject(call, record=recorded.append)
    assert recorded and recorded[-1].arguments["name"] == step.arguments["name"]  # in rollback.json before acting
    return step, call


def chaos_object(kube: ChaosMeshKubeApi, name: str) -> dict[str, Any] | None:
    return kube.get(PLURAL, name, NS)


def test_refused_while_chaos_mesh_is_not_installed(kube: ChaosMeshKubeApi, app: FakePathApp) -> None:
    nem = nemesis(kube, app)
    with pytest.raises(UserError, match="Chaos Mesh is not installed.*CRDs are absent"):
        nem.inject(fault_call("delay_network", {"delay_ms": 100}))
    assert not kube.objects(PLURAL, NS)


def test_reject_is_refused_with_the_reason() -> None:
    why = KubernetesNemesis.support()["reject_network"]
    assert why is not None and "no reset action" in why
    assert all(KubernetesNemesis.support()[f] is None for f in ("delay_network", "drop_packets", "blackhole_network"))


def test_delay_is_a_network_chaos_measured_on_the_path_and_deleted_on_undo(
        kube: ChaosMeshKubeApi, app: FakePathApp, path: PathState) -> None:
    kube.install_chaos_mesh(path)
    nem = nemesis(kube, app)
    step, call = inject(nem, "delay_network", delay_ms=150, jitter_ms=10)
    found = chaos_object(kube, step.arguments["name"])
    assert found is not None
    spec = found["spec"]
    assert spec["action"] == "delay" and spec["delay"]["latency"] == "150ms" and spec["delay"]["jitter"] == "10ms"
    assert spec["selector"] == {"namespaces": [NS], "labelSelectors": APP_LABELS} and spec["mode"] == "all"
    assert spec["target"]["selector"]["labelSelectors"] == {"cnpg.io/cluster": "school-meals-db"}
    assert spec["direction"] == "to" and spec["duration"] == "900s"  # Chaos Mesh ends it then if the run never does
    assert found["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "resilience"
    effect = nem.effect(call, step)
    assert effect is not None and not effect.in_call
    seen = wait_for(effect.look, timeout_s=15, what="the delay measured on the path")
    assert seen["injected_rtt_ms"] >= 75 and seen["mechanism"] == "chaos-mesh"
    assert condition(chaos_object(kube, step.arguments["name"]) or {}, "AllInjected") is True
    nem.rollback(step)
    assert chaos_object(kube, step.arguments["name"]) is None and not path.faulty
    nem.rollback(step)  # safe twice


def test_loss_shows_as_retransmissions(kube: ChaosMeshKubeApi, app: FakePathApp, path: PathState) -> None:
    kube.install_chaos_mesh(path)
    nem = nemesis(kube, app)
    step, call = inject(nem, "drop_packets", percent=40)
    assert chaos_object(kube, step.arguments["name"])["spec"]["loss"] == {"loss": "40", "correlation": "0"}  # type: ignore[index]
    effect = nem.effect(call, step)
    assert effect is not None
    seen = wait_for(effect.look, timeout_s=20, what="lost packets on the path")
    assert seen["slow_or_lost"] > 0
    nem.rollback(step)
    assert not path.faulty


def test_blackhole_is_a_partition_towards_an_external_database(kube: ChaosMeshKubeApi, app: FakePathApp,
                                                               path: PathState) -> None:
    kube.install_chaos_mesh(path)
    nem = nemesis(kube, app, database="external")
    step, call = inject(nem, "blackhole_network")
    spec = chaos_object(kube, step.arguments["name"])["spec"]  # type: ignore[index]
    assert spec["action"] == "partition" and spec["externalTargets"] == ["db.example.internal"]
    effect = nem.effect(call, step)
    assert effect is not None
    seen = wait_for(effect.look, timeout_s=20, what="no answer on the path")
    assert seen["during"]["answered"] == 0
    nem.rollback(step)
    assert not path.faulty


def test_no_pod_selected_is_never_seen(kube: ChaosMeshKubeApi, app: FakePathApp, path: PathState) -> None:
    """Selected False: Chaos Mesh injected nothing, so the effect never shows (the run is inconclusive)."""
    from kubernetes import client
    kube.install_chaos_mesh(path)
    client.AppsV1Api(api_client(kube)).delete_namespaced_deployment("school-meals-api", NS)
    for pod in kube.objects("pods", NS):
        client.CoreV1Api(api_client(kube)).delete_namespaced_pod(pod["metadata"]["name"], NS, grace_period_seconds=0)
    nem = nemesis(kube, app)
    step, call = inject(nem, "delay_network", delay_ms=100)
    found = wait_for(lambda: chaos_object(kube, step.arguments["name"]), what="the object")
    assert condition(found, "Selected") is False
    effect = nem.effect(call, step)
    assert effect is not None and effect.look() is None and not path.faulty
    nem.rollback(step)


def test_chaos_mesh_recovers_by_itself_when_the_duration_ends(kube: ChaosMeshKubeApi, app: FakePathApp,
                                                              path: PathState, monkeypatch: pytest.MonkeyPatch) -> None:
    from resilience.targets.kubernetes import chaosmesh
    monkeypatch.setattr(chaosmesh, "SAFETY_S", 60)  # 0.6 s on the fake clock
    kube.install_chaos_mesh(path)
    nem = nemesis(kube, app)
    step, _ = inject(nem, "delay_network", delay_ms=100)
    wait_for(lambda: condition(chaos_object(kube, step.arguments["name"]) or {}, "AllRecovered"), timeout_s=10,
             what="AllRecovered")
    assert not path.faulty and ("clear", step.arguments["name"]) in path.history
    nem.rollback(step)


def test_the_webhook_refuses_what_chaos_mesh_refuses(kube: ChaosMeshKubeApi, path: PathState) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    kube.install_chaos_mesh(path)
    custom = client.CustomObjectsApi(api_client(kube))
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NetworkChaos", "metadata": {"name": "bad"},
            "spec": {"action": "delay", "mode": "all", "selector": {"labelSelectors": APP_LABELS}, "duration": "ten"}}
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    assert info.value.status == 422 and "spec.delay.latency: Required value" in str(info.value.body)
    assert "invalid duration" in str(info.value.body)


def test_heal_deletes_what_a_crash_left(kube: ChaosMeshKubeApi, app: FakePathApp, path: PathState) -> None:
    kube.install_chaos_mesh(path)
    nem = nemesis(kube, app)
    inject(nem, "drop_packets", percent=5)
    nem.heal()
    assert not kube.objects(PLURAL, NS)


def test_plan_names_the_calls(kube: ChaosMeshKubeApi, app: FakePathApp) -> None:
    lines = nemesis(kube, app).plan(fault_call("delay_network", {"delay_ms": 100}))
    assert any(f"GET /apis/{GROUP}/{VERSION}" in line for line in lines)
    assert any("NetworkChaos action=delay" in line and "duration 900s" in line for line in lines)
    assert lines[-1].startswith("rollback delete_chaos_delay")


def test_an_undo_outside_the_namespace_is_refused(kube: ChaosMeshKubeApi, app: FakePathApp) -> None:
    nem = nemesis(kube, app)
    step = RollbackStep("delete_chaos_delay", {"namespace": "kube-system", "name": "x"}, "d")
    assert "not the app's" in (nem.rollback_refusal(step) or "")
    assert InjectContext and FAULTS  # imported for readers: the registry's names are what the modules register


def test_a_fault_chaos_mesh_did_not_inject_makes_the_run_inconclusive(kube: ChaosMeshKubeApi, app: FakePathApp,
                                                                      path: PathState) -> None:
    """The path as fast as before (Chaos Mesh selected no pod): the effect watch records the effect missed, and the
    measurements judged with the fault are inconclusive, never a pass."""
    import dataclasses
    import time

    from resilience.checkers import compute
    from resilience.checkers.measurement import INCONCLUSIVE, verdict
    from resilience.config import Targets
    from resilience.effect_watch import EffectWatch
    from resilience.history import FAULT, History, Record
    from kubernetes import client
    kube.install_chaos_mesh(path)
    client.AppsV1Api(api_client(kube)).delete_namespaced_deployment("school-meals-api", NS)
    for pod in kube.objects("pods", NS):
        client.CoreV1Api(api_client(kube)).delete_namespaced_pod(pod["metadata"]["name"], NS, grace_period_seconds=0)
    nem = nemesis(kube, app)
    step, call = inject(nem, "delay_network", delay_ms=100)
    effect = nem.effect(call, step)
    assert effect is not None
    history = History()
    watch = EffectWatch(history, lambda _: None, poll_s=0.01)
    watch.start("delay_network", 10.0, [dataclasses.replace(effect, deadline_s=0.3)])
    time.sleep(0.8)
    watch.stop()
    nem.rollback(step)
    [missed] = [r for r in history.records if r.source == FAULT and r.op == "effect"]
    assert missed.status == "fail" and "AllInjected" in missed.detail["reason"]
    records = [Record(1.0, "phase", "steady", "info"),
               Record(10.0, FAULT, "inject", "ok", detail={"capability": "delay_network"}),
               Record(10.0, "phase", "fault", "info"), Record(30.0, "phase", "recovery", "info"),
               Record(40.0, "phase", "end", "info"), missed]
    records += [Record(i * 0.1, "load", "GET /menu", "ok", 0.01) for i in range(400)]
    measured = compute(records, targets=Targets(availability=0.99, p99_ms=200), measures=["availability", "p99"])
    assert all(m.status == INCONCLUSIVE for m in measured if m.target is not None)
    assert verdict(measured) == "inconclusive"
