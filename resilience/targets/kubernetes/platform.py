"""The Kubernetes target: the platform as manifests on a cluster, faults via chaostoolkit-kubernetes.

Nothing touches a cluster by accident: the constructor refuses any context
that is not in `kubernetes.allowed_contexts` before a client exists, and a
dry run (`dry_run=True`) makes every method report what it would do (API
verbs and paths, label selectors, chaosk8s calls) without a single request.

chaosk8s builds its own client (`chaosk8s.create_k8s_api_client(secrets)`,
from the kubeconfig and `KUBERNETES_CONTEXT`); we pass it the same context and
check once that it reaches the same API server as our own client.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from ...config import IN_CLUSTER_CONTEXT, Settings
from ...errors import HarnessError, UserError
from . import alert_watch, plan
from ..base import Build, Component, Platform, PlatformEvent, StackStatus
from ..clock import to_monotonic
from ..recovery_log import RecoveryLog
from .observer import ReplicaState, event_from_k8s
from .manifests import (API_PORT, APP_NAME, APP_SELECTOR, MANAGED_BY_LABEL, MANAGED_SELECTOR, MANAGER,
                        REPLICAS_MANAGER, ZONE_LABEL, BackendEndpoints, Manifest, replicas_manifest, settings_endpoints,
                        stack_manifests)

DEFAULT_WAIT_TIMEOUT_S = 600.0
IN_CLUSTER = IN_CLUSTER_CONTEXT  # the context of a harness running in a pod (the CronJob): its service account
POLL_INTERVAL_S = 1.0


def check_context_allowed(settings: Settings, context: str) -> None:
    """Refuse a context that is not explicitly allowed (no API call has been made yet)."""
    allowed = settings.kubernetes.allowed_contexts
    if context not in allowed:
        listed = ", ".join(repr(c) for c in allowed) or "nothing"
        raise UserError(
            f"{settings.source}: kubernetes context {context!r} is not in 'kubernetes.allowed_contexts' "
            f"(it allows {listed}). Nothing was sent to the cluster. If this cluster is meant for chaos "
            f"experiments, add it to the allow-list, e.g.\n  kubernetes:\n    allowed_contexts: [{context}]")


def api_client_for(context: str) -> Any:
    """A client for the kubeconfig context, or the pod's service account for the context 'in-cluster'.

    Call `check_context_allowed` first: this reads credentials, it does not judge them.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException
    if context == IN_CLUSTER:
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise UserError(f"--context {IN_CLUSTER}: not running in a pod with a service account ({exc}). "
                            f"Use a kubeconfig context outside the cluster.") from None
        os.environ["CHAOSTOOLKIT_IN_POD"] = "true"  # chaosk8s then uses the same service account
        return client.ApiClient(configuration)
    path = os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config"))
    try:
        return config.new_client_from_config(config_file=path, context=context)
    except (ConfigException, OSError) as exc:
        raise UserError(f"kubeconfig {path}: cannot use context {context!r} ({exc}). Check the file "
                        f"(or $KUBECONFIG) and the context name (`kubectl config get-contexts`).") from None


def busiest_zone(zones_of_pods: list[str | None]) -> str | None:
    """The zone running the most API pods (ties: alphabetical): losing it hurts most."""
    counts: dict[str, int] = {}
    for zone in zones_of_pods:
        if zone:
            counts[zone] = counts.get(zone, 0) + 1
    if not counts:
        return None
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


