"""Deployments, their pods, the kubelet and graceful termination.

- The Deployment controller (it stands in for the Deployment's ReplicaSet) keeps
  `spec.replicas` *active* pods: pods being deleted do not count, so a replacement
  is created as soon as a pod starts terminating. Scaling down deletes unscheduled
  pods first, then not-ready ones, then the newest (the ReplicaSet controller's
  ranking), each gracefully. Deleting a Deployment deletes its pods (garbage
  collection, background propagation).
- The kubelet stand-in starts a pod once it is bound to a node: phase Running,
  Ready=True after `pod_start_s` fake seconds (0 by default: at once).
- Graceful termination: DELETE (or an eviction) of a pod with a grace period > 0
  sets metadata.deletionTimestamp (now + grace period) and
  metadata.deletionGracePeriodSeconds, marks the pod not Ready, and keeps it
  (`kubectl get` shows Terminating) until the grace period has passed on the
  fake clock; then it is removed. The grace period is the request's
  gracePeriodSeconds, else the pod's terminationGracePeriodSeconds (default 30).
  gracePeriodSeconds=0 removes it at once. A second DELETE may shorten the
  period, never lengthen it. (The fake's containers never exit early on SIGTERM:
  the pod stays for the whole period, the worst case a real app can produce.)
- The node lifecycle controller keeps the taint node.kubernetes.io/unschedulable:NoSchedule
  in step with spec.unschedulable (cordon / uncordon).

Docs followed:
- https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination
  (deletionTimestamp, grace period, "Terminating", removal from endpoints, force deletion with 0)
- https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#scaling-a-replicaset
  (which pods a scale-down deletes first)
- https://kubernetes.io/docs/concepts/architecture/garbage-collection/ (owner deletion removes dependents)
- https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/#taint-nodes-by-condition
"""

from __future__ import annotations

import copy
import uuid
from typing import TYPE_CHECKING, Any, Callable

from .disruption import pod_ready, terminating
from .scheduler import UNSCHEDULABLE_TAINT, set_condition
from .selectors import labels_of, selector_matches
from .store import Key, Obj

if TYPE_CHECKING:
    from .server import FakeKubeApi

DEFAULT_GRACE_S = 30


def owned_by(pod: Obj, owner: Obj) -> bool:
    return any(ref.get("uid") == owner["metadata"]["uid"] and ref.get("controller")
               for ref in pod["metadata"].get("ownerReferences") or [])


