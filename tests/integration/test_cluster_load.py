"""ClusterLoad end to end: a real Locust master and workers run as the pods of a fake cluster.

The fake API server (tests/fakes/kube) runs the load's pods as local processes
(process_kubelet.py: no image, no network isolation, ports remapped) and
serves the master's HTTP through the service proxy subresource (proxy.py), so
ClusterLoad goes through the same API calls as against a cluster. The platform
is the in-memory stand-in of test_load.py.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import KubernetesSettings, Settings  # noqa: E402
from resilience.errors import HarnessError, UserError  # noqa: E402
from resilience.load import LoadSettings, parse_stages  # noqa: E402
from resilience.load.cluster import ClusterLoad, cluster_load_factory  # noqa: E402
from resilience.load.cluster_manifests import PART_OF, PART_OF_LABEL, RUN_LABEL, LoadNames  # noqa: E402
from tests.fakes.kube.server import FakeKubeApi  # noqa: E402
from tests.fakes.kube.testing import api_client, wait_for  # noqa: E402
from tests.integration.test_load import LOCUSTFILE, OPS, StandInPlatform, pid_gone  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONTEXT = "fake-cluster"
NS = "school-meals"
PLURALS = ("jobs", "deployments", "services", "configmaps", "networkpolicies", "pods")
IMAGE = "registry.example.test/school-meals-api:test"


@pytest.fixture
def settings() -> Settings:
    return Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace=NS, image=IMAGE))


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeKubeApi]:
    """Fake seconds at a tenth of real ones: a worker's 30 s grace period lasts 3 s, the master's 6 s."""
    server = FakeKubeApi(time_scale=0.1).start()
    try:
        yield server
    finally:
        server.stop()


def enable_kubelet(fake: FakeKubeApi, tmp_path: Path, **options: Any) -> Any:
    return fake.enable_process_kubelet(f"{PART_OF_LABEL}={PART_OF}", tmp_path / "kubelet",
                                       env={"PYTHONPATH": str(REPO)}, **options)


def load_settings(stages: str) -> LoadSettings:
    return LoadSettings(stages=tuple(parse_stages(stages)), timeout_s=1.0, wait_min_s=0.05, wait_max_s=0.2,
                        locustfile=LOCUSTFILE)


def leftovers(fake: FakeKubeApi) -> dict[str, list[str]]:
    """Every load object still in the namespace, by plural."""
    found = {plural: [o["metadata"]["name"] for o in fake.objects(plural, NS)
                      if RUN_LABEL in (o["metadata"].get("labels") or {})] for plural in PLURALS}
    return {plural: names for plural, names in found.items() if names}


def test_two_workers_deliver_every_row_on_the_harness_clock(fake: FakeKubeApi, settings: Settings,
                                                            tmp_path: Path) -> None:
    kubelet = enable_kubelet(fake, tmp_path)
    make = cluster_load_factory(settings, CONTEXT, api_client=api_client(fake), workers=2)
    with StandInPlatform() as platform:
        origin = time.monotonic()
        load = make(platform.url, load_settings("4s:8@40"), tmp_path, origin, "itest-cluster")
        assert isinstance(load, ClusterLoad)
        try:
            started = time.monotonic() - origin
            load.start()
            pids = [c.process.pid for c in kubelet.containers.values()]
            assert len(pids) == 3  # a master and two workers, as local processes
            assert load.running()
            live = wait_for(lambda: (s := load.stats()) and s.requests > 0 and s, 20, what="requests in the status")
            wait_for(lambda: not load.running(), 30, what="the stages to end")
            ended = time.monotonic() - origin
        finally:
            rows = load.stop()
    assert live.t <= ended + 1
    records = load.records()
    assert rows == len(records)
    requests = [r for r in records if r.op in OPS]
    info = json.loads((tmp_path / "load" / "cluster.json").read_text())
    workers = info["status"]["workers"]
    assert len(workers) == 2 and all(w["id"].startswith("load-itest-cluster-") for w in workers)
    assert all(w["requests"] > 0 for w in workers), "both workers made requests"
    assert len(requests) == sum(w["requests"] for w in workers) == sum(w["reported"] for w in workers)
    assert info["status"]["dropped"] == 0
    as_rows = [json.dumps(r.to_row()) for r in records]
    assert len(set(as_rows)) == len(as_rows), "no row twice"
    clock = load.clock_sync()
    assert clock.uncertainty_s > 0 and info["clock"]["uncertainty_s"] == pytest.approx(clock.uncertainty_s, abs=1e-6)
    assert info["clock_start"] and info["clock_end"]
    for record in requests:  # every request started inside the window the harness saw
        assert started - clock.uncertainty_s <= record.t <= ended + clock.uncertainty_s, record
    assert leftovers(fake) == {}
    assert all(pid_gone(pid) for pid in pids)


def test_unschedulable_pods_fail_start_in_time_naming_the_cause(fake: FakeKubeApi, settings: Settings,
                                                                tmp_path: Path) -> None:
    enable_kubelet(fake, tmp_path)
    client = api_client(fake)
    from kubernetes import client as k8s
    for node in fake.objects("nodes"):
        k8s.CoreV1Api(client).patch_node(node["metadata"]["name"], {"spec": {"unschedulable": True}})
    load = ClusterLoad("http://127.0.0.1:19099", load_settings("2s:1"), tmp_path, time.monotonic(), "itest-pending",
                       cluster=settings, api_client=client, start_timeout_s=3)
    began = time.monotonic()
    with pytest.raises(HarnessError) as info:
        load.start()
    assert time.monotonic() - began < 3 + 5
    message = str(info.value)
    assert "cannot be scheduled" in message and "node(s) were unschedulable" in message
    assert "kubernetes.load_start_timeout_s" in message
    assert leftovers(fake) == {}


def test_an_image_that_cannot_be_pulled_fails_start_at_once(fake: FakeKubeApi, settings: Settings,
                                                            tmp_path: Path) -> None:
    enable_kubelet(fake, tmp_path, missing_images=(IMAGE,))
    load = ClusterLoad("http://127.0.0.1:19099", load_settings("2s:1"), tmp_path, time.monotonic(), "itest-image",
                       cluster=settings, api_client=api_client(fake), start_timeout_s=60)
    began = time.monotonic()
    with pytest.raises(HarnessError) as info:
        load.start()
    assert time.monotonic() - began < 10
    assert "cannot pull its image" in str(info.value) and IMAGE in str(info.value)
    assert "kubernetes.load_image" in str(info.value)
    assert leftovers(fake) == {}


def test_a_namespace_outside_the_allow_list_is_refused_before_any_request(fake: FakeKubeApi,
                                                                          tmp_path: Path) -> None:
    settings = Settings(kubernetes=KubernetesSettings(allowed_contexts=(CONTEXT,), namespace="payments",
                                                      allowed_namespaces=(NS,)))
    with pytest.raises(UserError) as info:
        ClusterLoad("http://127.0.0.1:19099", load_settings("2s:1"), tmp_path, time.monotonic(), "itest-ns",
                    cluster=settings, api_client=api_client(fake))
    assert "'payments' is not in kubernetes.allowed_namespaces" in str(info.value)
    assert fake.requests == []


class SkewedMaster:
    """A stand-in for the master's HTTP port whose monotonic clock is SKEW_S ahead of ours."""

    SKEW_S = 1000.0

    def __init__(self) -> None:
        self.rows = b""
        self.done = False
        master = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                headers = {}
                if path == "/clock":
                    body = json.dumps({"monotonic": time.monotonic() + master.SKEW_S}).encode()
                elif path == "/status":
                    body = json.dumps({"t": time.monotonic() + master.SKEW_S, "users": 1, "target_users": 1,
                                       "requests": master.rows.count(b"\n"), "rps": 1.0, "error_pct": 0.0,
                                       "p99_ms": 5.0, "stage": 0, "done": master.done, "workers": [{"id": "w"}],
                                       "clock_uncertainty_s": 0.004}).encode()
                else:
                    offset = int(query.partition("=")[2] or 0)
                    body = master.rows[offset:]
                    headers["X-Next-Offset"] = str(offset + len(body))
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def request_now(self, key: str) -> float:
        """A request row stamped on the master's clock now; our clock's reading at that moment."""
        now = time.monotonic()
        self.rows += json.dumps([now + self.SKEW_S, "load", "GET /menu", "ok", 0.01, key, None]).encode() + b"\n"
        return now


