"""Shared pieces of the contract suite: when it runs, and small helpers over the real Kubernetes API.

The contract suite runs the scenarios of the fake-based tests (tests/integration/test_kubernetes_target.py,
test_aws_target.py) against a REAL cluster and, optionally, a real AWS account. It runs only when asked:

- `RESILIENCE_CONTRACT_CONTEXT=<kubeconfig context>`: the cluster (also listed in the settings file's
  `kubernetes.allowed_contexts`, so two separate decisions name it); without it every test is skipped;
- `RESILIENCE_CONTRACT_AWS=1`: also the RDS / ElastiCache tests (AWS credentials and the `aws.*`
  allow-lists in the settings file); without it those are skipped.

Everything here uses what a real cluster offers: no fake hooks. This module imports no cloud client at
import time, so collecting (and skipping) the suite costs milliseconds.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Mapping

import pytest

CONTEXT_VAR = "RESILIENCE_CONTRACT_CONTEXT"
AWS_VAR = "RESILIENCE_CONTRACT_AWS"
POSTGRES_HOST_VAR = "RESILIENCE_CONTRACT_POSTGRES_HOST"  # in-cluster PostgreSQL for the kubernetes target (kind)
REDIS_HOST_VAR = "RESILIENCE_CONTRACT_REDIS_HOST"
PAUSE_IMAGE_VAR = "RESILIENCE_CONTRACT_PAUSE_IMAGE"  # the bystander / guarded pods' image
REPORTS_VAR = "RESILIENCE_CONTRACT_REPORTS"  # where the CLI tests' run directories go (CI uploads them)

DEFAULT_PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
# Namespaces the suite creates (and deletes) itself, beside the platform's own namespace.
OTHER_NS = "rsl-contract-other"  # never in the allow-list: its pods must survive a zone loss
GUARDED_NS = "rsl-contract-guarded"  # allowed for one test: a pod whose PodDisruptionBudget refuses eviction
OWNED_NS = "rsl-contract-owned"  # a namespace `up` creates, so `down` deletes it
SUITE_LABEL = {"app.kubernetes.io/part-of": "resilience-contract"}
HEALTHY_TIMEOUT_S = 420.0  # image pulls, probes and a first HPA reading on a fresh cluster


def cluster_skip_reason(env: Mapping[str, str]) -> str | None:
    """Why the cluster tests do not run in this environment (None: they run)."""
    if env.get(CONTEXT_VAR, "").strip():
        return None
    return (f"contract test against a real Kubernetes cluster: set {CONTEXT_VAR}=<kubeconfig context> (also listed "
            f"in the settings' kubernetes.allowed_contexts) to run it; deploy/kind/run-contract.sh does, on kind")


def aws_skip_reason(env: Mapping[str, str]) -> str | None:
    """Why the AWS tests do not run in this environment (None: they run)."""
    if env.get(AWS_VAR, "").strip() == "1":
        return None
    return (f"contract test against a real AWS account (RDS Multi-AZ DB cluster, ElastiCache replication group): "
            f"set {AWS_VAR}=1 with AWS credentials and the aws.* allow-lists in the settings to run it")


def _skip_mark(reason: str | None) -> pytest.MarkDecorator:
    return pytest.mark.skipif(reason is not None, reason=reason or "runs")


needs_cluster = _skip_mark(cluster_skip_reason(os.environ))
needs_aws = _skip_mark(aws_skip_reason(os.environ))


def context() -> str:
    return os.environ[CONTEXT_VAR].strip()


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 2.0) -> Any:
    """Poll until `predicate()` is truthy (returned); fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - a transient API error: try again until the deadline
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")
        time.sleep(interval_s)


# -- the real API, as an operator would use it -----------------------------------------------------
def core(api: Any) -> Any:
    from kubernetes import client
    return client.CoreV1Api(api)


def node_zones(api: Any) -> dict[str, str | None]:
    from resilience.targets.kubernetes.manifests import ZONE_LABEL
    return {n.metadata.name: (n.metadata.labels or {}).get(ZONE_LABEL) for n in core(api).list_node().items}


def zone_nodes(api: Any, zone: str) -> list[str]:
    return sorted(name for name, z in node_zones(api).items() if z == zone)


def cordoned(api: Any) -> dict[str, bool]:
    """Every node and whether it is unschedulable right now."""
    return {n.metadata.name: bool(n.spec and n.spec.unschedulable) for n in core(api).list_node().items}


