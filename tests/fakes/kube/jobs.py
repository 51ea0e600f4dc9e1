"""Jobs: the Job controller (one pod at a time, no retries beyond backoffLimit) and what deleting one does.

- A Job that has not finished and has no active pod gets one, created from its
  template, labelled `batch.kubernetes.io/job-name` and `job-name`, owned by the
  Job (controller: true). A pod that Succeeded completes the Job (condition
  Complete); a pod that Failed, or is being deleted (deletionTimestamp) or gone
  before it finished, counts as a failure, and once failures exceed `backoffLimit` (default 6) the Job is
  Failed with reason BackoffLimitExceeded and gets no more pods.
- Deleting a Job through the API with no `propagationPolicy` **orphans** its
  pods (the batch/v1 default, kept for compatibility: `kubectl delete` cascades,
  a plain API DELETE does not); `Background` or `Foreground` deletes them too.
  Orphaning removes the Job from the pods' ownerReferences, as the garbage
  collector does.

Not modelled: parallelism/completions above 1, activeDeadlineSeconds,
ttlSecondsAfterFinished, podFailurePolicy, suspend.

Docs followed:
- https://kubernetes.io/docs/concepts/workloads/controllers/job/ ("Pod backoff failure policy",
  "Job termination and cleanup": "When you delete the job using kubectl, all the pods it created are
  deleted too")
- https://kubernetes.io/docs/concepts/architecture/garbage-collection/#cascading-deletion
  (orphan, background, foreground) and github.com/kubernetes/kubernetes/issues/20902 (API DELETE of a
  Job leaves its pods unless propagationPolicy says otherwise)
"""

from __future__ import annotations

import copy
import uuid
from typing import TYPE_CHECKING

from .disruption import terminating
from .store import Key, Obj

if TYPE_CHECKING:
    from .server import FakeKubeApi

DEFAULT_BACKOFF_LIMIT = 6
CASCADING = ("Background", "Foreground")
# The default propagation of a DELETE without propagationPolicy, by plural (batch/v1 Jobs orphan).
DEFAULT_PROPAGATION = {"jobs": "Orphan"}


def controller_uid(pod: Obj) -> str | None:
    refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")]
    return refs[0].get("uid") if refs else None


class JobController:
    def __init__(self, api: "FakeKubeApi") -> None:
        self.api = api
        self._seen: dict[str, set[str]] = {}  # job uid -> uids of its pods already counted as finished
        self._active: dict[str, set[str]] = {}  # job uid -> uids of its pods active at the last sync

    def pods_of(self, job: Obj) -> list[tuple[Key, Obj]]:
        uid = job["metadata"]["uid"]
        return [(k, p) for k, p in self.api.store.items("pods") if controller_uid(p) == uid]

    def sync(self) -> None:
        for key, job in list(self.api.store.items("jobs")):
            status = copy.deepcopy(job.get("status") or {})
            if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                   for c in status.get("conditions") or []):
                continue
            pods = self.pods_of(job)
            job_uid = job["metadata"]["uid"]
            seen = self._seen.setdefault(job_uid, set())
            succeeded, failed = int(status.get("succeeded", 0)), int(status.get("failed", 0))
            for _, pod in pods:
                phase = (pod.get("status") or {}).get("phase")
                uid = pod["metadata"]["uid"]
                # a pod being deleted before it succeeded counts as failed at once (the Job controller's
                # pre-podReplacementPolicy rule): with backoffLimit 0 it is not replaced
                finished = "Failed" if terminating(pod) and phase != "Succeeded" else phase
                if finished in ("Succeeded", "Failed") and uid not in seen:
                    seen.add(uid)
                    succeeded += finished == "Succeeded"
                    failed += finished == "Failed"
            gone = self._active.get(job_uid, set()) - {p["metadata"]["uid"] for _, p in pods} - seen
            failed += len(gone)  # deleted before it finished: a failure (backoffLimit counts it)
            seen |= gone
            active = [p for _, p in pods if not terminating(p)
                      and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            limit = int(job["spec"].get("backoffLimit", DEFAULT_BACKOFF_LIMIT))
            conditions = []
            if succeeded:
                conditions = [{"type": "Complete", "status": "True", "lastTransitionTime": self.api.now_iso()}]
            elif failed > limit:
                conditions = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                               "message": "Job has reached the specified backoff limit",
                               "lastTransitionTime": self.api.now_iso()}]
            elif not active:
                active = [self._create_pod(key, job)]
            new_status: Obj = {"active": len(active), "succeeded": succeeded, "failed": failed,
                               "startTime": status.get("startTime") or self.api.now_iso()}
            self._active[job_uid] = {p["metadata"]["uid"] for p in active}
            if conditions:
                new_status["conditions"] = conditions
                new_status["active"] = 0
            if new_status != status:
                updated = copy.deepcopy(job)
                updated["status"] = new_status
                self.api.store.update(key, updated)

    def _create_pod(self, key: Key, job: Obj) -> Obj:
        name = job["metadata"]["name"]
        template = copy.deepcopy(job["spec"]["template"])
        labels = {**((template.get("metadata") or {}).get("labels") or {}),
                  "batch.kubernetes.io/job-name": name, "job-name": name,
                  "batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"labels": labels, "ownerReferences": [{
                   "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"],
                   "controller": True, "blockOwnerDeletion": True}]},
               "spec": template["spec"], "status": {"phase": "Pending", "conditions": []}}
        pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
        stored = self.api.store.put(("api/v1", "pods", key[2], pod_name), pod)
        self.api.record_event(key[2] or "default", job, "SuccessfulCreate", f"Created pod: {pod_name}",
                              component="job-controller")
        return stored


def orphan_dependents(api: "FakeKubeApi", owner_key: Key, policy: str | None) -> None:
    """Before an owner is removed: with the Orphan policy (or the plural's default) its pods lose the reference;
    otherwise they keep it and the garbage collector deletes them once the owner is gone."""
    if (policy or DEFAULT_PROPAGATION.get(owner_key[1], "Background")) in CASCADING:
        return
    owner = api.store.require(owner_key)
    uid = owner["metadata"]["uid"]
    for key, pod in list(api.store.items("pods", owner_key[2])):
        refs = pod["metadata"].get("ownerReferences") or []
        if any(r.get("uid") == uid for r in refs):
            updated = copy.deepcopy(pod)
            updated["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
            api.store.update(key, updated)
