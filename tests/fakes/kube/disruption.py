"""PodDisruptionBudgets: the disruption controller's status and the Eviction API's check.

The disruption controller computes, for each PDB, over the pods its selector
matches in its namespace:
- expectedPods: with an integer minAvailable, the number of matching pods;
  otherwise (maxUnavailable, or a percentage) the scale of their controllers
  (the Deployment's spec.replicas);
- desiredHealthy: minAvailable (a percentage rounded up of expectedPods), or
  expectedPods - maxUnavailable (a percentage rounded up), never below 0;
- currentHealthy: matching pods that are Ready and not being deleted;
- disruptionsAllowed: max(0, currentHealthy - desiredHealthy).

The Eviction API (POST .../pods/NAME/eviction) does not count pods: it reads the
PDB's status as the disruption controller last wrote it (pkg/registry/core/pod/
storage/eviction.go, checkAndDecrement). A status older than the PDB's spec
(observedGeneration < generation) or none yet: 429 ("still being processed").
disruptionsAllowed 0: 429 Too Many Requests, with the body the API server sends
("Cannot evict pod as it would violate the pod's disruption budget.", cause
DisruptionBudget). Otherwise it decrements status.disruptionsAllowed, records the
pod in status.disruptedPods (so two evictions cannot spend one disruption), and
deletes the pod gracefully (terminationGracePeriodSeconds applies): 201 with a
Success Status. The controller counts a pod in disruptedPods as not healthy until
it is gone or 2 minutes have passed (its DeletionTimeout). 500 when more than one
PDB selects the pod. Pods that are not Running (Pending, Succeeded, Failed) or
already terminating are evicted without a PDB check; an unready Running pod is
evicted while the budget is healthy (currentHealthy >= desiredHealthy > 0 in the
status, the default unhealthyPodEvictionPolicy IfHealthyBudget) or always
(AlwaysAllow), otherwise only if a disruption is allowed.

Docs followed:
- https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/
  (200/201 allowed, 429 Too Many Requests under a PDB, 500 for more than one PDB)
- https://kubernetes.io/docs/tasks/run-application/configure-pdb/
  (minAvailable/maxUnavailable, integers and percentages rounded up, expectedPods from the controller's scale,
  unhealthyPodEvictionPolicy)
- https://kubernetes.io/docs/concepts/workloads/pods/disruptions/
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .selectors import labels_of, selector_matches
from .store import ApiError, Key, Obj

if TYPE_CHECKING:
    from .server import FakeKubeApi

EVICTION_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."
DISRUPTED_POD_TIMEOUT_S = 120.0  # the disruption controller's DeletionTimeout for status.disruptedPods


def pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _scaled(value: Any, total: int) -> int:
    """An IntOrString: an int, or 'NN%' of total rounded up (as the disruption controller rounds)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


