"""The fake ALB in front of the fake cluster (tests/fakes/kube/alb.py): a removed pod keeps getting requests
until the deregistration reaches the load balancer or health checks fail, then drains for the
deregistration delay; in that order, on the fake's (manual) clock."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from tests.fakes.kube import FakeKubeApi  # noqa: E402
from tests.fakes.kube.alb import DEREGISTERING, DRAINING, HEALTHY, UNHEALTHY, FakeAlb  # noqa: E402
from tests.fakes.kube.testing import api_client, deployment, namespace  # noqa: E402

NS = "meals"


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(manual_clock=True) as server:
        yield server


def start(fake: FakeKubeApi, replicas: int, prestop: dict[str, Any] | None = None) -> tuple[Any, FakeAlb]:
    from kubernetes import client
    c = api_client(fake)
    core = client.CoreV1Api(c)
    core.create_namespace(namespace(NS))
    body = deployment("web", replicas)
    if prestop:
        body["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": prestop}
    client.AppsV1Api(c).create_namespaced_deployment(NS, body)
    fake.advance(1)
    alb = FakeAlb(fake, NS, "app=web")
    alb.sync()
    assert set(alb.states().values()) == {HEALTHY} and len(alb.states()) == replicas
    return core, alb


def answers(alb: FakeAlb, n: int = 12) -> list[int]:
    return [alb.pick()[0] for _ in range(n)]


def test_a_killed_pod_gets_requests_until_the_deregistration_reaches_the_alb(fake: FakeKubeApi) -> None:
    core, alb = start(fake, 2)
    victim = sorted(alb.states())[0]
    core.delete_namespaced_pod(victim, NS, grace_period_seconds=0)  # SIGKILL: gone at once
    assert alb.states()[victim] == HEALTHY  # nothing has looked yet
    codes = answers(alb)
    assert alb.states()[victim] == DEREGISTERING and codes.count(502) == 4  # 1 in 3 (the replacement joined)
    fake.advance(alb.deregistration_lag_s)
    assert answers(alb).count(502) == 0 and alb.states()[victim] == DRAINING  # no new requests while draining
    fake.advance(alb.deregistration_delay_s)
    alb.sync()
    assert victim not in alb.states()


def test_health_checks_mark_a_dead_target_before_a_slow_deregistration(fake: FakeKubeApi) -> None:
    """With a deregistration slower than two failed health checks (2 x 15 s), the checks end the 502s first."""
    core, alb = start(fake, 2)
    alb.deregistration_lag_s = 120.0
    victim = sorted(alb.states())[0]
    core.delete_namespaced_pod(victim, NS, grace_period_seconds=0)
    alb.sync()
    fake.advance(alb.unhealthy_threshold * alb.health_interval_s - 1)
    assert 502 in answers(alb)
    fake.advance(1)
    assert 502 not in answers(alb) and alb.states()[victim] == DRAINING


def test_a_graceful_termination_with_a_prestop_sleep_serves_until_deregistered(fake: FakeKubeApi) -> None:
    """The EKS best practices' preStop sleep: the pod keeps accepting while the ALB catches up: no 502."""
    core, alb = start(fake, 2, prestop={"sleep": {"seconds": 15}})
    victim = sorted(alb.states())[0]
    core.delete_namespaced_pod(victim, NS)  # graceful: 30 s
    assert answers(alb).count(502) == 0
    fake.advance(alb.deregistration_lag_s)
    assert answers(alb).count(502) == 0 and alb.states()[victim] == DRAINING


def test_without_a_prestop_sleep_a_graceful_termination_still_loses_requests(fake: FakeKubeApi) -> None:
    """SIGTERM closes the listener at once (uvicorn does): the ALB's requests in the lag get 502."""
    core, alb = start(fake, 2)
    core.delete_namespaced_pod(sorted(alb.states())[0], NS)
    assert answers(alb).count(502) == 4  # 1 in 3: the replacement joined


def test_all_targets_unhealthy_fails_open_and_none_answers_503(fake: FakeKubeApi) -> None:
    core, alb = start(fake, 1)
    (only,) = alb.states()
    with fake._lock:  # the pod stops answering but stays Ready (a hung process): only health checks see it
        key = next(k for k, _ in fake.store.items("pods", NS))
        pod = fake.store.require(key)
        fake.store.put(key, {**pod, "status": {**pod["status"], "phase": "Unknown"}})
    alb.sync()
    fake.advance(alb.unhealthy_threshold * alb.health_interval_s)
    assert alb.pick() == (502, only) and alb.states()[only] == UNHEALTHY  # fail open: still routed
    core.delete_namespaced_pod(only, NS, grace_period_seconds=0)
    fake.advance(alb.deregistration_lag_s)
    alb.sync()
    states = alb.states()
    assert states.pop(only) == DRAINING and set(states.values()) == {HEALTHY}  # the replacement took over