def test_row_times_are_converted_to_the_harness_clock(settings: Settings, tmp_path: Path) -> None:
    master = SkewedMaster()
    with FakeKubeApi(time_scale=0.01) as fake:  # pods start at once (no process kubelet): the master is the stand-in
        run_id = "itest-skew"
        fake.serve_service(NS, LoadNames.for_run(run_id).master, 8089, ("127.0.0.1", master.server.server_address[1]))
        origin = time.monotonic() - 50.0
        load = ClusterLoad("http://127.0.0.1:19099", load_settings("2s:1"), tmp_path, origin, run_id,
                           cluster=settings, api_client=api_client(fake), workers=1, start_timeout_s=10)
        load.start()
        try:
            clock = load.clock_sync()
            assert clock.offset_s == pytest.approx(SkewedMaster.SKEW_S, abs=0.05)
            bound = clock.uncertainty_s
            assert 0.004 < bound < 0.1  # the workers' bound plus the proxy round trip's
            moments = {f"k{i}": master.request_now(f"k{i}") - origin for i in range(3)}
            stats = load.stats()
            assert stats is not None and stats.t == pytest.approx(time.monotonic() - origin, abs=0.5)
            new = load.new_records()
            assert [r.key for r in new] == ["k0", "k1", "k2"] and load.new_records() == []
            for record in new:
                assert abs(record.t - moments[str(record.key)]) <= bound, (record, moments)
            master.request_now("k3")
            master.done = True
        finally:
            assert load.stop() == 4
        assert [r.key for r in load.records()] == ["k0", "k1", "k2", "k3"]
        stored = [json.loads(line) for line in (tmp_path / "load" / "rows.jsonl").read_text().splitlines()]
        assert [row[0] for row in stored] == [round(r.t, 6) for r in load.records()]
        assert leftovers(fake) == {}
    master.server.shutdown()
    master.server.server_close()


