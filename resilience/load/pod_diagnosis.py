"""Why a load pod is not running, in words an operator can act on: pure functions over pod objects.

`ClusterLoad.start()` waits for its pods; while it waits it reads them with
`diagnose()`. Some states will not get better by waiting and end the wait at
once (`fatal`): an image the node cannot pull (the kubelet reports the
container waiting with reason ErrImagePull, then ImagePullBackOff), a
container that keeps crashing (CrashLoopBackOff), a container the kubelet
cannot even create (CreateContainerConfigError), a pod that Failed. Others may
(`waiting`): a pod the scheduler cannot place (PodScheduled=False, reason
Unschedulable) may be placed once a cluster autoscaler adds a node, so it is
reported only when the deadline passes.

Docs: kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/ (phases,
container states, the PodScheduled condition) and
kubernetes.io/docs/concepts/containers/images/#imagepullbackoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
BROKEN_REASONS = ("CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError")


@dataclass
class Diagnosis:
    """What the load's pods say: a reason to give up now, reasons they are still waiting, and who runs."""

    fatal: str | None = None
    waiting: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)  # names of pods in phase Running
    exit_code: int | None = None  # of the container of the pod that failed (fatal)


def _field(obj: Any, name: str) -> Any:
    """A field of a typed client model or of a plain dict (the fake and the client look the same then)."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        camel = name.split("_")[0] + "".join(p.title() for p in name.split("_")[1:])
        return obj.get(camel, obj.get(name))
    return getattr(obj, name, None)


def diagnose(pods: list[Any], image: str) -> Diagnosis:
    """Read each pod's phase, PodScheduled condition and container states."""
    result = Diagnosis()
    for pod in pods:
        name = _field(_field(pod, "metadata"), "name") or "?"
        status = _field(pod, "status")
        phase = _field(status, "phase")
        if phase == "Running":
            result.running.append(name)
        for condition in _field(status, "conditions") or []:
            if (_field(condition, "type") == "PodScheduled" and _field(condition, "status") == "False"
                    and _field(condition, "reason") == "Unschedulable"):
                result.waiting.append(
                    f"pod {name} cannot be scheduled: {_field(condition, 'message') or 'no reason given'} "
                    f"Make room for it (uncordon nodes, add nodes, or lower other pods' requests).")
        for container in _field(status, "container_statuses") or []:
            waiting = _field(_field(container, "state"), "waiting")
            reason = _field(waiting, "reason")
            message = _field(waiting, "message") or ""
            if reason in IMAGE_REASONS and result.fatal is None:
                result.fatal = (f"pod {name} cannot pull its image {image!r} ({reason}: {message}). Build it from "
                                f"this repository's Dockerfile, push it where the cluster's nodes can pull it, and "
                                f"set kubernetes.load_image (or kubernetes.image) to it.")
            elif reason in BROKEN_REASONS and result.fatal is None:
                result.fatal = f"pod {name} does not run: {reason}: {message}".rstrip(": ")
        if phase == "Failed" and result.fatal is None:
            codes = [_field(_field(_field(c, "state"), "terminated"), "exit_code")
                     for c in _field(status, "container_statuses") or []]
            result.exit_code = next((int(c) for c in codes if c is not None), None)
            why = _field(status, "reason") or (f"its container exited with code {result.exit_code}"
                                               if result.exit_code is not None else "its container exited")
            message = _field(status, "message")
            result.fatal = f"pod {name} failed ({why}{': ' + message if message else ''})"
    return result