class DisruptionController:
    def __init__(self, api: "FakeKubeApi") -> None:
        self.api = api
        self._evicted_at: dict[tuple[Any, str], float] = {}  # (PDB uid, pod) -> fake time of its eviction

    def _pods(self, pdb: Obj, ns: str) -> list[Obj]:
        selector = pdb.get("spec", {}).get("selector")
        return [p for p in self.api.store.values("pods", ns) if selector_matches(selector, labels_of(p))]

    def _expected_scale(self, pods: list[Obj], ns: str) -> int:
        """Sum of the scale of the controllers owning the pods (our Deployments stand in for their ReplicaSets)."""
        owners = {ref.get("uid") for p in pods for ref in p["metadata"].get("ownerReferences") or []
                  if ref.get("controller")}
        total = 0
        for deployment in self.api.store.values("deployments", ns):
            if deployment["metadata"]["uid"] in owners:
                total += int(deployment.get("spec", {}).get("replicas", 1))
        return total

    def compute(self, pdb: Obj, ns: str) -> Obj:
        spec = pdb.get("spec", {})
        pods = self._pods(pdb, ns)
        if spec.get("maxUnavailable") is not None:
            expected = self._expected_scale(pods, ns)
            desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
        elif isinstance(spec.get("minAvailable"), str):
            expected = self._expected_scale(pods, ns)
            desired = _scaled(spec["minAvailable"], expected)
        else:
            expected = len(pods)
            desired = int(spec.get("minAvailable", 1))
        disrupted = self._still_disrupted(pdb, pods)
        healthy = sum(1 for p in pods if pod_ready(p) and not terminating(p) and p["metadata"]["name"] not in disrupted)
        allowed = healthy - desired if expected > 0 else 0
        return {"observedGeneration": pdb["metadata"].get("generation", 1), "expectedPods": expected,
                "desiredHealthy": desired, "currentHealthy": healthy,
                "disruptionsAllowed": max(0, allowed), "disruptedPods": disrupted}

    def _still_disrupted(self, pdb: Obj, pods: list[Obj]) -> dict[str, str]:
        """status.disruptedPods entries whose pod still runs, not being deleted, within the timeout."""
        live = {p["metadata"]["name"] for p in pods if not terminating(p)}
        now = self.api.clock.now()
        return {name: at for name, at in ((pdb.get("status") or {}).get("disruptedPods") or {}).items()
                if name in live and now - self._evicted_at.get((pdb["metadata"].get("uid"), name), now)
                < DISRUPTED_POD_TIMEOUT_S}

    def sync(self) -> None:
        """Write every PDB's status (only when it changed)."""
        import copy
        for key, pdb in list(self.api.store.items("poddisruptionbudgets")):
            status = self.compute(pdb, key[2] or "")
            conditions = [{"type": "DisruptionAllowed", "status": "True" if status["disruptionsAllowed"] else "False",
                           "reason": "SufficientPods" if status["disruptionsAllowed"] else "InsufficientPods",
                           "message": "", "observedGeneration": status["observedGeneration"]}]
            old = pdb.get("status") or {}
            if {k: v for k, v in old.items() if k != "conditions"} == status and \
                    [dict(c, lastTransitionTime=None) for c in old.get("conditions", [])] == \
                    [dict(c, lastTransitionTime=None) for c in conditions]:
                continue
            for condition in conditions:
                previous = next((c for c in old.get("conditions", []) if c["type"] == condition["type"]), None)
                condition["lastTransitionTime"] = (previous["lastTransitionTime"]
                                                   if previous and previous["status"] == condition["status"]
                                                   else self.api.now_iso())
            updated = copy.deepcopy(pdb)
            updated["status"] = {**status, "conditions": conditions}
            self.api.store.update(key, updated)

    def check_eviction(self, pod_key: Key, pod: Obj) -> None:
        """Raise the API server's answer when this eviction must be refused; return if it may proceed."""
        ns = pod_key[2] or ""
        if not self.api.enforce_pdbs:
            return
        phase = (pod.get("status") or {}).get("phase")
        if terminating(pod) or phase in ("Succeeded", "Failed", "Pending"):
            return  # nothing left to protect: no budget is consulted
        pdbs = [(k, p) for k, p in self.api.store.items("poddisruptionbudgets", ns)
                if selector_matches(p.get("spec", {}).get("selector"), labels_of(pod))]
        if not pdbs:
            return
        if len(pdbs) > 1:
            why = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
            raise ApiError(500, "InternalError", f"Internal error occurred: {why}", {"causes": [{"message": why}]})
        pdb_key, pdb = pdbs[0]
        status = pdb.get("status") or {}  # what the disruption controller last wrote, not a live count
        if not status or status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
            raise ApiError(429, "TooManyRequests", EVICTION_REFUSED, {"causes": [{
                "reason": "DisruptionBudget",
                "message": f"The disruption budget {pdb['metadata']['name']} is still being processed by the server."}]})
        if not pod_ready(pod):  # an unready pod: the budget's unhealthyPodEvictionPolicy decides first
            policy = pdb.get("spec", {}).get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
            if policy == "AlwaysAllow":
                return
            if status.get("currentHealthy", 0) >= status.get("desiredHealthy", 0) > 0:
                return
        if status.get("disruptionsAllowed", 0) > 0:
            self._spend(pdb_key, pdb, pod_key[3])
            return
        raise ApiError(429, "TooManyRequests", EVICTION_REFUSED, {"causes": [{
            "reason": "DisruptionBudget",
            "message": f"The disruption budget {pdb['metadata']['name']} needs {status.get('desiredHealthy', 0)} "
                       f"healthy pods and has {status.get('currentHealthy', 0)} currently"}]})

    def _spend(self, pdb_key: Key, pdb: Obj, pod_name: str) -> None:
        """As the eviction subresource does: one disruption fewer, the pod in disruptedPods (written with the PDB)."""
        import copy
        updated = copy.deepcopy(pdb)
        status = updated["status"]
        status["disruptionsAllowed"] -= 1
        status.setdefault("disruptedPods", {})[pod_name] = self.api.now_iso()
        if status["disruptionsAllowed"] == 0:
            for condition in status.get("conditions") or []:
                if condition["type"] == "DisruptionAllowed":
                    condition.update(status="False", reason="InsufficientPods", lastTransitionTime=self.api.now_iso())
        self._evicted_at[(pdb["metadata"].get("uid"), pod_name)] = self.api.clock.now()
        self.api.store.update(pdb_key, updated)
