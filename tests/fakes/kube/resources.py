"""Resource quantities and the scheduler's NodeResourcesFit filter: a pod fits a node only if its requests,
added to the requests of the pods already bound there, stay within the node's allocatable.

Quantities as the API writes them: CPU in cores or millicores ("2", "250m"), memory in bytes with
binary ("Mi", "Gi") or decimal ("M", "G") suffixes. A pod's request is the sum over its containers
(init containers and overhead are not modelled). Pods bound to a node count until they are gone,
terminating ones included (the scheduler's cache keeps them until the kubelet has stopped them), and
pods that Succeeded or Failed do not. `pods` in allocatable caps the number of pods (on EKS the
ENI-based max-pods of the instance type).

The default node is an m5.2xlarge's allocatable on EKS (8 vCPU, 32 GiB: 7910m CPU, about 29 GiB, 58 pods).

Docs followed:
- https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/#how-pods-with-resource-requests-are-scheduled
  ("the scheduler ensures that, for each resource type, the sum of the resource requests of the scheduled
  containers is less than the capacity of the node")
- https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
- https://kubernetes.io/docs/tasks/administer-cluster/reserve-compute-resources/#node-allocatable
"""

from __future__ import annotations

from .store import Obj

DEFAULT_ALLOCATABLE = {"cpu": "7910m", "memory": "29800Mi", "pods": "58"}
_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}
_DECIMAL = {"k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "m": 10 ** -3}


def quantity(value: object) -> float:
    """'250m' -> 0.25, '512Mi' -> 536870912, '2' -> 2.0."""
    text = str(value)
    for suffix, factor in (*_BINARY.items(), *_DECIMAL.items()):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def pod_requests(pod: Obj) -> dict[str, float]:
    total: dict[str, float] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        for name, value in ((container.get("resources") or {}).get("requests") or {}).items():
            total[name] = total.get(name, 0.0) + quantity(value)
    return total


def allocatable(node: Obj) -> dict[str, float]:
    given = (node.get("status") or {}).get("allocatable") or DEFAULT_ALLOCATABLE
    return {name: quantity(value) for name, value in given.items()}


def insufficient(pod: Obj, node: Obj, bound: list[Obj]) -> list[str]:
    """The scheduler's reasons ("Insufficient cpu", "Too many pods") this node cannot take `pod`; [] if it fits."""
    room = allocatable(node)
    running = [p for p in bound if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    reasons = []
    if "pods" in room and len(running) + 1 > room["pods"]:
        reasons.append("Too many pods")
    used: dict[str, float] = {}
    for other in running:
        for name, value in pod_requests(other).items():
            used[name] = used.get(name, 0.0) + value
    for name, value in sorted(pod_requests(pod).items()):
        if name in room and used.get(name, 0.0) + value > room[name] + 1e-9:
            reasons.append(f"Insufficient {name}")
    return reasons
