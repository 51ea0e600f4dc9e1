"""lose_zone on Kubernetes: cordon the zone's schedulable nodes, evict the allowed namespaces' pods from them,
and keep new nodes in the zone cordoned until the rollback (kubernetes/cordon.py).

Only nodes within `kubernetes.node_selector` and not cordoned already are cordoned, each
marked with this injection's `resilience.dev/cordoned-by` annotation; the nodes and the mark
are written to rollback.json before the first cordon. A rollback (even after a crash, even
from a forged file) uncordons only nodes carrying the mark.
Evictions go through policy/v1 Eviction (PodDisruptionBudgets apply), as `kubectl drain`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ....errors import HarnessError, UserError
from ....fault_registry import FaultCall
from ....load.cluster_manifests import RUN_LABEL
from ...base import RollbackStep
from ...blast_radius import node_count_problem
from ...fault_module import Effect, FaultModule, InjectContext
from .. import cordon, plan
from ..manifests import APP_SELECTOR, ZONE_LABEL
from ..platform import busiest_zone
from . import FAULTS

if TYPE_CHECKING:
    from ..nemesis import ClusterAccess, KubernetesNemesis


@FAULTS.register
class LoseZone(FaultModule["KubernetesNemesis"]):
    fault = "lose_zone"
    steps = ("restore_zone",)

    def plan(self, nemesis: KubernetesNemesis, call: FaultCall) -> list[str]:
        zone = call.get("zone")
        chosen = zone if zone not in (None, "primary") else "<zone>"
        lines = [] if chosen != "<zone>" else [
            f"lose_zone: zone = the database primary's zone if the target knows it, else the zone running the "
            f"most API pods, from GET /api/v1/namespaces/{nemesis.namespace}/pods?labelSelector={APP_SELECTOR} and "
            f"GET /api/v1/nodes"]
        lines += _node_plan(nemesis, chosen)
        return lines

    def inject(self, nemesis: KubernetesNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        """Cordon the zone's nodes that were schedulable, then evict the allowed namespaces' pods from them."""
        platform = nemesis.platform
        zone = call.get("zone")
        if zone in (None, "primary"):
            zone = busiest_zone([c.zone for c in platform.status().components])
            if zone is None:
                raise UserError(f"lose_zone: no API pod in namespace {nemesis.namespace} runs on a node with the "
                                f"label {ZONE_LABEL}; pass the zone explicitly or label the nodes.")
        return _lose(self, nemesis, zone, context)

    def undo(self, nemesis: KubernetesNemesis, step: RollbackStep) -> None:
        _stop_guard(step)
        core, mark, zone = nemesis.platform.core(), str(step.arguments.get("mark") or ""), step.arguments.get("zone")
        candidates = {str(n) for n in step.arguments.get("nodes", [])}
        if isinstance(zone, str) and mark:
            candidates |= set(cordon.marked_in_zone(core, zone, mark))  # the guard's nodes too
        for node in sorted(candidates):
            cordon.uncordon_if_marked(core, node, mark)

    def undo_refusal(self, nemesis: KubernetesNemesis, step: RollbackStep) -> str | None:
        """A rollback.json step is re-checked: a mark, nodes within the limit, never one cordoned before the run.
        (The undo then touches only nodes that carry the step's mark.)"""
        nodes = step.arguments.get("nodes", [])
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            return f"'nodes' must be a list of node names, got {nodes!r}"
        mark = step.arguments.get("mark")
        if not isinstance(mark, str) or not mark:
            return (f"the step names no {cordon.CORDONED_BY} mark (written before marks existed, or forged), so no "
                    f"node can be shown to be this run's; check and uncordon by hand: kubectl uncordon <node>")
        if set(nodes) & set(step.arguments.get("already_cordoned", [])):
            return "it would uncordon nodes that were cordoned before the run"
        return node_count_problem(nemesis.platform.settings, nodes)

    # -- its effect (the run times the fault from it) -----------------------------------------------
    def effect(self, nemesis: KubernetesNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        """The zone has no Ready app pod (cordoned, its pods evicted)."""
        zone = step.arguments.get("zone")

        def look() -> dict[str, Any] | None:
            left = [c.name for c in nemesis.platform.status().components if c.zone == zone and c.healthy]
            return None if left else {"zone": zone}
        deadline = float(nemesis.platform.settings.kubernetes.eviction_timeout_s) + 60.0  # evictions, then grace
        return Effect(f"zone {zone} has no Ready app pod", deadline, look)



_GUARDS: dict[str, cordon.ZoneGuard] = {}  # by mark: the guard of each zone lost in this process


def _node_plan(nemesis: KubernetesNemesis, zone: str) -> list[str]:
    k = nemesis.platform.settings.kubernetes
    lines = [f"lose_zone: GET /api/v1/nodes?labelSelector={cordon.allowed_selector(nemesis.platform.settings, zone)}"
             f" (kubernetes.node_selector: {k.node_selector or 'unset, any node'}); nodes already unschedulable are "
             f"left alone (and never uncordoned), the zone's nodes outside the selector too",
             f"lose_zone: write the nodes to cordon (at most {k.max_cordoned_nodes}, kubernetes.max_cordoned_nodes) "
             f"and a new mark into rollback.json before the first cordon",
             f"lose_zone: {cordon.cordon_line('<node>')} for each of those nodes"]
    lines += [f"lose_zone: {line}" for line in plan.eviction_lines(k.fault_namespaces(), k.eviction_timeout_s)]
    lines += [f"lose_zone: until the rollback, every {cordon.GUARD_POLL_S:g} s: GET /api/v1/nodes?labelSelector="
              f"{cordon.allowed_selector(nemesis.platform.settings, zone)}; a new schedulable node (Cluster "
              f"Autoscaler, Karpenter) is cordoned and marked the same way and drained"]
    return lines + [f"rollback restore_zone: {line}" for line in cordon.uncordon_lines(zone)]


def _lose(module: LoseZone, nemesis: KubernetesNemesis, zone: str, context: InjectContext) -> RollbackStep:
    """Cordon and mark the zone's allowed schedulable nodes, evict their pods, start the zone's guard."""
    platform = nemesis.platform
    core = platform.core()
    nodes, outside = cordon.zone_nodes(core, platform.settings, zone)
    if not nodes:
        raise UserError(f"lose_zone: no node carries {cordon.allowed_selector(platform.settings, zone)} "
                        f"(kubernetes.node_selector: {platform.settings.kubernetes.node_selector or 'unset'}); "
                        f"zones present: {sorted({z for z in platform.node_zones().values() if z})}.")
    to_cordon = sorted(name for name, cordoned in nodes.items() if not cordoned)
    already = sorted(name for name, cordoned in nodes.items() if cordoned)
    too_many = node_count_problem(platform.settings, to_cordon)
    if too_many:
        raise UserError(f"lose_zone {zone}: {too_many}")
    namespaces = list(platform.settings.kubernetes.fault_namespaces())
    mark = cordon.new_mark()
    step = RollbackStep("restore_zone", {"zone": zone, "nodes": to_cordon, "already_cordoned": already,
                                         "outside_selector": outside, "mark": mark, "namespaces": namespaces},
                        f"uncordon the nodes of zone {zone} carrying {cordon.CORDONED_BY}={mark}: "
                        f"{', '.join(to_cordon) or 'none'} (and any the guard cordoned)")
    context.record(step)  # before the first cordon: a crash from here on uncordons exactly the marked nodes
    try:
        for node in to_cordon:
            cordon.cordon(core, node, mark)
        evicted, refused = _evict_from(platform, sorted(nodes), namespaces)
    except Exception as exc:
        module.undo(nemesis, step)
        raise HarnessError(f"lose_zone {zone}: {exc}; the nodes this run cordoned were uncordoned again.") from exc
    _GUARDS[mark] = cordon.ZoneGuard(core, platform.settings, zone, mark, known=set(nodes) | set(outside),
                                     ours=len(to_cordon),
                                     evict=lambda new: _evict_from(platform, new, namespaces)).start()
    return RollbackStep(step.capability, {**step.arguments, "evicted": evicted, "refused": refused},
                        step.description)


def _stop_guard(step: RollbackStep) -> None:
    guard = _GUARDS.pop(str(step.arguments.get("mark") or ""), None)
    if guard is not None:
        guard.stop()


def _evict_from(platform: ClusterAccess, nodes: list[str], namespaces: list[str]) -> tuple[list[str], list[str]]:
    """Evict the pods of `namespaces` running on `nodes` (policy/v1 Eviction, so PodDisruptionBudgets apply),
    except DaemonSet pods (as `kubectl drain`) and the run's own in-cluster load.

    A 429 (the budget would be violated) is retried until kubernetes.eviction_timeout_s, as `kubectl
    drain` does; what is still refused then is returned, not raised: the zone is lost either way.
    Returns (evicted, refused) as "namespace/pod".
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    core = platform.core()
    pending = [(ns, pod.metadata.name) for ns in namespaces for node in nodes
               for pod in core.list_namespaced_pod(ns, field_selector=f"spec.nodeName={node}").items
               if not pod.metadata.deletion_timestamp and not _daemon_pod(pod) and not _harness_load(pod)]
    evicted: list[str] = []
    deadline = time.monotonic() + platform.settings.kubernetes.eviction_timeout_s
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


def _harness_load(pod: Any) -> bool:
    """A pod of the run's own in-cluster load (resilience/load/cluster.py): it plays the users, who are not in
    the lost zone; evicting it would end the measurement, not test the platform."""
    return RUN_LABEL in (pod.metadata.labels or {})


def _daemon_pod(pod: Any) -> bool:
    """A DaemonSet's pod: `kubectl drain` leaves these (the DaemonSet would put them straight back)."""
    return any(ref.kind == "DaemonSet" for ref in (pod.metadata.owner_references or []))
