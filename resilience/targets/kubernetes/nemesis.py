"""What can be broken on a Kubernetes cluster, and how: chaostoolkit-kubernetes calls from plan.py.

The same `ChaosCall` values make the dry-run lines and the real calls, so a plan
line is exactly what would happen.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable

from ...errors import HarnessError, UserError
from ...fault_registry import ROLLBACK_NONE, FaultCall
from . import plan
from ..base import Nemesis, Recorder, RollbackStep, no_record
from ..blast_radius import namespace_problem, node_count_problem
from .platform import KubernetesPlatform, busiest_zone
from ...load.cluster_manifests import RUN_LABEL
from .manifests import APP_SELECTOR, ZONE_LABEL

NOT_ON_KUBERNETES = "the API replicas are pods: the kubelet and the Deployment controller own their processes"


class KubernetesNemesis(Nemesis):
    name = "kubernetes"
    SUPPORT = {
        "kill_replicas": None,
        "lose_zone": None,
        "fail_over_database": None,  # only with kubernetes.database: cloudnativepg (argument_refusal)
        "stop_cache": "Redis is AWS ElastiCache, not a pod: use --target aws "
                      "(chaosaws.elasticache.actions.test_failover)",
        "pause_replicas": f"freezing processes needs the node: {NOT_ON_KUBERNETES} (use kill_replicas)",
        "hold_replication": "holding WAL senders needs the database host: the local target only",
    }

    def __init__(self, platform: KubernetesPlatform) -> None:
        self.platform = platform
        self.namespace = platform.namespace

    # -- plans -----------------------------------------------------------------
    def plan(self, call: FaultCall) -> list[str]:
        planners: dict[str, Callable[[FaultCall], list[str]]] = {
            "kill_replicas": self._plan_kill_replicas, "lose_zone": self._plan_lose_zone,
            "fail_over_database": self._plan_fail_over_database}
        return planners[call.fault](call)

    def _plan_kill_replicas(self, call: FaultCall) -> list[str]:
        chaos = plan.kill_replicas_call(self.namespace, call.get("count"), call.get("percent"))
        seed = call.get("seed")
        lines = [f"kill_replicas: random.seed({seed!r})"] if seed is not None else []
        return lines + [f"kill_replicas: {line}" for line in chaos.plan_lines()] + [
            "rollback none: the Deployment controller replaces terminated pods by itself"]

    def _plan_lose_zone(self, call: FaultCall) -> list[str]:
        zone = call.get("zone")
        chosen = zone if zone not in (None, "primary") else "<zone>"
        k = self.platform.settings.kubernetes
        lines = [] if chosen != "<zone>" else [
            f"lose_zone: zone = the database primary's zone if the target knows it, else the zone running the "
            f"most API pods, from GET /api/v1/namespaces/{self.namespace}/pods?labelSelector={APP_SELECTOR} and "
            f"GET /api/v1/nodes"]
        lines += [f"lose_zone: GET /api/v1/nodes?labelSelector={plan.zone_selector(chosen)}; nodes already "
                  f"unschedulable are left alone (and never uncordoned)",
                  f"lose_zone: write the nodes to cordon (at most {k.max_cordoned_nodes}, "
                  f"kubernetes.max_cordoned_nodes) into rollback.json before the first cordon"]
        lines += [f"lose_zone: {line} for each of those nodes" for line in plan.cordon_call("<node>").plan_lines()]
        lines += [f"lose_zone: {line}" for line in plan.eviction_lines(k.fault_namespaces(), k.eviction_timeout_s)]
        lines += [f"rollback restore_zone: {line} for each node this run cordoned"
                  for line in plan.uncordon_call("<node>").plan_lines()]
        return lines

    def _plan_fail_over_database(self, call: FaultCall) -> list[str]:
        chaos = plan.kill_database_primary_call(self.namespace)
        return [f"fail_over_database: only with in-cluster CloudNativePG: GET /api/v1/namespaces/{self.namespace}"
                f"/pods?labelSelector={plan.CNPG_PRIMARY_SELECTOR}; if none (RDS), refuse and point to --target aws",
                *(f"fail_over_database: {line}" for line in chaos.plan_lines()),
                "rollback none: the operator promotes a standby and recreates the pod"]

    # -- faults ------------------------------------------------------------------
    def inject(self, call: FaultCall, seed: int | None = None, record: Recorder = no_record) -> RollbackStep:
        if call.fault == "lose_zone":
            return self._lose_zone(call, seed, record)
        injectors: dict[str, Callable[[FaultCall, int | None], RollbackStep]] = {
            "kill_replicas": self._kill_replicas, "fail_over_database": self._fail_over_database}
        return injectors[call.fault](call, seed)

    def argument_refusal(self, call: FaultCall) -> str | None:
        settings = self.platform.settings
        if call.fault == "fail_over_database" and call.get("mode") != "kill":
            return (f"mode {call.get('mode')!r} is not available on Kubernetes (only 'kill' of an in-cluster "
                    f"CloudNativePG primary); use --target aws for RDS, or the local target for 'freeze'.")
        if call.fault == "fail_over_database" and settings.kubernetes.database != "cloudnativepg":
            return (f"PostgreSQL is external (AWS RDS '{settings.aws.rds_cluster}'; setting kubernetes.database: "
                    f"{settings.kubernetes.database}): use --target aws, which fails RDS over through "
                    f"chaosaws.rds.actions.failover_db_cluster, or set kubernetes.database: cloudnativepg for an "
                    f"in-cluster CloudNativePG cluster.")
        return namespace_problem(self.platform.settings, self.namespace)

    def rollback_refusal(self, step: RollbackStep) -> str | None:
        """A rollback.json step is re-checked: only nodes within the limit, never a node cordoned before the run."""
        if step.capability not in (ROLLBACK_NONE, "restore_zone", "scale_replicas"):
            return f"the kubernetes nemesis has no rollback {step.capability!r}"
        nodes = step.arguments.get("nodes", [])
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            return f"'nodes' must be a list of node names, got {nodes!r}"
        if set(nodes) & set(step.arguments.get("already_cordoned", [])):
            return "it would uncordon nodes that were cordoned before the run"
        return node_count_problem(self.platform.settings, nodes)

    def _kill_replicas(self, call: FaultCall, seed: int | None) -> RollbackStep:
        chaos = plan.kill_replicas_call(self.namespace, call.get("count"), call.get("percent"))
        seed = call.get("seed") if call.get("seed") is not None else seed
        if seed is not None:
            random.seed(seed)  # chaosk8s picks pods with the module-level random
        killed = chaos.run(self.platform.chaos_secrets())
        return RollbackStep(ROLLBACK_NONE, {"killed": list(killed or [])},
                            "the Deployment controller replaces terminated pods by itself")

    def _lose_zone(self, call: FaultCall, seed: int | None, record: Recorder) -> RollbackStep:
        """Cordon the zone's nodes that were schedulable, then evict the allowed namespaces' pods from them."""
        zone = call.get("zone")
        if zone in (None, "primary"):
            zone = busiest_zone([c.zone for c in self.platform.status().components])
            if zone is None:
                raise UserError(f"lose_zone: no API pod in namespace {self.namespace} runs on a node with the "
                                f"label {ZONE_LABEL}; pass the zone explicitly or label the nodes.")
        nodes = self.platform.nodes_in_zone(zone)
        if not nodes:
            raise UserError(f"lose_zone: no node carries {plan.zone_selector(zone)}; zones present: "
                            f"{sorted({z for z in self.platform.node_zones().values() if z})}.")
        to_cordon = sorted(name for name, cordoned in nodes.items() if not cordoned)
        already = sorted(name for name, cordoned in nodes.items() if cordoned)
        too_many = node_count_problem(self.platform.settings, to_cordon)
        if too_many:
            raise UserError(f"lose_zone {zone}: {too_many}")
        namespaces = list(self.platform.settings.kubernetes.fault_namespaces())
        step = RollbackStep("restore_zone", {"zone": zone, "nodes": to_cordon, "already_cordoned": already,
                                             "namespaces": namespaces},
                            f"uncordon the nodes of zone {zone} this run cordoned: {', '.join(to_cordon) or 'none'}")
        record(step)  # before the first cordon: a crash from here on uncordons exactly these nodes
        secrets = self.platform.chaos_secrets()
        try:
            for node in to_cordon:
                plan.cordon_call(node).run(secrets)
            evicted, refused = self._evict_from(sorted(nodes), namespaces)
        except Exception as exc:
            self.rollback(step)
            raise HarnessError(f"lose_zone {zone}: {exc}; the nodes this run cordoned were uncordoned again.") from exc
        return RollbackStep(step.capability, {**step.arguments, "evicted": evicted, "refused": refused},
                            step.description)

    def _evict_from(self, nodes: list[str], namespaces: list[str]) -> tuple[list[str], list[str]]:
        """Evict the pods of `namespaces` running on `nodes` (policy/v1 Eviction, so PodDisruptionBudgets apply),
        except DaemonSet pods (as `kubectl drain`) and the run's own in-cluster load.

        A 429 (the budget would be violated) is retried until kubernetes.eviction_timeout_s, as `kubectl
        drain` does; what is still refused then is returned, not raised: the zone is lost either way.
        Returns (evicted, refused) as "namespace/pod".
        """
        from kubernetes import client
        from kubernetes.client.rest import ApiException
        core = self.platform.core()
        pending = [(ns, pod.metadata.name) for ns in namespaces for node in nodes
                   for pod in core.list_namespaced_pod(ns, field_selector=f"spec.nodeName={node}").items
                   if not pod.metadata.deletion_timestamp and not _daemon_pod(pod) and not _harness_load(pod)]
        evicted: list[str] = []
        deadline = time.monotonic() + self.platform.settings.kubernetes.eviction_timeout_s
        while pending:
            refused = []
            for ns, name in pending:
                body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=ns))
                try:
                    core.create_namespaced_pod_eviction(name, ns, body)
                    evicted.append(f"{ns}/{name}")
                except ApiException as exc:
                    if exc.status == 404:
                        continue  # gone already
                    if exc.status != 429:
                        raise HarnessError(f"evicting pod {ns}/{name}: HTTP {exc.status} {exc.reason}: "
                                           f"{exc.body}") from None
                    refused.append((ns, name))
            pending = refused
            if pending and time.monotonic() + plan.EVICTION_RETRY_S > deadline:
                break
            if pending:
                time.sleep(plan.EVICTION_RETRY_S)
        return evicted, [f"{ns}/{name}" for ns, name in pending]

    def scale_replicas(self, replicas: int) -> RollbackStep:
        """Set the Deployment's replica count (the HPA may move it again); rollback restores the old count."""
        previous = self.platform.desired_replicas()
        plan.scale_call(self.namespace, replicas).run(self.platform.chaos_secrets())
        return RollbackStep("scale_replicas", {"replicas": previous}, f"scale back to {previous} replicas",
                            nemesis=self.name)

    def _fail_over_database(self, call: FaultCall, seed: int | None) -> RollbackStep:
        if not self.platform.pods(plan.CNPG_PRIMARY_SELECTOR):
            raise UserError(
                f"fail_over_database: no CloudNativePG primary pod ({plan.CNPG_PRIMARY_SELECTOR}) in namespace "
                f"{self.namespace}: PostgreSQL is external (AWS RDS). Run the experiment with --target aws, which "
                f"uses chaosaws.rds.actions.failover_db_cluster on '{self.platform.settings.aws.rds_cluster}'.")
        killed = plan.kill_database_primary_call(self.namespace).run(self.platform.chaos_secrets())
        return RollbackStep(ROLLBACK_NONE, {"killed": list(killed or [])}, "the operator promotes a standby")

    # -- undoing -----------------------------------------------------------------
    def rollback(self, step: RollbackStep) -> None:
        if step.capability == ROLLBACK_NONE:
            return
        if step.capability == "restore_zone":
            secrets = self.platform.chaos_secrets()
            for node in step.arguments.get("nodes", []):
                plan.uncordon_call(str(node)).run(secrets)
        elif step.capability == "scale_replicas":
            plan.scale_call(self.namespace, int(step.arguments["replicas"])).run(self.platform.chaos_secrets())
        else:
            raise UserError(f"rollback step {step.capability!r} does not belong to the kubernetes nemesis "
                            f"(known: none, restore_zone, scale_replicas). Check rollback.json.")


def _harness_load(pod: Any) -> bool:
    """A pod of the run's own in-cluster load (resilience/load/cluster.py): it plays the users, who are not in
    the lost zone; evicting it would end the measurement, not test the platform."""
    return RUN_LABEL in (pod.metadata.labels or {})


def _daemon_pod(pod: Any) -> bool:
    """A DaemonSet's pod: `kubectl drain` leaves these (the DaemonSet would put them straight back)."""
    return any(ref.kind == "DaemonSet" for ref in (pod.metadata.owner_references or []))
