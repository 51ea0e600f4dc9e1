"""Which database the app uses: the ExternalName Service the pods connect through, and a restart to follow it.

The app reaches RDS as `school-meals-postgres` (exposure.py), an ExternalName Service whose
`externalName` is the DB cluster's endpoint. A restore makes a new cluster with a new endpoint (RDS
restores never overwrite: "creates a new DB cluster"), so the swap points that Service at it and
restarts the Deployment, as `kubectl rollout restart` does (a pod template annotation): the pods'
pooled connections still go to the old cluster, which, after a logical corruption, is still up and
still wrong. Swapping back is the same two steps with the old endpoint.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable, Protocol, runtime_checkable

from ...errors import HarnessError

from .names import APP_NAME, EXTERNAL_POSTGRES_SERVICE, MANAGER

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
SERVING_TIMEOUT_S = 900.0  # the restarted pods' rollout: image already pulled, readiness every few seconds


@runtime_checkable
class HasCluster(Protocol):
    """What the switch uses of the platform (KubernetesPlatform gives it)."""

    namespace: str

    def core(self) -> Any: ...


class ExternalNameSwitch:
    """Points the app's database Service at a host, and restarts the app so that no pod keeps the old one."""

    def __init__(self, platform: HasCluster, service: str = EXTERNAL_POSTGRES_SERVICE,
                 deployment: str = APP_NAME) -> None:
        self.platform = platform
        self.service = service
        self.deployment = deployment

    def plan(self, host: str) -> list[str]:
        ns = self.platform.namespace
        return [f"PATCH /api/v1/namespaces/{ns}/services/{self.service} spec.externalName={host}",
                f"PATCH /apis/apps/v1/namespaces/{ns}/deployments/{self.deployment} "
                f"spec.template.metadata.annotations[{RESTARTED_AT}]=<now> (kubectl rollout restart)"]

    def current_host(self) -> str:
        service = self.platform.core().read_namespaced_service(self.service, self.platform.namespace)
        return str(service.spec.external_name or "")

    def point_at(self, host: str) -> str:
        """Point the Service at `host` and restart the app; returns the host it pointed at before."""
        from kubernetes import client
        core = self.platform.core()
        ns = self.platform.namespace
        before = self.current_host()
        core.patch_namespaced_service(self.service, ns, {"spec": {"externalName": host}},
                                      field_manager=MANAGER)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        client.AppsV1Api(core.api_client).patch_namespaced_deployment(
            self.deployment, ns, {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}},
            field_manager=MANAGER)
        return before

    def wait_serving(self, timeout_s: float = SERVING_TIMEOUT_S, poll_s: float = 2.0,
                     sleep: Callable[[float], None] = time.sleep) -> int:
        """Until the restarted app has rolled out; returns its ready replicas (see `rolled_out`)."""
        return wait_rolled_out(self.platform, self.deployment, timeout_s, poll_s, sleep)


def rolled_out(deployment: Any) -> int | None:
    """The ready replicas once a Deployment's rollout is complete (as `kubectl rollout status` judges it: the
    controller saw the new template, every replica is updated and available, no old one left), else None.
    Every new pod passed its readiness probe, /health/ready, which answers only when the app sees a primary."""
    spec, status, meta = deployment.spec, deployment.status, deployment.metadata
    wanted = spec.replicas if spec.replicas is not None else 1
    if status is None or (status.observed_generation or 0) < (meta.generation or 0):
        return None
    updated, available, total = status.updated_replicas or 0, status.available_replicas or 0, status.replicas or 0
    return available if updated >= wanted and available >= wanted and total <= updated else None


def wait_rolled_out(platform: HasCluster, name: str, timeout_s: float, poll_s: float,
                    sleep: Callable[[float], None]) -> int:
    from kubernetes import client
    apps = client.AppsV1Api(platform.core().api_client)
    deadline = time.monotonic() + timeout_s
    while True:
        ready = rolled_out(apps.read_namespaced_deployment(name, platform.namespace))
        if ready is not None:
            return ready
        if time.monotonic() >= deadline:
            raise HarnessError(f"the app's Deployment {name} did not roll out onto the restored database within "
                               f"{timeout_s:g} s: see `kubectl rollout status deployment/{name} -n "
                               f"{platform.namespace}` and the new pods' events")
        sleep(poll_s)
