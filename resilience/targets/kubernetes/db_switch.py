"""Which database the app uses: the ExternalName Service the pods connect through, and a restart to follow it.

The app reaches RDS as `school-meals-postgres` (exposure.py), an ExternalName Service whose
`externalName` is the DB cluster's endpoint. A restore makes a new cluster with a new endpoint (RDS
restores never overwrite: "creates a new DB cluster"), so the swap points that Service at it and
restarts the Deployment, as `kubectl rollout restart` does (a pod template annotation): the pods'
pooled connections still go to the old cluster, which, after a logical corruption, is still up and
still wrong. Swapping back is the same two steps with the old endpoint.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from .names import APP_NAME, EXTERNAL_POSTGRES_SERVICE, MANAGER

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets


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
