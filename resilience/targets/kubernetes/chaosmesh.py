"""Chaos Mesh `NetworkChaos` on the API pods: the kubernetes target's network faults, when Chaos Mesh is installed.

Chaos Mesh (https://chaos-mesh.org/docs/simulate-network-chaos-on-kubernetes/) injects network faults
into pods from its chaos-daemon (tc netem, ipset/iptables) when a `NetworkChaos` object
(chaos-mesh.org/v1alpha1) names them. The harness creates one per fault through the official client
(CustomObjectsApi) in the app's namespace, with:

- `selector`: the API pods by their labels (`app.kubernetes.io/name=school-meals-api`), `mode: all`;
- the path's other end: `direction: to` and `target` = the CloudNativePG cluster's pods
  (`cnpg.io/cluster=<name>`), or `externalTargets` = the database host when PostgreSQL is outside;
- the action: `delay` (`latency`, `jitter`), `loss` (`loss`, in percent) or `partition` (a silent drop);
- `duration` (SAFETY_S): Chaos Mesh recovers by itself when it ends, so a harness killed mid-fault leaves
  nothing for long; the run deletes the object after its hold.

Its status conditions (API reference, ChaosStatus): `Selected` (the selector found pods),
`AllInjected` (every selected pod has the fault), `AllRecovered` (every one is back). Deleting the
object recovers the pods (its finalizer) before it disappears; the rollback deletes it and waits for
that. Whether the CRD is installed is asked by API discovery (GET /apis/chaos-mesh.org/v1alpha1): a
cluster without Chaos Mesh answers 404, and the faults are refused with that reason.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Protocol

from ...config import Settings
from ...errors import HarnessError, UserError
from . import discovery
from .names import APP_NAME, CNPG_CLUSTER_NAME, EXTERNAL_POSTGRES_SERVICE, MANAGED_BY_LABEL, MANAGER, Manifest

GROUP, VERSION, PLURAL, KIND = "chaos-mesh.org", "v1alpha1", "networkchaos", "NetworkChaos"
FAULT_LABEL = "resilience/fault"
CNPG_CLUSTER_LABEL = "cnpg.io/cluster"  # CloudNativePG labels every instance pod with its cluster's name
ACTIONS = {"delay_network": "delay", "drop_packets": "loss", "blackhole_network": "partition"}
SAFETY_S = 900  # the longest a NetworkChaos lasts: Chaos Mesh recovers by itself then if the harness never deletes it
GONE_WAIT_S = 120.0
POLL_S = 1.0


class Cluster(Protocol):
    settings: Settings
    namespace: str

    def core(self) -> Any: ...


def condition(obj: Manifest, kind: str) -> bool | None:
    """The status of a Chaos Mesh condition (`AllInjected`, ...): True, False, or None when not reported yet."""
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return str(found.get("status")) == "True"
    return None


def manifest(fault: str, arguments: dict[str, Any], namespace: str, name: str, peer: dict[str, Any]) -> Manifest:
    """The NetworkChaos of `fault` on the API pods towards `peer` ({"target": ...} or {"externalTargets": ...})."""
    action = ACTIONS[fault]
    spec: dict[str, Any] = {"action": action, "mode": "all",
                            "selector": {"namespaces": [namespace],
                                         "labelSelectors": {"app.kubernetes.io/name": APP_NAME}},
                            "direction": "to", **peer, "duration": f"{SAFETY_S}s"}
    if action == "delay":
        spec["delay"] = {"latency": f"{arguments['delay_ms']:g}ms", "jitter": f"{arguments.get('jitter_ms') or 0:g}ms",
                         "correlation": "0"}
    elif action == "loss":
        spec["loss"] = {"loss": f"{arguments['percent']:g}", "correlation": "0"}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {MANAGED_BY_LABEL: MANAGER, FAULT_LABEL: fault.replace("_", "-")}},
            "spec": spec}


class ChaosMesh:
    """NetworkChaos objects made, read and deleted in one namespace for one cluster."""

    def __init__(self, cluster: Cluster, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cluster = cluster
        self.namespace = cluster.namespace
        self.sleep = sleep

    def _custom(self) -> Any:
        from kubernetes import client
        return client.CustomObjectsApi(self.cluster.core().api_client)

    def installed(self) -> bool:
        """Whether the API serves chaos-mesh.org/v1alpha1 networkchaos (API discovery: the CRD is installed)."""
        return discovery.serves(self.cluster.core().api_client, GROUP, VERSION, PLURAL)

    def refusal(self) -> str | None:
        if not self.installed():
            return (f"Chaos Mesh is not installed on this cluster: the API does not serve {GROUP}/{VERSION} "
                    f"{PLURAL} (its CRDs are absent), and the harness injects network faults on Kubernetes only "
                    f"through it. Install Chaos Mesh (helm install chaos-mesh chaos-mesh/chaos-mesh), or use the "
                    f"aws target (AWS FIS).")
        return None

    def peer(self) -> dict[str, Any]:
        """The path's database end: the CloudNativePG pods, or the external host the API connects to."""
        k8s = self.cluster.settings.kubernetes
        if k8s.database == "cloudnativepg":
            return {"target": {"mode": "all", "selector": {"namespaces": [self.namespace], "labelSelectors": {
                CNPG_CLUSTER_LABEL: CNPG_CLUSTER_NAME}}}}
        host = k8s.database_host or self._external_name()
        return {"externalTargets": [host]}

    def peer_words(self) -> str:
        k8s = self.cluster.settings.kubernetes
        if k8s.database == "cloudnativepg":
            return f"target: the pods {CNPG_CLUSTER_LABEL}={CNPG_CLUSTER_NAME}"
        return f"externalTargets: [{k8s.database_host or f'<Service {EXTERNAL_POSTGRES_SERVICE} externalName>'}]"

    def _external_name(self) -> str:
        service = self.cluster.core().read_namespaced_service(EXTERNAL_POSTGRES_SERVICE, self.namespace)
        host = getattr(service.spec, "external_name", None)
        if not host:
            raise UserError(f"the API's database host is unknown: set kubernetes.database_host, or deploy the app "
                            f"(its ExternalName Service {EXTERNAL_POSTGRES_SERVICE} names the host)")
        return str(host)

    def plan(self, fault: str, arguments: dict[str, Any], step: str) -> list[str]:
        action = ACTIONS[fault]
        return [f"{fault}: GET /apis/{GROUP}/{VERSION} (refused when Chaos Mesh's CRDs are absent)",
                f"{fault}: POST /apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL} {KIND} action={action}, "
                f"selector app.kubernetes.io/name={APP_NAME} (mode all), direction to, {self.peer_words()}, "
                f"duration {SAFETY_S}s (Chaos Mesh recovers by itself then; the run deletes it after its hold); the path "
                f"timed through the API before and during",
                f"rollback {step}: DELETE the {KIND} (Chaos Mesh recovers the pods), wait until it is gone"]

    def create(self, fault: str, arguments: dict[str, Any], peer: dict[str, Any]) -> str:
        name = f"rsl-{fault.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
        self._custom().create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                       manifest(fault, arguments, self.namespace, name, peer))
        return name

    def read(self, name: str) -> Manifest | None:
        from kubernetes.client.rest import ApiException
        try:
            found = self._custom().get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found)

    def delete(self, name: str) -> None:
        """Delete our NetworkChaos `name` and wait until it is gone (recovered); safe twice."""
        from kubernetes.client.rest import ApiException
        found = self.read(name)
        if found is None:
            return
        if (found.get("metadata") or {}).get("labels", {}).get(MANAGED_BY_LABEL) != MANAGER:
            raise UserError(f"{KIND} {self.namespace}/{name} does not carry {MANAGED_BY_LABEL}={MANAGER}: not one this "
                            f"tool made, so it is not touched. Check rollback.json.")
        try:
            self._custom().delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
        deadline = time.monotonic() + GONE_WAIT_S
        while self.read(name) is not None:
            if time.monotonic() >= deadline:
                raise HarnessError(f"{KIND} {self.namespace}/{name} is still there {GONE_WAIT_S:g} s after its "
                                   f"deletion: Chaos Mesh has not recovered the pods (is chaos-controller-manager "
                                   f"running?). Check `kubectl describe networkchaos -n {self.namespace} {name}`.")
            self.sleep(POLL_S)

    def ours(self, fault: str) -> list[str]:
        """The names of our NetworkChaos objects of `fault` (what a crash mid-fault may have left)."""
        from kubernetes.client.rest import ApiException
        selector = f"{MANAGED_BY_LABEL}={MANAGER},{FAULT_LABEL}={fault.replace('_', '-')}"
        try:
            if not self.installed():
                return []
            found = self._custom().list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                                 label_selector=selector)
        except ApiException as exc:
            if exc.status == 403:  # an identity without the networkchaos rule (an older deploy/rbac.yaml) made none
                return []
            raise
        return [item["metadata"]["name"] for item in found.get("items", [])]