class Workloads:
    def __init__(self, api: "FakeKubeApi") -> None:
        self.api = api
        self._pod_ip = 0

    # -- nodes
    def sync_node_taints(self) -> None:
        for key, node in list(self.api.store.items("nodes")):
            cordoned = bool((node.get("spec") or {}).get("unschedulable"))
            taints = list((node.get("spec") or {}).get("taints") or [])
            has = any(t.get("key") == UNSCHEDULABLE_TAINT["key"] for t in taints)
            if cordoned == has:
                continue
            updated = copy.deepcopy(node)
            if cordoned:
                taints.append({**UNSCHEDULABLE_TAINT, "timeAdded": self.api.now_iso()})
            else:
                taints = [t for t in taints if t.get("key") != UNSCHEDULABLE_TAINT["key"]]
            updated.setdefault("spec", {})["taints"] = taints
            if not taints:
                updated["spec"].pop("taints")
            self.api.store.update(key, updated)

    # -- deployments
    def pods_of(self, ns: str, deployment: Obj) -> list[tuple[Key, Obj]]:
        selector = deployment.get("spec", {}).get("selector")
        return [(k, p) for k, p in self.api.store.items("pods", ns)
                if selector_matches(selector, labels_of(p)) and owned_by(p, deployment)]

    def reconcile_deployments(self) -> None:
        for key, deployment in list(self.api.store.items("deployments")):
            ns = key[2] or "default"
            active = [(k, p) for k, p in self.pods_of(ns, deployment) if not terminating(p)]
            desired = int(deployment.get("spec", {}).get("replicas", 1))
            if len(active) > desired:
                ranked = sorted(enumerate(active), key=lambda item: _deletion_rank(item[0], item[1][1]))
                for _, (pod_key, _) in ranked[:len(active) - desired]:
                    self.delete_pod(pod_key, grace_s=None, reason="Killing")
            for _ in range(desired - len(active)):
                self._create_pod(ns, deployment)

    def collect_garbage(self) -> None:
        """Pods whose controlling Deployment or Job is gone are deleted (gracefully)."""
        owners = {o["metadata"]["uid"] for plural in ("deployments", "jobs") for o in self.api.store.values(plural)}
        for key, pod in list(self.api.store.items("pods")):
            refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")]
            if refs and refs[0].get("uid") not in owners and not terminating(pod):
                self.delete_pod(key, grace_s=None, reason="Killing")

    def _create_pod(self, ns: str, deployment: Obj) -> None:
        name = f"{deployment['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        template = copy.deepcopy(deployment["spec"]["template"])
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"labels": (template.get("metadata") or {}).get("labels", {}),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": f"{deployment['metadata']['name']}-fake",
                                              "uid": deployment["metadata"]["uid"], "controller": True}]},
            "spec": {**template["spec"], "volumes": template["spec"].get("volumes", [])},
            "status": {"phase": "Pending", "conditions": []},
        }
        key: Key = ("api/v1", "pods", ns, name)
        self.api.store.put(key, pod)
        self.api.record_event(ns, {"kind": "ReplicaSet", "metadata": {"name": f"{deployment['metadata']['name']}-fake"}},
                              "SuccessfulCreate", f"Created pod: {name}", component="replicaset-controller")

    def update_deployment_status(self) -> None:
        for key, deployment in list(self.api.store.items("deployments")):
            ns = key[2] or "default"
            pods = [p for _, p in self.pods_of(ns, deployment) if not terminating(p)]
            ready = sum(1 for p in pods if pod_ready(p))
            desired = int(deployment.get("spec", {}).get("replicas", 1))
            old = deployment.get("status") or {}
            available = ready >= desired
            previous = next((c for c in old.get("conditions", []) if c["type"] == "Available"), None)
            status_word = "True" if available else "False"
            status: dict[str, Any] = {
                "observedGeneration": deployment["metadata"].get("generation", 1), "replicas": len(pods),
                "updatedReplicas": len(pods), "readyReplicas": ready, "availableReplicas": ready,
                "unavailableReplicas": max(0, desired - ready),
                "conditions": [{"type": "Available", "status": status_word,
                                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                                "message": ("Deployment has minimum availability." if available
                                            else "Deployment does not have minimum availability."),
                                "lastTransitionTime": (previous["lastTransitionTime"]
                                                       if previous and previous["status"] == status_word
                                                       else self.api.now_iso())}],
            }
            if not status["unavailableReplicas"]:
                del status["unavailableReplicas"]
            if status != old:
                updated = copy.deepcopy(deployment)
                updated["status"] = status
                self.api.store.update(key, updated)

    # -- the kubelet
    def start_bound_pods(self) -> None:
        for key, pod in list(self.api.store.items("pods")):
            if terminating(pod) or not pod.get("spec", {}).get("nodeName"):
                continue
            if pod.get("status", {}).get("phase") != "Pending":
                continue
            if self.api.process_kubelet is not None and self.api.process_kubelet.owns(pod):
                continue  # its containers run as real processes (process_kubelet.py)
            updated = copy.deepcopy(pod)
            self._pod_ip += 1
            # loopback addresses: a pod IP from this fake must never be a real network destination
            updated["status"]["phase"] = "Running"
            updated["status"]["podIP"] = f"127.0.{self._pod_ip // 250 + 1}.{self._pod_ip % 250 + 1}"
            updated["status"]["startTime"] = self.api.now_iso()
            set_condition(updated, "Ready", "False", "ContainersNotReady", None, self.api.now_iso())
            self.api.store.update(key, updated)
            self.api.record_event(key[2] or "default", updated, "Started", "Started container api", component="kubelet")
            if self.api.pod_start_s > 0:
                self.api.clock.call_later(self.api.pod_start_s, self._ready_later(key, pod["metadata"]["uid"]))
            else:
                self._mark_ready(key, pod["metadata"]["uid"])

    def _ready_later(self, key: Key, uid: str) -> Callable[[], None]:
        return lambda: self.api.in_controller(lambda: self._mark_ready(key, uid))

    def _mark_ready(self, key: Key, uid: str) -> None:
        pod = self.api.store.get(key)
        if pod is None or pod["metadata"]["uid"] != uid or terminating(pod):
            return
        updated = copy.deepcopy(pod)
        set_condition(updated, "Ready", "True", None, None, self.api.now_iso())
        set_condition(updated, "ContainersReady", "True", None, None, self.api.now_iso())
        self.api.store.update(key, updated)

    # -- deletion
    def delete_pod(self, key: Key, grace_s: int | None, reason: str = "Killing") -> Obj:
        """Graceful pod deletion; returns the pod as the DELETE answer shows it."""
        pod = self.api.store.require(key)
        self.api.terminations.setdefault(pod["metadata"]["uid"], self.api.clock.now())
        if grace_s is None:
            grace_s = int(pod.get("spec", {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE_S))
        unstarted = not pod.get("spec", {}).get("nodeName")
        if grace_s <= 0 or unstarted or not self.api.graceful_termination:
            # nothing runs yet (an unbound pod is deleted at once), or a force delete
            removed = self.api.store.remove(key)
            if not terminating(pod) and not unstarted:
                self.api.record_event(key[2] or "default", pod, reason, "Stopping container api",
                                      component="kubelet")
            return copy.deepcopy(removed)
        current = pod["metadata"].get("deletionGracePeriodSeconds")
        if current is not None and grace_s >= int(current):
            return copy.deepcopy(pod)  # already terminating: a longer period changes nothing
        updated = copy.deepcopy(pod)
        updated["metadata"]["deletionTimestamp"] = self.api.now_iso(self.api.clock.wall_after(grace_s))
        updated["metadata"]["deletionGracePeriodSeconds"] = grace_s
        set_condition(updated, "Ready", "False", "PodTerminating", None, self.api.now_iso())
        set_condition(updated, "ContainersReady", "False", "PodTerminating", None, self.api.now_iso())
        stored = self.api.store.put(key, updated)
        if current is None:
            self.api.record_event(key[2] or "default", updated, reason, "Stopping container api", component="kubelet")
        uid = pod["metadata"]["uid"]
        self.api.clock.call_later(grace_s, lambda: self.api.in_controller(lambda: self._finish(key, uid, grace_s)))
        return copy.deepcopy(stored)

    def _finish(self, key: Key, uid: str, grace_s: int) -> None:
        pod = self.api.store.get(key)
        if pod is None or pod["metadata"]["uid"] != uid:
            return
        if int(pod["metadata"].get("deletionGracePeriodSeconds", grace_s)) != grace_s:
            return  # a shorter deletion replaced this one
        self.api.store.remove(key)


def _deletion_rank(created_order: int, pod: Obj) -> tuple[int, int, int, int]:
    """Unscheduled before scheduled, Pending before Running, not ready before ready, newest first."""
    scheduled = 1 if pod.get("spec", {}).get("nodeName") else 0
    running = 1 if pod.get("status", {}).get("phase") == "Running" else 0
    ready = 1 if pod_ready(pod) else 0
    return scheduled, running, ready, -created_order
