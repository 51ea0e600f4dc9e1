"""The scheduler: binds pending pods to nodes, or leaves them Pending with the reason a real scheduler gives.

Filters, in the order kube-scheduler reports them:
- NodeUnschedulable: a cordoned node (spec.unschedulable) takes no new pod unless the pod tolerates
  the taint node.kubernetes.io/unschedulable:NoSchedule;
- NodeAffinity: the pod's nodeSelector must match the node's labels;
- TaintToleration: every NoSchedule / NoExecute taint must be tolerated;
- NodeResourcesFit: the pod's requests must fit in what the node's allocatable leaves (resources.py):
  otherwise "Insufficient cpu" / "Insufficient memory" / "Too many pods", and the pod stays Pending;
- PodTopologySpread (unless `FakeKubeApi(topology_spread=False)`): for each constraint with
  whenUnsatisfiable: DoNotSchedule, placing the pod in the node's domain must keep
  (matching pods in that domain + 1) - (global minimum over eligible domains) <= maxSkew.
  Eligible domains come from nodes that carry the topologyKey, match the pod's nodeSelector
  (nodeAffinityPolicy Honor, the default) and, with nodeTaintsPolicy: Honor, whose taints the
  pod tolerates. With nodeTaintsPolicy unset or Ignore (the default) a cordoned node still counts,
  so its zone stays a domain with 0 matching pods and pins the global minimum at 0: a replacement
  that needs that zone stays Pending. Pods being deleted are not counted. minDomains applies.

Among feasible nodes it prefers the one that keeps the ScheduleAnyway (and DoNotSchedule) skews
lowest, then the least loaded, then the name. A pod no node fits gets PodScheduled=False,
reason Unschedulable, the message kube-scheduler writes ("0/3 nodes are available: ...") and a
FailedScheduling event; it is retried whenever pods or nodes change (an uncordon, a pod leaving).

Docs followed:
- https://kubernetes.io/docs/concepts/scheduling-eviction/topology-spread-constraints/
  (maxSkew, global minimum, minDomains, nodeAffinityPolicy / nodeTaintsPolicy: "If this value is nil,
  the behavior is equivalent to the Ignore policy")
- https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/#taint-nodes-by-condition
  (cordon adds node.kubernetes.io/unschedulable:NoSchedule)
- https://kubernetes.io/docs/concepts/architecture/nodes/#manual-node-administration (kubectl cordon)
- https://kubernetes.io/docs/concepts/scheduling-eviction/pod-scheduling-readiness/ and
  https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-conditions (PodScheduled, Unschedulable)
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import TYPE_CHECKING

from .disruption import terminating
from .resources import insufficient
from .selectors import labels_of, selector_matches, tolerates
from .store import Key, Obj

if TYPE_CHECKING:
    from .server import FakeKubeApi

UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def node_taints(node: Obj) -> list[Obj]:
    return list((node.get("spec") or {}).get("taints") or [])


def _untolerated(pod: Obj, node: Obj) -> list[Obj]:
    tolerations = pod.get("spec", {}).get("tolerations") or []
    return [t for t in node_taints(node) if t.get("effect") in ("NoSchedule", "NoExecute")
            and not tolerates(tolerations, t)]


def _matches_node_selector(pod: Obj, node: Obj) -> bool:
    wanted = pod.get("spec", {}).get("nodeSelector") or {}
    labels = labels_of(node)
    return all(labels.get(k) == v for k, v in wanted.items())


def _constraint_selects(constraint: Obj, pod: Obj, other: Obj) -> bool:
    if selector_matches(constraint.get("labelSelector"), labels_of(other)) is False:
        return False
    own = labels_of(pod)
    return all(labels_of(other).get(k) == own[k] for k in constraint.get("matchLabelKeys") or [] if k in own)


class Scheduler:
    def __init__(self, api: "FakeKubeApi") -> None:
        self.api = api

    # -- the topology spread filter and score
    def _domains(self, pod: Obj, constraint: Obj, nodes: list[Obj]) -> dict[str, int]:
        """Eligible domain -> matching pods in it (the scheduler's per-constraint counts)."""
        key = constraint["topologyKey"]
        honor_taints = constraint.get("nodeTaintsPolicy", "Ignore") == "Honor"
        honor_affinity = constraint.get("nodeAffinityPolicy", "Honor") == "Honor"
        counts: dict[str, int] = {}
        node_domain: dict[str, str] = {}
        for node in nodes:
            value = labels_of(node).get(key)
            if value is None:
                continue
            if honor_affinity and not _matches_node_selector(pod, node):
                continue
            if honor_taints and _untolerated(pod, node):
                continue
            counts.setdefault(value, 0)
            node_domain[node["metadata"]["name"]] = value
        ns = pod["metadata"].get("namespace")
        for other in self.api.store.values("pods", ns):
            domain = node_domain.get(other.get("spec", {}).get("nodeName") or "")
            if domain is not None and not terminating(other) and _constraint_selects(constraint, pod, other):
                counts[domain] += 1
        return counts

    def _skew_after(self, pod: Obj, constraint: Obj, node: Obj, nodes: list[Obj]) -> int | None:
        """The skew if `pod` went to `node` (None: the node has no such domain)."""
        counts = self._domains(pod, constraint, nodes)
        domain = labels_of(node).get(constraint["topologyKey"])
        if domain is None or domain not in counts:
            return None
        global_min = min(counts.values()) if counts else 0
        if len(counts) < int(constraint.get("minDomains") or 1):
            global_min = 0
        self_match = 1 if _constraint_selects(constraint, pod, pod) else 0
        return counts[domain] + self_match - global_min

    # -- placement
    def _filter(self, pod: Obj, nodes: list[Obj]) -> tuple[list[Obj], Counter[str]]:
        reasons: Counter[str] = Counter()
        feasible = []
        constraints = pod.get("spec", {}).get("topologySpreadConstraints") or []
        hard = [c for c in constraints if c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule"]
        tolerations = pod.get("spec", {}).get("tolerations") or []
        bound: dict[str, list[Obj]] = {}
        for other in self.api.store.values("pods"):
            if other.get("spec", {}).get("nodeName"):
                bound.setdefault(other["spec"]["nodeName"], []).append(other)
        for node in nodes:
            taints = _untolerated(pod, node)
            if node.get("spec", {}).get("unschedulable") and not tolerates(tolerations, UNSCHEDULABLE_TAINT):
                reasons["node(s) were unschedulable"] += 1
                continue
            if not _matches_node_selector(pod, node):
                reasons["node(s) didn't match Pod's node affinity/selector"] += 1
                continue
            if taints:
                taint = taints[0]
                reasons[f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"] += 1
                continue
            short = insufficient(pod, node, bound.get(node["metadata"]["name"], []))
            if short:
                for reason in short:
                    reasons[reason] += 1
                continue
            if self.api.topology_spread and hard:
                skews = [(c, self._skew_after(pod, c, node, nodes)) for c in hard]
                if any(skew is None for _, skew in skews):
                    reasons["node(s) didn't match pod topology spread constraints (missing required label)"] += 1
                    continue
                if any(skew is not None and skew > int(c.get("maxSkew", 1)) for c, skew in skews):
                    reasons["node(s) didn't match pod topology spread constraints"] += 1
                    continue
            feasible.append(node)
        return feasible, reasons

    def _score(self, pod: Obj, node: Obj, nodes: list[Obj]) -> tuple[int, int, str]:
        constraints = pod.get("spec", {}).get("topologySpreadConstraints") or []
        skew = 0
        for constraint in constraints:
            value = self._skew_after(pod, constraint, node, nodes)
            skew += value if value is not None else 0
        load = sum(1 for p in self.api.store.values("pods") if p.get("spec", {}).get("nodeName") ==
                   node["metadata"]["name"] and not terminating(p))
        return skew, load, node["metadata"]["name"]

    def schedule_pending(self) -> None:
        """Try every unbound pod, oldest first; bind it or record why it cannot run."""
        nodes = [n for _, n in sorted(self.api.store.items("nodes"), key=lambda kv: kv[0][3])]
        pending = [(k, p) for k, p in self.api.store.items("pods")
                   if not p.get("spec", {}).get("nodeName") and not terminating(p)]
        for key, pod in pending:
            feasible, reasons = self._filter(pod, nodes)
            if feasible:
                best = min(feasible, key=lambda n: self._score(pod, n, nodes))
                self._bind(key, pod, best)
            else:
                self._unschedulable(key, pod, len(nodes), reasons)

    def _bind(self, key: Key, pod: Obj, node: Obj) -> None:
        bound = copy.deepcopy(pod)
        bound["spec"]["nodeName"] = node["metadata"]["name"]
        _set_condition(bound, "PodScheduled", "True", None, None, self.api.now_iso())
        self.api.store.update(key, bound)
        self.api.record_event(key[2] or "default", bound, "Scheduled",
                              f"Successfully assigned {key[2]}/{key[3]} to {node['metadata']['name']}",
                              component="default-scheduler")

    def _unschedulable(self, key: Key, pod: Obj, total: int, reasons: Counter[str]) -> None:
        parts = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        message = f"0/{total} nodes are available: {parts}." if parts else f"0/{total} nodes are available."
        if total:
            message += f" preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
        current = next((c for c in pod.get("status", {}).get("conditions") or [] if c["type"] == "PodScheduled"), None)
        if current is not None and current.get("message") == message:
            return  # already reported; the scheduler does not repeat itself on every retry
        updated = copy.deepcopy(pod)
        updated.setdefault("status", {})["phase"] = "Pending"
        _set_condition(updated, "PodScheduled", "False", "Unschedulable", message, self.api.now_iso())
        self.api.store.update(key, updated)
        self.api.record_event(key[2] or "default", updated, "FailedScheduling", message, event_type="Warning",
                              component="default-scheduler")


def _set_condition(pod: Obj, kind: str, status: str, reason: str | None, message: str | None, at: str) -> None:
    conditions = pod.setdefault("status", {}).setdefault("conditions", [])
    for condition in conditions:
        if condition["type"] == kind:
            if condition["status"] != status:
                condition["lastTransitionTime"] = at
            condition["status"] = status
            for field, value in (("reason", reason), ("message", message)):
                if value is None:
                    condition.pop(field, None)
                else:
                    condition[field] = value
            return
    condition = {"type": kind, "status": status, "lastTransitionTime": at}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    conditions.append(condition)


set_condition = _set_condition
