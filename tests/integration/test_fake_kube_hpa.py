"""The fake API server's HorizontalPodAutoscaler controller, on metrics the test sets, on a manual clock.

Follows https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/ : the algorithm
(desired = ceil(current * metric / target), tolerance 0.1, not-ready pods), the configurable scaling behavior
(stabilization windows, Pods / Percent policies per periodSeconds, selectPolicy, defaults: scale up by
max(4 pods, 100 %) per 15 s, scale down after a 300 s window) and the status conditions; the 15 s sync period
is kube-controller-manager's --horizontal-pod-autoscaler-sync-period default.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from tests.fakes.kube import FakeKubeApi  # noqa: E402
from tests.fakes.kube.testing import api_client, deployment, hpa, namespace, wait_for  # noqa: E402

NS = "meals"
APP = "school-meals-api"
SYNC = 15


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(manual_clock=True) as server:
        yield server


def setup(fake: FakeKubeApi, replicas: int = 6, **kwargs: Any) -> tuple[Any, Any]:
    from kubernetes import client
    c = api_client(fake)
    core: Any = client.CoreV1Api(c)
    apps: Any = client.AppsV1Api(c)
    autoscaling: Any = client.AutoscalingV2Api(c)
    core.create_namespace(namespace(NS))
    apps.create_namespaced_deployment(NS, deployment(APP, replicas))
    autoscaling.create_namespaced_horizontal_pod_autoscaler(NS, hpa(APP, APP, **kwargs))
    return apps, autoscaling


def replicas(apps: Any) -> int:
    return int(apps.read_namespaced_deployment(APP, NS).spec.replicas)


def condition(autoscaling: Any, kind: str) -> tuple[str, str]:
    status = autoscaling.read_namespaced_horizontal_pod_autoscaler(APP, NS).status
    found = next(c for c in status.conditions if c.type == kind)
    return found.status, found.reason


def test_without_metrics_the_hpa_reports_it_and_never_scales(fake: FakeKubeApi) -> None:
    """EKS ships no metrics-server: the HPA says FailedGetResourceMetric and leaves the replica count alone."""
    apps, autoscaling = setup(fake, min_replicas=6, max_replicas=50)
    fake.advance(10 * SYNC)
    status = autoscaling.read_namespaced_horizontal_pod_autoscaler(APP, NS).status
    assert (status.current_replicas, status.desired_replicas) == (6, 0)  # desired never computed
    assert condition(autoscaling, "ScalingActive") == ("False", "FailedGetResourceMetric")
    assert replicas(apps) == 6


def test_scale_up_follows_the_ratio_and_writes_status_and_the_deployment(fake: FakeKubeApi) -> None:
    """140 % of a 70 % target on 6 pods: ceil(6 * 2) = 12, within the default scale-up rate (max(4, 100 %))."""
    from kubernetes import client
    apps, autoscaling = setup(fake, min_replicas=6, max_replicas=50)
    fake.set_metric(APP, cpu_utilization=140)
    fake.advance(SYNC)
    assert replicas(apps) == 12
    status = autoscaling.read_namespaced_horizontal_pod_autoscaler(APP, NS).status
    assert (status.current_replicas, status.desired_replicas) == (6, 12)  # status as of this sync
    assert status.current_metrics[0].resource.current.average_utilization == 140
    assert status.last_scale_time is not None
    assert condition(autoscaling, "AbleToScale") == ("True", "SucceededRescale")
    assert condition(autoscaling, "ScalingActive") == ("True", "ValidMetricFound")
    events = client.CoreV1Api(api_client(fake)).list_namespaced_event(
        NS, field_selector="involvedObject.name=" + APP).items
    assert any(e.reason == "SuccessfulRescale" and e.message ==
               "New size: 12; reason: cpu resource utilization (percentage of request) above target" for e in events)
    fake.advance(SYNC)
    status = autoscaling.read_namespaced_horizontal_pod_autoscaler(APP, NS).status
    assert (status.current_replicas, status.desired_replicas) == (12, 24)  # still 140 %: doubles again


def test_a_change_within_the_tolerance_does_nothing(fake: FakeKubeApi) -> None:
    apps, autoscaling = setup(fake, min_replicas=6, max_replicas=50)
    fake.set_metric(APP, cpu_utilization=76)  # 76 / 70 = 1.086: within 10 %
    fake.advance(3 * SYNC)
    assert replicas(apps) == 6
    fake.set_metric(APP, cpu_utilization=78)  # 1.114: beyond it, ceil(6 * 1.114) = 7
    fake.advance(SYNC)
    assert replicas(apps) == 7


def test_scale_up_is_rate_limited_by_the_policies_then_capped_at_max(fake: FakeKubeApi) -> None:
    """Policies Percent 100 and Pods 4 per 15 s, selectPolicy Max: 6 -> 12 -> 24 -> 48 -> 50 (maxReplicas),
    the HPA saying ScaleUpLimit, then TooManyReplicas."""
    apps, autoscaling = setup(fake, min_replicas=6, max_replicas=50)
    fake.set_metric(APP, cpu_utilization=700)  # wants 10x
    seen = []
    for _ in range(5):
        fake.advance(SYNC)
        seen.append((replicas(apps), condition(autoscaling, "ScalingLimited")))
    assert [count for count, _ in seen] == [12, 24, 48, 50, 50]
    assert seen[0][1] == ("True", "ScaleUpLimit")
    assert seen[-1][1] == ("True", "TooManyReplicas")


def test_pods_policy_with_select_min_and_a_longer_period(fake: FakeKubeApi) -> None:
    """selectPolicy Min over Pods 2 / 60 s and Percent 50 / 60 s: +2 per minute, counting this controller's own
    changes in the period."""
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Min",
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60},
                                         {"type": "Percent", "value": 50, "periodSeconds": 60}]}}
    apps, _ = setup(fake, min_replicas=6, max_replicas=50, behavior=behavior)
    fake.set_metric(APP, cpu_utilization=140)
    history = []
    for _ in range(8):
        fake.advance(SYNC)
        history.append(replicas(apps))
    assert history == [8, 8, 8, 8, 10, 10, 10, 10]


def test_scale_down_waits_for_the_stabilization_window(fake: FakeKubeApi) -> None:
    """Scale-down uses the highest recommendation of the last 300 s (the default window): load dropping to half
    shrinks the Deployment only once every recommendation in the window says so, then at 100 % per 15 s down to
    minReplicas."""
    apps, autoscaling = setup(fake, min_replicas=6, max_replicas=50)
    fake.set_metric(APP, cpu_utilization=140)
    fake.advance(SYNC)
    fake.set_metric(APP, cpu_utilization=70)
    fake.advance(SYNC)
    assert replicas(apps) == 12  # at target: the last recommendation to raise was 24 s ... 15 s ago
    fake.set_metric(APP, cpu_utilization=20)  # wants ceil(12 * 20 / 70) = 4 -> minReplicas 6
    steps = 0
    while replicas(apps) == 12:
        fake.advance(SYNC)
        steps += 1
        assert steps < 40
        if replicas(apps) == 12:
            assert condition(autoscaling, "AbleToScale") == ("True", "ScaleDownStabilized")
    # the recommendation of 12 made at the last 70 % sync must leave the 300 s window first
    assert steps * SYNC == 300
    assert replicas(apps) == 6
    assert condition(autoscaling, "ScalingLimited") == ("True", "TooFewReplicas")


def test_a_custom_scale_down_window_and_pods_policy(fake: FakeKubeApi) -> None:
    """scaleDown stabilizationWindowSeconds 30 and one pod per 15 s: the drop waits until the last recommendation
    to keep 10 is more than 30 s old, then shrinks one pod per sync."""
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 30, "selectPolicy": "Max",
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]}}
    fake.set_metric(APP, cpu_utilization=70)  # at target from the first sync (t=0): recommendations of 10
    apps, _ = setup(fake, replicas=10, min_replicas=2, max_replicas=20, behavior=behavior)
    fake.advance(SYNC)  # t=15: 10 again
    fake.set_metric(APP, cpu_utilization=14)  # wants ceil(10 * 0.2) = 2
    history = []
    for _ in range(6):
        fake.advance(SYNC)
        history.append(replicas(apps))
    assert history == [10, 9, 8, 7, 6, 5]  # t=30 still sees the 10 of t=15; from t=45 one pod per period


def test_replicas_outside_the_bounds_move_to_the_nearest_bound_at_once(fake: FakeKubeApi) -> None:
    apps, _ = setup(fake, replicas=2, min_replicas=6, max_replicas=50)
    assert replicas(apps) == 6  # synced when created, no metrics needed
    apps.patch_namespaced_deployment(APP, NS, {"spec": {"replicas": 80}})
    fake.advance(SYNC)
    assert replicas(apps) == 50


def test_a_missing_memory_metric_blocks_scale_down_but_not_scale_up(fake: FakeKubeApi) -> None:
    """Several metrics: the largest proposal wins; with some metrics missing the HPA still scales up on the
    others but refuses to scale down."""
    apps, autoscaling = setup(fake, min_replicas=6, max_replicas=50, memory_percent=80)
    fake.set_metric(APP, cpu_utilization=140)
    fake.advance(SYNC)
    assert replicas(apps) == 12
    fake.set_metric(APP, cpu_utilization=10)
    fake.advance(25 * SYNC)
    assert replicas(apps) == 12
    assert condition(autoscaling, "ScalingActive") == ("False", "FailedGetResourceMetric")


def test_unready_pods_do_not_push_a_scale_up_further() -> None:
    """Pods not yet Ready count as 0 % CPU when scaling up: 6 ready at 140 % plus 6 starting pods is exactly
    the target, so no further scale-up until they are Ready."""
    with FakeKubeApi(manual_clock=True, pod_start_s=60) as fake:
        apps, _ = setup(fake, min_replicas=6, max_replicas=50)
        fake.advance(60)  # the first six are Ready
        fake.set_metric(APP, cpu_utilization=140)
        fake.advance(SYNC)
        assert replicas(apps) == 12
        fake.advance(SYNC)
        assert replicas(apps) == 12  # 6 ready at 140 % + 6 unready at 0 % = 70 % average
        fake.advance(60)
        assert replicas(apps) == 24


def test_the_scaled_clock_runs_the_controller_by_itself() -> None:
    """Default time_scale 0.01: a sync every 0.15 s of real time; no advance() needed."""
    with FakeKubeApi() as fake:
        apps, _ = setup(fake, min_replicas=6, max_replicas=50)
        fake.set_metric(APP, cpu_utilization=140)
        wait_for(lambda: replicas(apps) >= 12, timeout_s=5, what="the HPA to scale up")


def test_the_hpa_sees_a_load_change_only_after_the_next_metrics_scrape(fake: FakeKubeApi) -> None:
    """metrics-server scrapes every 15 s (its --metric-resolution default): a spike at t=5 is invisible to an
    HPA sync at t=5 and seen at t=15, so a fault's autoscaling is measured with that lag, as on a cluster."""
    apps, autoscaling = setup(fake, min_replicas=6, max_replicas=50)
    fake.advance(5)
    fake.set_metric(APP, cpu_utilization=140)
    fake.tick()  # an HPA sync now: metrics-server has not scraped since the change
    assert replicas(apps) == 6 and condition(autoscaling, "ScalingActive") == ("False", "FailedGetResourceMetric")
    fake.advance(SYNC - 5)  # t=15: the scrape, then the HPA's sync
    assert replicas(apps) == 12
