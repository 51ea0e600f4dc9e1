"""An Application Load Balancer in front of the fake cluster's API pods, with the lag a real one has.

The AWS Load Balancer Controller registers pod IPs (target-type ip) in a target group and
deregisters a pod once it leaves the Service's endpoints (terminating, or not Ready). What users
see during a pod's removal, in order:

1. **Deregistration lag** (`deregistration_lag_s`, default 10 s): the controller has to notice the
   endpoint change, call DeregisterTargets, and the ALB nodes have to apply it; until then new
   requests still go to the pod. "Requests still send to the terminating pod which is in the status
   of deregistering" (kubernetes-sigs/aws-load-balancer-controller issue 3270); hence the EKS best
   practices' advice of a preStop sleep (aws.github.io/aws-eks-best-practices, "Load Balancing").
   A pod that stopped accepting connections meanwhile (it got SIGTERM, or it is gone) answers
   **502**. A pod whose spec has a preStop sleep (`lifecycle.preStop.sleep.seconds`, or an exec of
   `sleep N`) keeps serving for those N seconds of its termination, so it answers.
2. **Health checks** end it sooner for a pod that stopped answering: unhealthy after
   `unhealthy_threshold` (2) checks `health_interval_s` (15 s) apart, the controller's defaults
   (alb.ingress.kubernetes.io/healthcheck-interval-seconds '15', unhealthy-threshold-count '2':
   kubernetes-sigs.github.io/aws-load-balancer-controller, guide/ingress/annotations).
3. **Draining** for `deregistration_delay_s` (deregistration_delay.timeout_seconds, default 300 s:
   "Elastic Load Balancing stops sending requests to targets that are deregistering. By default,
   Elastic Load Balancing waits 300 seconds before completing the deregistration process",
   docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html):
   no new requests, the target still listed; then gone.

If every registered target is unhealthy the ALB fails open and routes to all of them (same
page, "Health checks"); with no target at all it answers 503. A pod joins as healthy when it
turns Ready: the controller's pod readiness gate (elbv2.k8s.aws/pod-readiness-gate-inject, set
by the platform's namespace) holds Ready until the target is healthy, so Ready implies healthy.

Times are the fake cluster's seconds (tests/fakes/clock.py: compressed, order kept). The state
is brought up to date on every `pick()` (each request) and `sync()`, not by a timer.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .disruption import pod_ready, terminating
from .selectors import labels_of, matches_labels
from .store import Obj

if TYPE_CHECKING:
    from .server import FakeKubeApi

HEALTHY, DEREGISTERING, UNHEALTHY, DRAINING = "healthy", "deregistering", "unhealthy", "draining"


@dataclass
class Target:
    uid: str
    prestop_s: float = 0.0  # the pod's preStop sleep
    state: str = HEALTHY
    left_at: float | None = None  # when the pod left the endpoints (termination began, or unready)
    dead_at: float | None = None  # when it stopped accepting connections
    draining_at: float | None = None


def prestop_sleep_s(pod: Obj) -> float:
    """How long the pod's preStop hook keeps it serving after termination begins (0: none)."""
    containers = (pod.get("spec") or {}).get("containers") or []
    longest = 0.0
    for container in containers:
        hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
        if "sleep" in hook:
            longest = max(longest, float((hook["sleep"] or {}).get("seconds", 0)))
        command = " ".join(str(part) for part in ((hook.get("exec") or {}).get("command") or []))
        found = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)", command)
        if found:
            longest = max(longest, float(found.group(1)))
    return longest


class FakeAlb:
    """The ALB's target group for the pods matching `selector` in `namespace` (see the module docstring)."""

    def __init__(self, kube: "FakeKubeApi", namespace: str, selector: str, *, deregistration_lag_s: float = 10.0,
                 health_interval_s: float = 15.0, unhealthy_threshold: int = 2,
                 deregistration_delay_s: float = 300.0) -> None:
        self.kube, self.namespace, self.selector = kube, namespace, selector
        self.deregistration_lag_s = deregistration_lag_s
        self.health_interval_s = health_interval_s
        self.unhealthy_threshold = unhealthy_threshold
        self.deregistration_delay_s = deregistration_delay_s
        self.targets: dict[str, Target] = {}  # by pod name
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def states(self) -> dict[str, str]:
        with self._lock:
            return {name: t.state for name, t in sorted(self.targets.items())}

    def sync(self) -> None:
        with self._lock:
            self._sync()

    def pick(self) -> tuple[int, str | None]:
        """Where the next request goes: (200, pod) if it serves it, (502, pod) if the pod no longer accepts
        connections, (503, None) if the target group is empty."""
        with self._lock:
            pods = self._sync()
            routable = [n for n, t in sorted(self.targets.items()) if t.state in (HEALTHY, DEREGISTERING)]
            if not routable:  # all unhealthy: fail open
                routable = [n for n, t in sorted(self.targets.items()) if t.state == UNHEALTHY]
            if not routable:
                return 503, None
            name = routable[next(self._turn) % len(routable)]
            return (200 if self._accepts(pods.get(name), self.kube.clock.now()) else 502), name

    # -- the controller and the health checks
    def _pods(self) -> dict[str, Obj]:
        return {p["metadata"]["name"]: p for p in self.kube.objects("pods", self.namespace)
                if matches_labels(self.selector, labels_of(p))}

    def _accepts(self, pod: Obj | None, now: float) -> bool:
        """The pod takes new connections: running and not terminating, or within its preStop sleep."""
        if pod is None or (pod.get("status") or {}).get("phase") != "Running":
            return False
        if not terminating(pod):
            return True
        began = self.kube.terminations.get(pod["metadata"]["uid"], now)
        return now < began + prestop_sleep_s(pod)

    def _sync(self) -> dict[str, Obj]:
        now = self.kube.clock.now()
        pods = self._pods()
        for name, pod in pods.items():
            current = self.targets.get(name)
            endpoint = pod_ready(pod) and not terminating(pod)
            if endpoint and (current is None or current.uid != pod["metadata"]["uid"]):
                self.targets[name] = Target(pod["metadata"]["uid"], prestop_sleep_s(pod))
        for name, target in list(self.targets.items()):
            pod = pods.get(name)
            if pod is not None and pod["metadata"]["uid"] != target.uid:
                pod = None  # a new pod of that name: the old target's pod is gone
            self._advance(name, target, pod, now)
        return pods

    def _advance(self, name: str, target: Target, pod: Obj | None, now: float) -> None:
        in_endpoints = pod is not None and pod_ready(pod) and not terminating(pod)
        if target.state in (HEALTHY, UNHEALTHY) and not in_endpoints:
            target.state = DEREGISTERING
            target.left_at = self.kube.terminations.get(target.uid, now)
        if target.dead_at is None and not self._accepts(pod, now):
            began = self.kube.terminations.get(target.uid)  # it stopped accepting when its preStop sleep ended
            target.dead_at = now if began is None else min(now, began + target.prestop_s)
        failed_checks = target.dead_at is not None and \
            now >= target.dead_at + self.unhealthy_threshold * self.health_interval_s
        if target.state == HEALTHY and failed_checks:
            target.state = UNHEALTHY
        if target.state == DEREGISTERING and (now >= (target.left_at or now) + self.deregistration_lag_s
                                              or failed_checks):
            target.state, target.draining_at = DRAINING, now
        if target.state == DRAINING and now >= (target.draining_at or now) + self.deregistration_delay_s:
            del self.targets[name]

    def __repr__(self) -> str:  # pragma: no cover - for test failure messages
        return f"FakeAlb({self.states()})"

