"""The HorizontalPodAutoscaler controller (autoscaling/v2), acting on metrics a test sets.

A real cluster gets pod metrics from metrics-server (which EKS does not install:
without it the HPA reports FailedGetResourceMetric and never scales). Here a test
plays the kubelets: `FakeKubeApi.set_metric("school-meals-api", cpu_utilization=95)`
makes every running pod of that Deployment report 95 % of its CPU request. A
resource the test never set has no metrics, exactly as without metrics-server.
metrics-server scrapes the kubelets every `metric-resolution` (15 s: "Fast
autoscaling, collecting metrics every 15 seconds", kubernetes-sigs/metrics-server
README; "--metric-resolution duration ... Default 15s"): a value set now reaches
the HPA only at the next scrape, every `metrics_resolution_s` fake seconds from
the fake's start (`scrape_metrics()` scrapes at once). A scrape and an HPA sync
due at the same moment run scrape first.

Every `hpa_sync_period_s` fake seconds (15, the controller's default) and once
when an HPA is created, the controller
1. reads the target's scale (currentReplicas = the Deployment's status.replicas);
2. outside [minReplicas, maxReplicas] it moves straight to the nearest bound;
3. otherwise computes, per metric, desired = ceil(readyPods * current / target),
   keeping the current count when |current/target - 1| <= tolerance (0.1), and
   counting not-yet-ready pods as 0 % when scaling up (they may not fight a
   scale-down); takes the largest proposal. If every metric is missing, or some
   are and the rest would scale down, it does not scale (ScalingActive=False,
   FailedGetResourceMetric, a FailedComputeMetricsReplicas event);
4. stabilizes: scale up to at most the lowest recommendation of the last
   scaleUp.stabilizationWindowSeconds (default 0), scale down to at most the
   highest recommendation of the last scaleDown.stabilizationWindowSeconds
   (default 300);
5. limits the rate with the policies (Pods: +/- value, Percent: value % of the
   replicas at the start of the period; over each policy's periodSeconds,
   counting the changes this controller made in that period) combined by
   selectPolicy (Max by default, Min, Disabled); defaults: scale up
   max(4 pods, 100 %) per 15 s, scale down 100 % per 15 s; then min/maxReplicas;
6. writes the Deployment's spec.replicas (a SuccessfulRescale event) and the
   HPA's status: currentReplicas, desiredReplicas, currentMetrics, lastScaleTime,
   and the AbleToScale / ScalingActive / ScalingLimited conditions with the
   controller's reasons. A missing spec.behavior behaves as the defaults.

Docs followed:
- https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details
  (the ratio, the 0.1 tolerance, not-ready and missing pods, several metrics: the largest)
- https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#configurable-scaling-behavior
  (stabilization windows, Pods/Percent policies, periodSeconds, selectPolicy, the default behavior)
- https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#appendix-horizontal-pod-autoscaler-status-conditions
- https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/
  (--horizontal-pod-autoscaler-sync-period 15s, -downscale-stabilization 5m0s, -tolerance 0.1)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .apply import CONTROLLER_MANAGER, record_update
from .disruption import pod_ready, terminating
from .store import Key, Obj, now_iso

if TYPE_CHECKING:
    from .server import FakeKubeApi

NO_METRICS_API = ("unable to fetch metrics from resource metrics API: the server could not find the requested "
                  "resource (get pods.metrics.k8s.io)")
DEFAULT_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                 {"type": "Percent", "value": 100, "periodSeconds": 15}]}
DEFAULT_SCALE_DOWN = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max",
                      "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
DEFAULT_METRICS = [{"type": "Resource", "resource": {"name": "cpu",
                                                     "target": {"type": "Utilization", "averageUtilization": 80}}}]


def rules(behavior: Obj | None, direction: str) -> Obj:
    """The scaling rules for 'scaleUp' / 'scaleDown' with the API defaults filled in."""
    default = DEFAULT_SCALE_UP if direction == "scaleUp" else DEFAULT_SCALE_DOWN
    given = (behavior or {}).get(direction) or {}
    return {"stabilizationWindowSeconds": given.get("stabilizationWindowSeconds",
                                                    default["stabilizationWindowSeconds"]),
            "selectPolicy": given.get("selectPolicy", "Max"),
            "policies": given.get("policies") or default["policies"]}


@dataclass
class HpaMemory:
    """What the controller remembers between syncs of one HPA (lost if the controller restarted)."""
    uid: str
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up_events: list[tuple[float, int]] = field(default_factory=list)
    scale_down_events: list[tuple[float, int]] = field(default_factory=list)


class HpaController:
    def __init__(self, api: "FakeKubeApi", sync_period_s: float = 15.0, tolerance: float = 0.1,
                 metrics_resolution_s: float = 15.0) -> None:
        self.api = api
        self.sync_period_s = sync_period_s
        self.tolerance = tolerance
        self.metrics: dict[tuple[str | None, str], dict[str, float]] = {}  # what metrics-server serves
        self.reported: dict[tuple[str | None, str], dict[str, float]] = {}  # what the pods use now (next scrape)
        self.memory: dict[Key, HpaMemory] = {}
        self.metrics_resolution_s = metrics_resolution_s
        if metrics_resolution_s > 0:
            self._schedule_scrape()
        else:
            self.metrics = self.reported  # 0: no scrape delay (a kinder fake, for tests of other things)

    def _schedule_scrape(self) -> None:
        def scrape() -> None:
            self.scrape()
            self._schedule_scrape()
        self.api.clock.call_later(self.metrics_resolution_s, lambda: self.api.in_controller(scrape))

    def scrape(self) -> None:
        """metrics-server's scrape: what the pods use now becomes what the HPA reads."""
        self.metrics = {key: dict(values) for key, values in self.reported.items()}

    # -- test hooks
    def set_metric(self, deployment: str, namespace: str | None, values: dict[str, float | None]) -> None:
        current = self.reported.setdefault((namespace, deployment), {})
        for resource, value in values.items():
            if value is None:
                current.pop(resource, None)
            else:
                current[resource] = float(value)

    def _metric(self, ns: str, deployment: str, resource: str) -> float | None:
        for key in ((ns, deployment), (None, deployment)):
            if resource in self.metrics.get(key, {}):
                return self.metrics[key][resource]
        return None

    # -- scheduling syncs
    def start_new(self) -> None:
        """Sync HPAs the controller has not seen yet (a new HPA is processed at once), then periodically."""
        for key, hpa in list(self.api.store.items("horizontalpodautoscalers")):
            uid = hpa["metadata"]["uid"]
            if key in self.memory and self.memory[key].uid == uid:
                continue
            self.memory[key] = HpaMemory(uid)
            self.sync(key)
            self._schedule(key, uid)

    def _schedule(self, key: Key, uid: str) -> None:
        def tick() -> None:
            memory = self.memory.get(key)
            if memory is None or memory.uid != uid:
                return  # a newer HPA of that name has its own timer
            hpa = self.api.store.get(key)
            if hpa is None or hpa["metadata"]["uid"] != uid:
                del self.memory[key]
                return
            self.sync(key)
            self._schedule(key, uid)
        self.api.clock.call_later(self.sync_period_s, lambda: self.api.in_controller(tick))

    # -- one reconcile, as in the controller's reconcileAutoscaler
    def sync(self, key: Key) -> None:
        hpa = self.api.store.get(key)
        if hpa is None:
            return
        ns = key[2] or "default"
        now = self.api.clock.now()
        memory = self.memory.setdefault(key, HpaMemory(hpa["metadata"]["uid"]))
        spec = hpa.get("spec", {})
        ref = spec.get("scaleTargetRef", {})
        old_status = hpa.get("status") or {}
        conditions: list[Obj] = copy.deepcopy(old_status.get("conditions") or [])
        target_key: Key = ("apis/apps/v1", "deployments", ns, ref.get("name", ""))
        target = self.api.store.get(target_key) if ref.get("kind", "Deployment") == "Deployment" else None
        if target is None:
            _condition(conditions, "AbleToScale", "False", "FailedGetScale",
                       f"the HPA controller was unable to get the target's current scale: deployments/scale.apps "
                       f"\"{ref.get('name')}\" not found")
            self._write_status(key, hpa, old_status.get("currentReplicas", 0), old_status.get("desiredReplicas", 0),
                               old_status.get("currentMetrics"), conditions, rescaled=False)
            self.api.record_event(ns, hpa, "FailedGetScale", f'deployments/scale.apps "{ref.get("name")}" not found',
                                  event_type="Warning", component="horizontal-pod-autoscaler", dedupe=True)
            return
        _condition(conditions, "AbleToScale", "True", "SucceededGetScale",
                   "the HPA controller was able to get the target's current scale")
        current = int((target.get("status") or {}).get("replicas", 0))
        spec_replicas = int(target.get("spec", {}).get("replicas", 1))
        min_r, max_r = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
        statuses: list[Obj] | None = old_status.get("currentMetrics")
        rescale, reason = True, ""
        if spec_replicas == 0 and min_r != 0:
            desired, rescale = 0, False
            _condition(conditions, "ScalingActive", "False", "ScalingDisabled",
                       "scaling is disabled since the replica count of the target is zero")
        elif current > max_r:
            desired, reason = max_r, "Current number of replicas above Spec.MaxReplicas"
        elif current < min_r:
            desired, reason = min_r, "Current number of replicas below Spec.MinReplicas"
        else:
            proposal, metric_name, statuses, failure = self._replicas_for_metrics(
                ns, target, spec.get("metrics") or DEFAULT_METRICS, current, spec_replicas, conditions)
            if proposal < 0:
                self._write_status(key, hpa, current, int(old_status.get("desiredReplicas", 0)), statuses,
                                   conditions, rescaled=False)
                self.api.record_event(ns, hpa, "FailedComputeMetricsReplicas", failure, event_type="Warning",
                                      component="horizontal-pod-autoscaler", dedupe=True)
                return
            desired = proposal
            if desired > current:
                reason = f"{metric_name} above target"
            elif desired < current:
                reason = "All metrics below target"
            desired = self._normalize(memory, spec, current, desired, min_r, max_r, now, old_status, conditions)
            rescale = desired != current
        if rescale:
            scaled = copy.deepcopy(target)
            scaled["spec"]["replicas"] = desired  # through the scale subresource, as kube-controller-manager
            self.api.store.put(target_key, record_update(target, scaled, CONTROLLER_MANAGER))
            _condition(conditions, "AbleToScale", "True", "SucceededRescale",
                       f"the HPA controller was able to update the target scale to {desired}")
            self.api.record_event(ns, hpa, "SuccessfulRescale", f"New size: {desired}; reason: {reason}",
                                  component="horizontal-pod-autoscaler")
            events = memory.scale_up_events if desired > current else memory.scale_down_events
            events.append((now, abs(desired - current)))
        else:
            desired = current
        self._write_status(key, hpa, current, desired, statuses, conditions, rescaled=rescale)

    def _replicas_for_metrics(self, ns: str, target: Obj, metrics: list[Obj], current: int, spec_replicas: int,
                              conditions: list[Obj]) -> tuple[int, str, list[Obj], str]:
        from .workloads import Workloads
        pods = [p for _, p in Workloads(self.api).pods_of(ns, target)
                if not terminating(p) and p.get("status", {}).get("phase") != "Failed"]
        replicas, metric_name, invalid = 0, "", 0
        statuses: list[Obj] = []
        first_error, first_condition = "", ("", "")
        for metric in metrics:
            resource = (metric.get("resource") or {}).get("name", "")
            target_spec = (metric.get("resource") or {}).get("target") or {}
            error = ""
            if metric.get("type") != "Resource" or target_spec.get("type") != "Utilization":
                error = f"the fake HPA controller supports Resource Utilization metrics only, not {metric}"
            else:
                value = self._metric(ns, target["metadata"]["name"], resource)
                if value is None:
                    error = (f"failed to get {resource} utilization: unable to get metrics for resource {resource}: "
                             f"{NO_METRICS_API}")
                elif not pods:
                    error = f"failed to get {resource} utilization: no pods returned by selector while calculating " \
                            "replica count"
            if error:
                invalid += 1
                statuses.append({"type": ""})
                if not first_error:
                    first_error = f"failed to get {resource} resource metric value: {error}"
                    first_condition = ("FailedGetResourceMetric",
                                       f"the HPA was unable to compute the replica count: {error}")
                continue
            assert value is not None
            proposal, utilization = self._resource_replicas(pods, resource, value,
                                                            float(target_spec["averageUtilization"]), current)
            statuses.append({"type": "Resource", "resource": {"name": resource,
                                                              "current": {"averageUtilization": utilization}}})
            if proposal > replicas:
                replicas, metric_name = proposal, f"{resource} resource utilization (percentage of request)"
        if invalid >= len(metrics) or (invalid > 0 and replicas < spec_replicas):
            _condition(conditions, "ScalingActive", "False", *first_condition)
            return -1, "", statuses, f"invalid metrics ({invalid} invalid out of {len(metrics)}), first error is: " \
                                     f"{first_error}"
        _condition(conditions, "ScalingActive", "True", "ValidMetricFound",
                   f"the HPA was able to successfully calculate a replica count from {metric_name}")
        return replicas, metric_name, statuses, ""

    def _resource_replicas(self, pods: list[Obj], resource: str, value: float, target: float,
                           current: int) -> tuple[int, int]:
        """GetResourceReplicas: every running pod reports `value` % of its request."""
        ready = unready = 0
        for pod in pods:
            phase = pod.get("status", {}).get("phase")
            if phase == "Pending" or (resource == "cpu" and not pod_ready(pod)):
                unready += 1  # not counted: CPU of a starting pod says nothing about load
            else:
                ready += 1
        utilization = int(value)
        if ready == 0:
            return current, utilization
        usage_ratio = value / target
        scale_up_with_unready = unready > 0 and usage_ratio > 1.0
        if not scale_up_with_unready:
            if abs(1.0 - usage_ratio) <= self.tolerance:
                return current, utilization
            return math.ceil(usage_ratio * ready), utilization
        # unready pods count as 0 % so they cannot push a scale-up further than the ready ones justify
        new_ratio = value * ready / (target * (ready + unready))
        if abs(1.0 - new_ratio) <= self.tolerance or new_ratio < 1.0:
            return current, utilization
        new_replicas = math.ceil(new_ratio * (ready + unready))
        return (current if new_replicas < current else new_replicas), utilization

    def _normalize(self, memory: HpaMemory, spec: Obj, current: int, desired: int, min_r: int, max_r: int,
                   now: float, old_status: Obj, conditions: list[Obj]) -> int:
        """normalizeDesiredReplicasWithBehaviors: stabilization window, then the rate policies and bounds."""
        up, down = rules(spec.get("behavior"), "scaleUp"), rules(spec.get("behavior"), "scaleDown")
        up_window, down_window = float(up["stabilizationWindowSeconds"]), float(down["stabilizationWindowSeconds"])
        up_rec = down_rec = desired
        for at, recommendation in memory.recommendations:
            if at > now - up_window:
                up_rec = min(up_rec, recommendation)
            if at > now - down_window:
                down_rec = max(down_rec, recommendation)
        stabilized = max(current, up_rec)
        stabilized = min(stabilized, down_rec)
        horizon = max(up_window, down_window)
        memory.recommendations = [r for r in memory.recommendations if r[0] > now - horizon]
        memory.recommendations.append((now, desired))
        if stabilized != desired:
            if desired >= current:
                _condition(conditions, "AbleToScale", "True", "ScaleUpStabilized",
                           "recent recommendations were lower than current one, applying the lowest recent "
                           "recommendation")
            else:
                _condition(conditions, "AbleToScale", "True", "ScaleDownStabilized",
                           "recent recommendations were higher than current one, applying the highest recent "
                           "recommendation")
        else:
            _condition(conditions, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
        result, reason, message = stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"
        if stabilized > current:
            limit = max(current, self._limit(up, memory, current, now, "up"))
            if max_r > limit:
                bound, why, text = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the " \
                                                          "maximum scale rate"
            else:
                bound, why, text = max_r, "TooManyReplicas", "the desired replica count is more than the maximum " \
                                                             "replica count"
            if stabilized > bound:
                result, reason, message = bound, why, text
        elif stabilized < current:
            limit = min(current, self._limit(down, memory, current, now, "down"))
            if min_r < limit:
                bound, why, text = limit, "ScaleDownLimit", "the desired replica count is decreasing faster than " \
                                                            "the maximum scale rate"
            else:
                bound, why, text = min_r, "TooFewReplicas", "the desired replica count is less than the minimum " \
                                                            "replica count"
            if stabilized < bound:
                result, reason, message = bound, why, text
        _condition(conditions, "ScalingLimited", "True" if result != stabilized else "False", reason, message)
        return result

    def _limit(self, scaling: Obj, memory: HpaMemory, current: int, now: float, direction: str) -> int:
        """calculateScaleUpLimitWithScalingRules / calculateScaleDownLimitWithBehaviors."""
        select = scaling.get("selectPolicy", "Max")
        if select == "Disabled":
            return current
        proposals = []
        for policy in scaling["policies"]:
            period = float(policy["periodSeconds"])
            added = sum(change for at, change in memory.scale_up_events if at > now - period)
            removed = sum(change for at, change in memory.scale_down_events if at > now - period)
            start = current - added + removed
            value = int(policy["value"])
            if direction == "up":
                proposals.append(start + value if policy["type"] == "Pods" else math.ceil(start * (1 + value / 100)))
            else:
                proposals.append(start - value if policy["type"] == "Pods" else int(start * (1 - value / 100)))
        longest = max(float(p["periodSeconds"]) for p in scaling["policies"])
        events = memory.scale_up_events if direction == "up" else memory.scale_down_events
        events[:] = [e for e in events if e[0] > now - longest]
        if direction == "up":
            return max(proposals) if select == "Max" else min(proposals)
        return min(proposals) if select == "Max" else max(proposals)

    def _write_status(self, key: Key, hpa: Obj, current: int, desired: int, metrics: Any, conditions: list[Obj],
                      rescaled: bool) -> None:
        old = hpa.get("status") or {}
        status: Obj = {"observedGeneration": hpa["metadata"].get("generation", 1), "currentReplicas": current,
                       "desiredReplicas": desired, "conditions": conditions}
        if metrics is not None:
            status["currentMetrics"] = metrics
        last = now_iso() if rescaled else old.get("lastScaleTime")
        if last:
            status["lastScaleTime"] = last
        if status != old:
            updated = copy.deepcopy(hpa)
            updated["status"] = status
            self.api.store.update(key, updated)


def _condition(conditions: list[Obj], kind: str, status: str, reason: str, message: str) -> None:
    for condition in conditions:
        if condition["type"] == kind:
            if condition["status"] != status:
                condition["lastTransitionTime"] = now_iso()
            condition.update(status=status, reason=reason, message=message)
            return
    conditions.append({"type": kind, "status": status, "reason": reason, "message": message,
                       "lastTransitionTime": now_iso()})
