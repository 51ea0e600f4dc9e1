"""Watches on the fake API server, consumed by the official client's `watch.Watch().stream`.

Follows https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes : a watch
from a list's resourceVersion streams ADDED / MODIFIED / DELETED events after it, each with the object's new
resourceVersion; without a resourceVersion it starts with the current objects as ADDED; BOOKMARK events carry
only a resourceVersion (#watch-bookmarks); a resourceVersion older than the history kept is answered with an
ERROR event carrying a 410 Gone Status ("too old resource version"), after which the client must list again.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from tests.fakes.kube import FakeKubeApi  # noqa: E402
from tests.fakes.kube.testing import api_client, deployment, hpa, namespace, pdb, wait_for  # noqa: E402

NS = "meals"


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    with FakeKubeApi() as server:
        yield server


def clients(fake: FakeKubeApi) -> dict[str, Any]:
    from kubernetes import client
    c = api_client(fake)
    return {"core": client.CoreV1Api(c), "apps": client.AppsV1Api(c), "autoscaling": client.AutoscalingV2Api(c),
            "policy": client.PolicyV1Api(c)}


def bare_pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": "solo"}},
            "spec": {"containers": [{"name": "c", "image": "example.test/c:1"}], "terminationGracePeriodSeconds": 0}}


class Collector:
    """Runs a client watch in a thread and keeps what it yields."""

    def __init__(self, func: Any, *args: Any, **kwargs: Any) -> None:
        from kubernetes import watch
        self.watch = watch.Watch()
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(func, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, func: Any, args: Any, kwargs: Any) -> None:
        try:
            for event in self.watch.stream(func, *args, **kwargs):
                self.events.append(event)
        except BaseException as exc:  # reported to the test, unless it is the client's own stop() cutting the socket
            if not self.watch._stop:
                self.error = exc

    def seen(self, event_type: str, name: str) -> bool:
        return any(e["type"] == event_type and e["raw_object"]["metadata"]["name"] == name for e in self.events)

    def stop(self) -> None:
        self.watch.stop()
        self._thread.join(timeout=5)


def test_pod_watch_streams_every_change_after_the_listed_resource_version(fake: FakeKubeApi) -> None:
    c = clients(fake)
    c["core"].create_namespace(namespace(NS))
    listed = c["core"].list_namespaced_pod(NS)
    watcher = Collector(c["core"].list_namespaced_pod, NS, resource_version=listed.metadata.resource_version,
                        timeout_seconds=10)
    try:
        c["core"].create_namespaced_pod(NS, bare_pod("solo"))
        c["core"].patch_namespaced_pod("solo", NS, {"metadata": {"labels": {"app": "solo", "tier": "x"}}})
        c["core"].delete_namespaced_pod("solo", NS, grace_period_seconds=0)
        wait_for(lambda: watcher.seen("DELETED", "solo"), what="the DELETED event")
    finally:
        watcher.stop()
    assert watcher.error is None
    types = [e["type"] for e in watcher.events]
    assert types[0] == "ADDED" and types[-1] == "DELETED" and set(types[1:-1]) == {"MODIFIED"}
    versions = [int(e["object"].metadata.resource_version) for e in watcher.events]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)  # strictly increasing
    assert versions[0] > int(listed.metadata.resource_version)
    modified = [e["object"] for e in watcher.events if e["type"] == "MODIFIED"]
    assert any(p.spec.node_name for p in modified)  # bound by the scheduler
    assert any((p.metadata.labels or {}).get("tier") == "x" for p in modified)  # our patch
    assert type(watcher.events[0]["object"]).__name__ == "V1Pod"


@pytest.mark.parametrize("api, method, namespaced", [
    ("core", "list_node", False),
    ("core", "list_pod_for_all_namespaces", False),
    ("core", "list_namespaced_pod", True),
    ("core", "list_namespaced_event", True),
    ("apps", "list_namespaced_deployment", True),
    ("autoscaling", "list_namespaced_horizontal_pod_autoscaler", True),
    ("policy", "list_namespaced_pod_disruption_budget", True),
])
def test_every_list_the_target_watches_starts_with_the_current_objects(fake: FakeKubeApi, api: str, method: str,
                                                                       namespaced: bool) -> None:
    """No resourceVersion: "Get State and Start at Most Recent": the current objects arrive as ADDED first."""
    c = clients(fake)
    c["core"].create_namespace(namespace(NS))
    c["apps"].create_namespaced_deployment(NS, deployment("api", 2))
    c["autoscaling"].create_namespaced_horizontal_pod_autoscaler(NS, hpa("api", "api", min_replicas=2,
                                                                         max_replicas=4))
    c["policy"].create_namespaced_pod_disruption_budget(NS, pdb("api", {"app": "api"}, min_available=1))
    args = (NS,) if namespaced else ()
    listed = getattr(c[api], method)(*args).items
    watcher = Collector(getattr(c[api], method), *args)
    try:
        wait_for(lambda: len(watcher.events) >= len(listed), what="the initial events")
    finally:
        watcher.stop()
    assert watcher.error is None
    assert listed and all(e["type"] == "ADDED" for e in watcher.events)
    assert {e["raw_object"]["metadata"]["name"] for e in watcher.events} == {item.metadata.name for item in listed}
    wanted = {"core": "/api/v1/", "apps": "/apis/apps/v1/", "autoscaling": "/apis/autoscaling/v2/",
              "policy": "/apis/policy/v1/"}[api]
    watches = [r for r in fake.requests if r.query.get("watch")]
    assert watches and all(r.path.startswith(wanted) for r in watches)


def test_a_selector_watch_reports_objects_leaving_and_entering_the_selection(fake: FakeKubeApi) -> None:
    c = clients(fake)
    c["core"].create_namespace(namespace(NS))
    c["core"].create_namespaced_pod(NS, bare_pod("p1", {"app": "api"}))
    rv = c["core"].list_namespaced_pod(NS).metadata.resource_version
    watcher = Collector(c["core"].list_namespaced_pod, NS, label_selector="app=api", resource_version=rv,
                        timeout_seconds=10)
    try:
        c["core"].patch_namespaced_pod("p1", NS, {"metadata": {"labels": {"app": "other"}}})
        wait_for(lambda: watcher.seen("DELETED", "p1"), what="p1 leaving the selection")
        c["core"].patch_namespaced_pod("p1", NS, {"metadata": {"labels": {"app": "api"}}})
        wait_for(lambda: watcher.seen("ADDED", "p1"), what="p1 entering it again")
    finally:
        watcher.stop()


def test_a_too_old_resource_version_is_410_gone(fake: FakeKubeApi) -> None:
    """After compaction, resuming from an old resourceVersion yields an ERROR event with a 410 Status; the client
    retries once, then raises ApiException(410) (the caller must list again)."""
    from kubernetes import watch
    from kubernetes.client.rest import ApiException
    c = clients(fake)
    c["core"].create_namespace(namespace(NS))
    old = c["core"].list_namespaced_pod(NS).metadata.resource_version
    c["core"].create_namespaced_pod(NS, bare_pod("p1"))
    fake.compact()

    url = f"{fake.url}/api/v1/namespaces/{NS}/pods?watch=1&resourceVersion={old}"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0]["type"] == "ERROR"
    status = lines[0]["object"]
    assert (status["kind"], status["status"], status["code"], status["reason"]) == ("Status", "Failure", 410,
                                                                                   "Expired")
    assert status["message"].startswith(f"too old resource version: {old} (")

    with pytest.raises(ApiException) as info:
        for _ in watch.Watch().stream(c["core"].list_namespaced_pod, NS, resource_version=old):
            pass
    assert info.value.status == 410

    fresh = c["core"].list_namespaced_pod(NS).metadata.resource_version  # list again, then watch from there
    events = list(watch.Watch().stream(c["core"].list_namespaced_pod, NS, resource_version=fresh, timeout_seconds=1))
    assert events == []


def test_the_history_window_is_bounded() -> None:
    """A watch can only resume within the last `watch_history` changes (the API server's watch cache)."""
    from kubernetes import watch
    from kubernetes.client.rest import ApiException
    with FakeKubeApi(watch_history=5) as fake:
        c = clients(fake)
        c["core"].create_namespace(namespace(NS))
        old = c["core"].list_namespaced_pod(NS).metadata.resource_version
        for i in range(3):
            c["core"].create_namespaced_pod(NS, bare_pod(f"p{i}"))  # each: created, bound, started, ready, event
        with pytest.raises(ApiException) as info:
            list(watch.Watch().stream(c["core"].list_namespaced_pod, NS, resource_version=old, timeout_seconds=1))
        assert info.value.status == 410


def test_bookmarks_carry_the_resource_version_when_asked_for(fake: FakeKubeApi) -> None:
    c = clients(fake)
    c["core"].create_namespace(namespace(NS))
    rv = c["core"].list_namespaced_pod(NS).metadata.resource_version
    c["core"].create_namespaced_pod(NS, bare_pod("p1"))
    url = (f"{fake.url}/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
           f"&timeoutSeconds=1")
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert lines[-1]["type"] == "BOOKMARK"
    assert lines[-1]["object"] == {"kind": "Pod", "apiVersion": "v1",
                                   "metadata": {"resourceVersion": str(fake.store.rv)}}
    assert {line["type"] for line in lines[:-1]} <= {"ADDED", "MODIFIED"}


def test_stop_ends_open_watches(fake: FakeKubeApi) -> None:
    c = clients(fake)
    watcher = Collector(c["core"].list_node)
    wait_for(lambda: len(watcher.events) == 3, what="the three nodes")
    fake.stop()
    watcher._thread.join(timeout=5)
    assert not watcher._thread.is_alive()
