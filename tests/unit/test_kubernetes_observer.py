"""The observer's pure state: replica numbers and ready pods per zone, from hand-built API objects."""

from __future__ import annotations

from typing import Any

from resilience.targets.kubernetes.observer import ReplicaState, event_from_k8s, ready_by_zone


def deployment(replicas: int, ready: int) -> dict[str, Any]:
    return {"spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}


def hpa(desired: int, current: int, cpu: int) -> dict[str, Any]:
    return {"status": {"desiredReplicas": desired, "currentReplicas": current, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}}]}}


def test_a_replica_event_only_when_ready_or_desired_changes() -> None:
    state = ReplicaState()
    assert state.hpa(hpa(6, 6, 40)) is None  # no ready count yet: nothing to report
    first = state.deployment(deployment(6, 6))
    assert first is not None and first["ready"] == 6 and first["desired"] == 6
    assert first["metrics"] == [{"type": "Resource", "name": "cpu", "average_utilization": 40, "average_value": None}]
    assert state.deployment(deployment(6, 6)) is None  # same numbers: no event
    scaled = state.hpa(hpa(9, 6, 95))
    assert scaled is not None and scaled["desired"] == 9 and scaled["ready"] == 6 and scaled["current"] == 6
    ready = state.deployment(deployment(9, 9))
    assert ready is not None and ready["ready"] == 9 and ready["desired"] == 9  # the HPA's desired wins


def test_a_deployment_and_hpa_read_together_give_at_most_one_event() -> None:
    """Without watches the platform reads both at once (KubernetesPlatform._sample_replicas): the same rule."""
    state = ReplicaState()
    first = state.both(deployment(6, 6), hpa(6, 6, 40))
    assert first is not None and (first["ready"], first["desired"], first["current"]) == (6, 6, 6)
    assert state.both(deployment(6, 6), hpa(6, 6, 40)) is None  # nothing changed: no second event
    scaled = state.both(deployment(6, 6), hpa(9, 6, 95))
    assert scaled is not None and scaled["desired"] == 9
    no_hpa = ReplicaState().both(deployment(3, 2), None)  # no HPA: the Deployment's own numbers
    assert no_hpa is not None and (no_hpa["ready"], no_hpa["desired"], no_hpa["current"]) == (2, 3, None)


def pod(node: str, ready: bool, terminating: bool = False) -> dict[str, Any]:
    return {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z" if terminating else None},
            "spec": {"nodeName": node},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_ready_pods_per_zone_skip_unready_and_terminating_pods() -> None:
    zones = {"n-a": "zone-a", "n-b": "zone-b", "n-x": None}
    pods = [pod("n-a", True), pod("n-a", True), pod("n-b", False), pod("n-b", True, terminating=True),
            pod("n-x", True)]
    assert ready_by_zone(pods, zones) == {"?": 1, "zone-a": 2}


def test_kubernetes_events_become_scale_or_platform_events() -> None:
    scale = event_from_k8s({"reason": "SuccessfulRescale", "message": "New size: 9", "type": "Normal",
                            "involvedObject": {"kind": "HorizontalPodAutoscaler", "name": "api"}}, 12.5)
    assert (scale.source, scale.op, scale.monotonic) == ("controller", "scale", 12.5)
    other = event_from_k8s({"reason": "FailedScheduling", "involvedObject": {"kind": "Pod", "name": "p"}}, 1.0)
    assert (other.source, other.op, other.detail["object"]) == ("platform", "k8s:FailedScheduling", "Pod/p")


def named_pod(name: str, node: str) -> dict[str, Any]:
    return {**pod(node, True), "metadata": {"name": name, "deletionTimestamp": None}}


def test_a_relist_forgets_pods_deleted_while_not_watching() -> None:
    """After a 410 Gone the DELETED events are lost with the history: the relist is the truth."""
    from resilience.targets.kubernetes.observer import KubernetesObserver
    observer = KubernetesObserver(None, "ns")
    observer.node_zones = {"n-a": "zone-a", "n-b": "zone-b"}
    observer._relisted("pods", [named_pod("a", "n-a"), named_pod("b", "n-b")], observer._on_pod)
    assert observer.events()[-1].detail == {"ready_by_zone": {"zone-a": 1, "zone-b": 1}}
    observer._relisted("pods", [named_pod("a", "n-a")], observer._on_pod)  # b went while the watch was down
    assert set(observer.pods) == {"a"}
    assert observer.events()[-1].detail == {"ready_by_zone": {"zone-a": 1}}
    observer._relisted("pods", [], observer._on_pod)
    assert observer.pods == {} and observer.events()[-1].detail == {"ready_by_zone": {}}


def test_watches_ask_for_bookmarks_and_time_out_on_the_client_side(monkeypatch: Any) -> None:
    """A connection that died silently must raise (client read timeout), not hang the watch for ever."""
    from types import SimpleNamespace
    from kubernetes import watch
    from resilience.targets.kubernetes import observer as module
    calls: list[dict[str, Any]] = []
    instance = module.KubernetesObserver(None, "ns")

    def list_fn(*args: Any, **kwargs: Any) -> Any:
        calls.append({"list": True, **kwargs})
        return SimpleNamespace(items=[], metadata=SimpleNamespace(resource_version="7"))

    class Recorder:
        def stream(self, fn: Any, *args: Any, **kwargs: Any) -> list[Any]:
            calls.append(kwargs)
            instance._stop.set()
            return []

    monkeypatch.setattr(watch, "Watch", Recorder)
    instance._watch("pods", list_fn, (), {"label_selector": "x=y"}, instance._on_pod)
    listed, watched = calls
    assert listed["_request_timeout"] == module.REQUEST_TIMEOUT_S > module.WATCH_TIMEOUT_S
    assert watched["allow_watch_bookmarks"] is True and watched["resource_version"] == "7"
    assert watched["_request_timeout"] == module.REQUEST_TIMEOUT_S and watched["timeout_seconds"] == module.WATCH_TIMEOUT_S