def set_cordon(api: Any, node: str, unschedulable: bool) -> None:
    core(api).patch_node(node, {"spec": {"unschedulable": unschedulable}})


def app_pods(api: Any, namespace: str) -> list[Any]:
    from resilience.targets.kubernetes.manifests import APP_SELECTOR
    return list(core(api).list_namespaced_pod(namespace, label_selector=APP_SELECTOR).items)


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def ensure_namespace(api: Any, name: str) -> None:
    """Create a namespace of the suite's own (waiting out a deletion of an earlier one)."""
    from kubernetes.client.rest import ApiException

    def absent_or_active() -> bool:
        try:
            ns = core(api).read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return ns.status.phase == "Active"

    wait_until(absent_or_active, 180, f"namespace {name} to finish terminating")
    try:
        core(api).create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": name, "labels": dict(SUITE_LABEL)}})
    except ApiException as exc:
        if exc.status != 409:  # there already, from an earlier run
            raise


def delete_namespace(api: Any, name: str) -> None:
    from kubernetes.client.rest import ApiException
    try:
        core(api).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def pause_pod(name: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    """A tiny pod bound to `node` (nodeName: no scheduler involved), compliant with the restricted pod security."""
    image = os.environ.get(PAUSE_IMAGE_VAR, DEFAULT_PAUSE_IMAGE)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {**SUITE_LABEL, **labels}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65535, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "pause", "image": image,
                "resources": {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "16Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }


def wait_pod_ready(api: Any, namespace: str, name: str, timeout_s: float = 180) -> None:
    image = os.environ.get(PAUSE_IMAGE_VAR, DEFAULT_PAUSE_IMAGE)
    wait_until(lambda: is_ready(core(api).read_namespaced_pod(name, namespace)), timeout_s,
               f"pod {namespace}/{name} to be Ready (can the nodes pull {image}? set {PAUSE_IMAGE_VAR})")


# -- the platform ----------------------------------------------------------------------------------
def kubernetes_target(settings: Any, context: str, backends: Any, **platform_kwargs: Any) -> Any:
    """The kubernetes composition, built as tests/integration/test_kubernetes_target.py builds it."""
    from resilience.targets.kubernetes.platform import KubernetesPlatform
    from resilience.targets.kubernetes.nemesis import KubernetesNemesis
    from resilience.targets.target import COMPOSITIONS, Target
    platform = KubernetesPlatform(settings, context, backends=backends, wait_timeout_s=HEALTHY_TIMEOUT_S,
                                  echo=lambda line: None, **platform_kwargs)
    return Target(COMPOSITIONS["kubernetes"], platform, {"kubernetes": KubernetesNemesis(platform)})


def deployment(api: Any, namespace: str) -> Any:
    from kubernetes import client
    from resilience.targets.kubernetes.manifests import APP_NAME
    return client.AppsV1Api(api).read_namespaced_deployment(APP_NAME, namespace)


def platform_healthy(api: Any, namespace: str) -> bool:
    """Every replica the Deployment wants is ready, and there is no other API pod (none pending or terminating)."""
    wanted = deployment(api, namespace)
    desired = wanted.spec.replicas or 0
    pods = app_pods(api, namespace)
    return (desired > 0 and (wanted.status.ready_replicas or 0) == desired and len(pods) == desired
            and all(is_ready(p) and not p.metadata.deletion_timestamp for p in pods))


def live_pod_names(api: Any, namespace: str) -> set[str]:
    return {p.metadata.name for p in app_pods(api, namespace) if not p.metadata.deletion_timestamp}


def read_applied(api: Any, manifest: dict[str, Any]) -> Any:
    """The object a manifest describes, read back through the typed client (e.g. read_namespaced_deployment)."""
    from kubernetes import client
    from resilience.targets.kubernetes import plan
    kind = plan.kind_of(manifest)
    apis = {"/api/v1": client.CoreV1Api, "/apis/apps/v1": client.AppsV1Api,
            "/apis/autoscaling/v2": client.AutoscalingV2Api, "/apis/policy/v1": client.PolicyV1Api,
            "/apis/networking.k8s.io/v1": client.NetworkingV1Api}
    snake = "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(kind.kind))
    reader = apis[kind.prefix](api)
    meta = manifest["metadata"]
    if kind.namespaced:
        return getattr(reader, f"read_namespaced_{snake}")(meta["name"], meta["namespace"])
    return getattr(reader, f"read_{snake}")(meta["name"])