class KubernetesPlatform(Platform):
    """The platform on a Kubernetes cluster named by a kubeconfig context (faults: kubernetes/nemesis.py)."""

    name = "kubernetes"

    @classmethod
    def build(cls, parts: Build) -> "KubernetesPlatform":
        """For a composition: the database and cache hosts from kubernetes.database_host / cache_host (no AWS
        client at all), else the RDS / ElastiCache endpoints from its aws services (or new ones, on demand)."""
        given = settings_endpoints(parts.settings)
        if given is not None:
            return cls(parts.settings, context=str(parts.context), dry_run=parts.dry_run, backends=given)
        from ..aws.services import AwsServices
        aws = parts.services.get("aws")
        source = aws if isinstance(aws, AwsServices) else None
        return cls(parts.settings, context=str(parts.context), dry_run=parts.dry_run,
                   backends_source=lambda: (source or AwsServices(parts.settings)).backend_endpoints())

    def __init__(self, settings: Settings, context: str, dry_run: bool = False,
                 api_client: Any | None = None, backends: BackendEndpoints | None = None,
                 backends_source: Callable[[], BackendEndpoints] | None = None,
                 wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
                 echo: Callable[[str], None] | None = None) -> None:
        check_context_allowed(settings, context)
        self.settings = settings
        self.context = context
        self.dry_run = dry_run
        self.namespace = settings.kubernetes.namespace
        self.backends = backends
        self.backends_source = backends_source  # e.g. the RDS and ElastiCache endpoints, read when deploying
        self.wait_timeout_s = wait_timeout_s
        self.planned: list[str] = []  # every dry-run line, in order
        self._echo = echo or (lambda line: print(line, file=sys.stdout))
        self._replica_samples: list[PlatformEvent] = []  # without watches: changes seen by events_since's reads
        self._replica_state = ReplicaState()  # the observer's rule for "the replica numbers changed"
        self._chaos_checked = False
        self.recovery = RecoveryLog()  # a CloudNativePG restore's steps, for the history (cnpg.py)
        self.observer: Any = None  # a KubernetesObserver between start_observing() and the end of the run
        self._api: Any = None
        if not dry_run:
            self._api = api_client if api_client is not None else self._client_from_kubeconfig(context)

    # -- clients -------------------------------------------------------------
    @staticmethod
    def _client_from_kubeconfig(context: str) -> Any:
        return api_client_for(context)

    def core(self) -> Any:
        """The CoreV1 API on this platform's client (the nemesis evicts and cordons through it)."""
        return self._core()

    def _core(self) -> Any:
        from kubernetes import client
        return client.CoreV1Api(self._api)

    def _apps(self) -> Any:
        from kubernetes import client
        return client.AppsV1Api(self._api)

    def chaos_secrets(self) -> dict[str, str]:
        """The chaosk8s secrets naming our context; verified once to reach our API server."""
        secrets = {"KUBERNETES_CONTEXT": self.context}
        if not self._chaos_checked:
            import chaosk8s
            chaos_host = chaosk8s.create_k8s_api_client(secrets).configuration.host
            our_host = self._api.configuration.host
            if chaos_host.rstrip("/") != our_host.rstrip("/"):
                raise UserError(
                    f"chaostoolkit-kubernetes would talk to {chaos_host}, but the target's client talks to "
                    f"{our_host}. chaosk8s reads $KUBECONFIG (or ~/.kube/config) with context {self.context!r}: "
                    f"point $KUBECONFIG at the kubeconfig that defines this context.")
            self._chaos_checked = True
        return secrets

    def _would(self, lines: list[str]) -> None:
        for line in lines:
            self.planned.append(line)
            self._echo(f"[dry-run] {line}")

    @property
    def database_in_cluster(self) -> bool:
        """PostgreSQL and Redis run in the cluster (kubernetes.database: cloudnativepg), not on AWS."""
        return self.settings.kubernetes.database == "cloudnativepg"

    def _manifests(self) -> list[Manifest]:
        if self.database_in_cluster:
            return stack_manifests(self.settings, "in-cluster")
        return stack_manifests(self.settings, "external", self.backends)

    # -- plans -----------------------------------------------------------------
    def plan_up(self) -> list[str]:
        lines = [f"check: context {self.context!r} is in kubernetes.allowed_contexts (no API call before this)"]
        if self.backends is None and not self.database_in_cluster:
            aws = self.settings.aws
            lines.append(f"resolve external endpoints via the aws target: rds:DescribeDBClusters({aws.rds_cluster}) "
                         f"and elasticache:DescribeReplicationGroups({aws.elasticache_group}) in {aws.region}")
        lines += [plan.apply_line(m) for m in self._manifests()] + plan.replicas_lines(self.namespace)
        lines += alert_watch.plan_lines(self.settings)  # the PrometheusRule (kubernetes.monitoring)
        lines.append(plan.wait_line(self.namespace, self.wait_timeout_s))
        return lines

    # -- lifecycle -------------------------------------------------------------
    def _resolve_backends(self) -> BackendEndpoints:
        if self.backends is None:
            if self.backends_source is None:
                raise UserError("the kubernetes platform needs the database and cache endpoints: set "
                                "kubernetes.database_host and kubernetes.cache_host, or use the aws target (EKS "
                                "with RDS and ElastiCache), which reads them from the AWS account.")
            self.backends = self.backends_source()
        return self.backends

    def up(self) -> StackStatus:
        if self.dry_run:
            self._would(self.plan_up())
            return StackStatus(self.name, False, None, None, detail={"dry_run": True, "plan": list(self.planned)})
        if not self.database_in_cluster:
            self._resolve_backends()
        adopted = self._namespace_is_someone_elses()
        current = self._deployment_replicas()
        if current is not None:  # hand spec.replicas to a private manager before our apply stops owning it
            self._apply(replicas_manifest(self.namespace, current), REPLICAS_MANAGER, force=False, conflict_ok=True)
        for manifest in self._manifests():
            if manifest["kind"] == "Namespace" and adopted:
                continue  # not ours: left without our label, so `down` never deletes it
            self._apply(manifest)
        if current is None:
            self._apply(replicas_manifest(self.namespace), REPLICAS_MANAGER, force=False)
        alert_watch.apply_rules(self._api, self.settings)  # the PrometheusRule, when the CRD is there
        self._wait_available()
        return self.status()

    def _namespace_is_someone_elses(self) -> bool:
        """The namespace exists and was not created by us (no managed-by label): we deploy into it, never own it."""
        from kubernetes.client.rest import ApiException
        try:
            namespace = self._core().read_namespace(self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return (namespace.metadata.labels or {}).get(MANAGED_BY_LABEL) != MANAGER

    def _deployment_replicas(self) -> int | None:
        from kubernetes.client.rest import ApiException
        try:
            return int(self._apps().read_namespaced_deployment(APP_NAME, self.namespace).spec.replicas or 0)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _apply(self, manifest: Manifest, manager: str = MANAGER, force: bool = True, conflict_ok: bool = False) -> None:
        """Server-side apply through the typed client (no discovery needed)."""
        from kubernetes.client.rest import ApiException
        kind = plan.kind_of(manifest)
        meta = manifest["metadata"]
        method_name = ("patch_namespace" if kind.kind == "Namespace"
                       else "patch_namespaced_" + _snake(kind.kind))
        api = self._api_for(kind.prefix)
        method = getattr(api, method_name)
        args: list[Any] = [meta["name"]] + ([meta["namespace"]] if kind.namespaced else [])
        try:
            method(*args, manifest, field_manager=manager, force=force,
                   _content_type="application/apply-patch+yaml")
        except ApiException as exc:
            if exc.status == 409 and conflict_ok:
                return
            raise HarnessError(f"server-side apply of {kind.kind} {meta['name']} failed: "
                               f"HTTP {exc.status} {exc.reason}: {exc.body}") from None

    def _api_for(self, prefix: str) -> Any:
        from kubernetes import client
        apis = {"/api/v1": client.CoreV1Api, "/apis/apps/v1": client.AppsV1Api,
                "/apis/autoscaling/v2": client.AutoscalingV2Api, "/apis/policy/v1": client.PolicyV1Api,
                "/apis/networking.k8s.io/v1": client.NetworkingV1Api}
        return apis[prefix](self._api)

    def _wait_available(self) -> None:
        deadline = time.monotonic() + self.wait_timeout_s
        while True:
            deployment = self._apps().read_namespaced_deployment(APP_NAME, self.namespace)
            if deployment_available(deployment):
                return
            if time.monotonic() >= deadline:
                st = deployment.status
                raise HarnessError(
                    f"Deployment {self.namespace}/{APP_NAME} not available after {self.wait_timeout_s:.0f} s "
                    f"(ready {st.ready_replicas or 0} of {deployment.spec.replicas}). "
                    f"Check `kubectl -n {self.namespace} describe deployment {APP_NAME}` and the pods' events.")
            time.sleep(POLL_INTERVAL_S)

    def down(self) -> None:
        if self.dry_run:
            self._would(plan.delete_lines(self._manifests()))
            return
        from kubernetes.client.rest import ApiException
        for kind in reversed(list(plan.KINDS.values())):
            if kind.kind == "Namespace":
                continue
            api = self._api_for(kind.prefix)
            plural = _snake(kind.kind)
            listing = getattr(api, f"list_namespaced_{plural}")(self.namespace, label_selector=MANAGED_SELECTOR)
            for item in listing.items:
                try:
                    getattr(api, f"delete_namespaced_{plural}")(item.metadata.name, self.namespace)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        try:
            namespace = self._core().read_namespace(self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        if (namespace.metadata.labels or {}).get(MANAGED_BY_LABEL) == MANAGER:
            self._core().delete_namespace(self.namespace)

    def status(self) -> StackStatus:
        if self.dry_run:
            self._would([f"GET /apis/apps/v1/namespaces/{self.namespace}/deployments/{APP_NAME}",
                         f"GET /api/v1/namespaces/{self.namespace}/pods?labelSelector={APP_SELECTOR}",
                         "GET /api/v1/nodes (zone of each pod from its node's label topology.kubernetes.io/zone)"])
            return StackStatus(self.name, False, None, None, detail={"dry_run": True})
        from kubernetes.client.rest import ApiException
        try:
            deployment = self._apps().read_namespaced_deployment(APP_NAME, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return StackStatus(self.name, False, None, None)
            raise
        zones = self.node_zones()
        components = []
        for pod in self._core().list_namespaced_pod(self.namespace, label_selector=APP_SELECTOR).items:
            components.append(Component(
                name=pod.metadata.name, kind="api", role="replica", zone=zones.get(pod.spec.node_name or ""),
                pid=None, address=f"{pod.status.pod_ip}:{API_PORT}" if pod.status.pod_ip else "",
                healthy=pod_ready(pod)))
        detail = {"context": self.context, "namespace": self.namespace,
                  "desired_replicas": deployment.spec.replicas,
                  "ready_replicas": deployment.status.ready_replicas or 0,
                  "alert_rules": alert_watch.rules_status(self._api, self.settings)}
        return StackStatus(self.name, True, self.public_url(), None, components, detail)

    def node_zones(self) -> dict[str, str | None]:
        return {node.metadata.name: (node.metadata.labels or {}).get(ZONE_LABEL)
                for node in self._core().list_node().items}

    def replica_bounds(self) -> tuple[int, int | None]:
        """What the app's HPA allows (minReplicas, maxReplicas); without an HPA, (1, None)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException
        try:
            spec = client.AutoscalingV2Api(self._api).read_namespaced_horizontal_pod_autoscaler(
                APP_NAME, self.namespace).spec
        except ApiException as exc:
            if exc.status == 404:
                return 1, None
            raise
        return max(1, int(spec.min_replicas or 1)), int(spec.max_replicas)

    def pods(self, label_selector: str) -> list[Any]:
        return list(self._core().list_namespaced_pod(self.namespace, label_selector=label_selector).items)

    def desired_replicas(self) -> int:
        return int(self._apps().read_namespaced_deployment(APP_NAME, self.namespace).spec.replicas or 0)

    def url(self) -> str:
        """Where users (and the load) reach the API: kubernetes.url, else what the Ingress or Service reports."""
        found = self.public_url()
        if found is None:
            raise UserError(
                f"the API in namespace {self.namespace} has no address the load can reach from here: no "
                f"kubernetes.url setting, no address in the status of Ingress {APP_NAME} or of a LoadBalancer "
                f"Service {APP_NAME}. Set kubernetes.url to the URL your users hit (e.g. https://meals.example.org), "
                f"or run the harness in the cluster (--context {IN_CLUSTER}).")
        return found

    def public_url(self) -> str | None:
        """kubernetes.url, else what the Ingress (its host rule and TLS) or the Service reports (address.py)."""
        if self.dry_run and not self.settings.kubernetes.url and self.context != IN_CLUSTER:
            return None
        from .address import public_url
        return public_url(self.settings, self._api, in_cluster=self.context == IN_CLUSTER)

    # -- observation -------------------------------------------------------------
    def ready_replicas(self) -> int:
        if self.dry_run:
            self._would([f"GET /apis/apps/v1/namespaces/{self.namespace}/deployments/{APP_NAME} (status.readyReplicas)"])
            return 0
        deployment = self._apps().read_namespaced_deployment(APP_NAME, self.namespace)
        return int(deployment.status.ready_replicas or 0)

    def start_observing(self) -> None:
        """Watch the Deployment, HPA, pods, nodes and events from now on (kubernetes/observer.py)."""
        if self.dry_run or self.observer is not None:
            return
        self.observer = alert_watch.observer(self._api, self.settings)  # + alerts when kubernetes.monitoring is on
        self.observer.start()

    def stop_observing(self) -> None:
        if self.observer is not None:
            self.observer.stop()

    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        """What the watches saw (when observing), else a sample now; plus each API pod's Ready transitions."""
        if self.dry_run:
            self._would([f"GET /api/v1/namespaces/{self.namespace}/pods?labelSelector={APP_SELECTOR}",
                         f"GET /apis/autoscaling/v2/namespaces/{self.namespace}/horizontalpodautoscalers/{APP_NAME}",
                         f"GET /api/v1/namespaces/{self.namespace}/events"])
            return []
        events: list[PlatformEvent] = []
        for pod in self._core().list_namespaced_pod(self.namespace, label_selector=APP_SELECTOR).items:
            for condition in pod.status.conditions or []:
                at = to_monotonic(condition.last_transition_time)
                if condition.type == "Ready" and at is not None and at >= monotonic:
                    events.append(PlatformEvent(at, "controller", "ready" if condition.status == "True" else "unready",
                                                {"pod": pod.metadata.name, "node": pod.spec.node_name}))
        events += self.recovery.since(monotonic)
        if self.observer is not None:
            events += [e for e in self.observer.events() if e.monotonic >= monotonic]
            return sorted(events, key=lambda e: e.monotonic)
        self._sample_replicas()
        events += [e for e in self._replica_samples if e.monotonic >= monotonic]
        for event in self._core().list_namespaced_event(self.namespace).items:
            at = to_monotonic(event.last_timestamp or event.event_time or event.first_timestamp)
            if at is not None and at >= monotonic:
                events.append(event_from_k8s(event, at))
        return sorted(events, key=lambda e: e.monotonic)

    def _sample_replicas(self) -> None:
        """Without watches: the Deployment and the HPA read now, one `replicas` event per change (ReplicaState)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException
        try:
            hpa = client.AutoscalingV2Api(self._api).read_namespaced_horizontal_pod_autoscaler(APP_NAME, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            hpa = None
        deployment = self._apps().read_namespaced_deployment(APP_NAME, self.namespace)
        detail = self._replica_state.both(deployment, hpa)
        if detail:
            self._replica_samples.append(PlatformEvent(time.monotonic(), "controller", "replicas", detail))


def deployment_available(deployment: Any) -> bool:
    """Available=True and every wanted replica available (the rollout is done)."""
    status = deployment.status
    if status is None:
        return False
    conditions = {c.type: c.status for c in status.conditions or []}
    return conditions.get("Available") == "True" and (status.available_replicas or 0) >= (deployment.spec.replicas or 0)


def pod_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _snake(kind: str) -> str:
    """'HorizontalPodAutoscaler' -> 'horizontal_pod_autoscaler' (the typed client's method suffix)."""
    out = ""
    for i, ch in enumerate(kind):
        if ch.isupper() and i:
            out += "_"
        out += ch.lower()
    return out