def test_stopping_while_the_stages_run_still_delivers_every_row(settings: Settings, tmp_path: Path) -> None:
    """stop() before the stages end: the master gets SIGTERM (its pod deleted gracefully), ends the stages,
    gathers the workers' last rows and serves them while it terminates; nothing is lost, nothing left.
    Real seconds here (time_scale 1): the master's 60 s grace period must not shrink below what it needs."""
    with FakeKubeApi(time_scale=1.0) as fake, StandInPlatform() as platform:
        kubelet = enable_kubelet(fake, tmp_path)
        load = ClusterLoad(platform.url, load_settings("60s:6@40"), tmp_path, time.monotonic(), "itest-early",
                           cluster=settings, api_client=api_client(fake), workers=2, start_timeout_s=60)
        try:
            load.start()
            pids = [c.process.pid for c in kubelet.containers.values()]
            wait_for(lambda: (s := load.stats()) and s.requests > 20, 20, what="some requests")
            assert load.running()
        finally:
            began = time.monotonic()
            load.stop()
        assert time.monotonic() - began < 30
        info = json.loads((tmp_path / "load" / "cluster.json").read_text())
        assert info["status"]["done"] is True
        workers = info["status"]["workers"]
        requests = [r for r in load.records() if r.op in OPS]
        assert len(requests) == sum(w["requests"] for w in workers) == sum(w["reported"] for w in workers) > 20
        assert info["status"]["dropped"] == 0 and info["status"]["workers_lost"] == []
        assert leftovers(fake) == {}
        assert all(pid_gone(pid) for pid in pids)


