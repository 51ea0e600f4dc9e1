"""The fake API server's service proxy subresource and Jobs, each as the Kubernetes docs describe them.

- service proxy: kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/
  (`services/[https:]name[:port]/proxy/path`), endpoints from the Service's selector (Ready pods only,
  unless `publishNotReadyAddresses`), 503 without endpoints (tests/fakes/kube/proxy.py);
- Jobs: one pod, no retry with backoffLimit 0, an API DELETE orphans the pods unless propagationPolicy
  says Background (kubernetes.io/docs/concepts/workloads/controllers/job/,
  .../architecture/garbage-collection/; github.com/kubernetes/kubernetes/issues/20902) (jobs.py).
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.load.master_client import MasterClient  # noqa: E402
from tests.fakes.kube.server import FakeKubeApi  # noqa: E402
from tests.fakes.kube.testing import api_client, wait_for  # noqa: E402

NS = "load"


class Echo:
    """An HTTP server that answers every GET with what it was asked (path and query) and a header."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                data = json.dumps({"path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Next-Offset", "42")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        for port in range(19590, 19600):
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    with FakeKubeApi() as server:
        yield server


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


def service(name: str, selector: dict[str, str], not_ready: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": selector, "ports": [{"name": "http", "port": 8089, "targetPort": 8089},
                                                            {"name": "zmq", "port": 5557, "targetPort": 5557}]}
    if not_ready:
        spec["publishNotReadyAddresses"] = True
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def job(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "example.test/c:1"}]}}}}


def core(fake: FakeKubeApi) -> Any:
    from kubernetes import client
    return client.CoreV1Api(api_client(fake))


def batch(fake: FakeKubeApi) -> Any:
    from kubernetes import client
    return client.BatchV1Api(api_client(fake))


def test_proxy_forwards_path_query_and_headers_to_an_endpoint(fake: FakeKubeApi, echo: Echo) -> None:
    core(fake).create_namespaced_service(NS, service("master", {"app": "m"}))
    fake.serve_service(NS, "master", 8089, echo.address)
    proxy = MasterClient(api_client(fake), NS, "master", 8089)
    assert proxy.get("status").status == 503  # no pod behind the Service yet
    assert b'no endpoints available for service \\"master\\"' in proxy.get("status").body
    batch(fake).create_namespaced_job(NS, job("m", {"app": "m"}))
    wait_for(lambda: fake.objects("pods", NS), what="the Job's pod")
    answer = proxy.get("rows", [("offset", "17")])
    assert answer.status == 200 and json.loads(answer.body) == {"path": "/rows?offset=17"}
    assert answer.headers["x-next-offset"] == "42"
    with urllib.request.urlopen(f"{fake.url}/api/v1/namespaces/{NS}/services/http:master:http/proxy/named") as named:
        assert json.loads(named.read()) == {"path": "/named"}  # [scheme:]name[:port name]
    assert MasterClient(api_client(fake), NS, "master", 9999).get("x").status == 404  # no such port
    assert MasterClient(api_client(fake), NS, "nobody", 8089).get("x").status == 404  # no such Service
    assert any(r.path.startswith(f"/api/v1/namespaces/{NS}/services/master") for r in fake.requests)


def test_proxy_reaches_a_pod_that_is_not_ready_only_with_publish_not_ready_addresses(fake: FakeKubeApi,
                                                                                   echo: Echo) -> None:
    fake.pod_start_s = 10_000  # pods Running, never Ready
    core(fake).create_namespaced_service(NS, service("strict", {"app": "m"}))
    core(fake).create_namespaced_service(NS, service("lenient", {"app": "m"}, not_ready=True))
    for name in ("strict", "lenient"):
        fake.serve_service(NS, name, 8089, echo.address)
    batch(fake).create_namespaced_job(NS, job("m", {"app": "m"}))
    wait_for(lambda: [p for p in fake.objects("pods", NS) if p["status"].get("phase") == "Running"],
             what="a Running pod")
    assert MasterClient(api_client(fake), NS, "strict", 8089).get("x").status == 503
    assert MasterClient(api_client(fake), NS, "lenient", 8089).get("x").status == 200


def test_an_endpoint_that_does_not_answer_is_a_503(fake: FakeKubeApi) -> None:
    core(fake).create_namespaced_service(NS, service("master", {"app": "m"}))
    fake.serve_service(NS, "master", 8089, ("127.0.0.1", 19599))  # nothing listens there
    batch(fake).create_namespaced_job(NS, job("m", {"app": "m"}))
    wait_for(lambda: fake.objects("pods", NS), what="the Job's pod")
    answer = MasterClient(api_client(fake), NS, "master", 8089).get("x")
    assert answer.status == 503 and b"error trying to reach service" in answer.body


def test_a_job_runs_one_pod_and_a_deleted_pod_is_not_replaced_with_backoff_limit_0(fake: FakeKubeApi) -> None:
    batch(fake).create_namespaced_job(NS, job("once", {"app": "once"}))
    first = wait_for(lambda: fake.objects("pods", NS), what="the Job's pod")
    assert len(first) == 1 and first[0]["metadata"]["ownerReferences"][0]["kind"] == "Job"
    core(fake).delete_namespaced_pod(first[0]["metadata"]["name"], NS, grace_period_seconds=0)
    failed = wait_for(lambda: [c for c in (fake.get("jobs", "once", NS) or {}).get("status", {}).get("conditions", [])
                               if c["type"] == "Failed"], what="the Job Failed")
    assert failed[0]["reason"] == "BackoffLimitExceeded"
    assert fake.objects("pods", NS) == []


@pytest.mark.parametrize("policy,pods_left", [(None, 1), ("Orphan", 1), ("Background", 0)])
def test_deleting_a_job_through_the_api_orphans_its_pods_unless_told(fake: FakeKubeApi, policy: str | None,
                                                                    pods_left: int) -> None:
    batch(fake).create_namespaced_job(NS, job("j", {"app": "j"}))
    wait_for(lambda: fake.objects("pods", NS), what="the Job's pod")
    batch(fake).delete_namespaced_job("j", NS, propagation_policy=policy)
    if pods_left:
        pods = fake.objects("pods", NS)
        assert len(pods) == 1 and not pods[0]["metadata"]["ownerReferences"]  # an orphan, running on
    else:
        wait_for(lambda: fake.objects("pods", NS) == [], what="the pods deleted with the Job")