def test_the_run_gets_cluster_load_only_when_asked_and_on_a_cluster(
        fake: FakeKubeApi, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resilience.load.plan import plan_load
    from resilience.load.process import LoadProcess
    from resilience.runbuild import load_factory_for

    def plan(settings: Settings, target: str, context: str | None) -> Any:
        return plan_load(load_settings("2s:1"), settings, target=target, on_kubernetes=target != "local",
                         stack_here=target == "local", context=context, cpus=4)

    local_plan = plan(settings, "kubernetes", CONTEXT)
    assert local_plan.where == "master+workers" and local_plan.workers == 4  # default: local, one per core
    assert load_factory_for(local_plan, settings, CONTEXT) is LoadProcess
    in_cluster = dataclasses.replace(settings, kubernetes=dataclasses.replace(settings.kubernetes,
                                                                              load_generator="in-cluster"))
    for target, context in (("local", None), ("kubernetes", None)):
        with pytest.raises(UserError, match="kubernetes.load_generator"):
            plan(in_cluster, target, context)
    cluster_plan = plan(in_cluster, "aws", CONTEXT)
    assert cluster_plan.where == "in-cluster" and cluster_plan.workers == 2  # IN_CLUSTER_WORKERS
    with pytest.raises(UserError, match="kubernetes.allowed_contexts"):
        load_factory_for(plan(in_cluster, "aws", "some-other-cluster"), in_cluster, "some-other-cluster")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
        "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
        "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": "fake", "user": "tester"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere"))
    make = load_factory_for(cluster_plan, in_cluster, CONTEXT)  # a dry run builds this: nothing is read yet
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    load = make("http://127.0.0.1:19099", load_settings("2s:1"), tmp_path, time.monotonic(), "itest-factory")
    assert isinstance(load, ClusterLoad) and load.master.api_client.configuration.host == fake.url
    assert fake.requests == []  # nothing is sent before start()


def test_a_locustfile_the_master_cannot_import_is_a_user_error_with_its_reason(fake: FakeKubeApi, settings: Settings,
                                                                               tmp_path: Path) -> None:
    """The harness checks the locustfile by reading it; importing it happens in the pods. The master exits 2
    with `error: <what to fix>`, read back from its log (pods/NAME/log), as LoadProcess does locally."""
    enable_kubelet(fake, tmp_path)
    broken = tmp_path / "broken_rush.py"
    broken.write_text("from locust import HttpUser\nraise RuntimeError('menu service URL missing')\n\n\n"
                      "class LunchRushUser(HttpUser):\n    pass\n")
    load = ClusterLoad("http://127.0.0.1:19099", dataclasses.replace(load_settings("2s:1"), locustfile=str(broken)),
                       tmp_path, time.monotonic(), "itest-broken", cluster=settings, api_client=api_client(fake),
                       start_timeout_s=60)
    with pytest.raises(UserError) as info:
        load.start()
    assert "failed to import: RuntimeError: menu service URL missing" in str(info.value)
    assert leftovers(fake) == {}


def test_a_master_that_never_answers_fails_start_in_time_and_leaves_nothing(settings: Settings,
                                                                           tmp_path: Path) -> None:
    """Pods run (the fake's instant kubelet) but nothing serves the master's HTTP port."""
    with FakeKubeApi(time_scale=0.01) as fake:
        load = ClusterLoad("http://127.0.0.1:19099", load_settings("2s:1"), tmp_path, time.monotonic(), "itest-mute",
                           cluster=settings, api_client=api_client(fake), start_timeout_s=2)
        began = time.monotonic()
        with pytest.raises(HarnessError) as info:
            load.start()
        assert time.monotonic() - began < 2 + 5
        message = str(info.value)
        assert "did not start within 2 s (kubernetes.load_start_timeout_s)" in message
        assert f"services/{LoadNames.for_run('itest-mute').master}:8089/proxy" in message  # what it could not reach
        assert leftovers(fake) == {} and load.records() == [] and load.stop() is None
