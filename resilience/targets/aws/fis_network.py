"""Network faults on the API pods through AWS FIS's EKS pod actions: the aws target's delay, loss and blackhole.

FIS (https://docs.aws.amazon.com/fis/latest/userguide/eks-pod-actions.html) runs a pod action by
creating a FIS pod in the target's namespace, as the Kubernetes ServiceAccount the action's
`kubernetesServiceAccount` names, which puts an ephemeral container into each target pod; that
container changes the pod's network (tc netem for latency and loss) and undoes it when the action
ends or the experiment stops. The template (fis.py makes, starts, stops and deletes it) has:

- one action: `aws:eks:pod-network-latency` (`delayMilliseconds`, `jitterMilliseconds`) or
  `aws:eks:pod-network-packet-loss` (`lossPercent`; 100 for a blackhole: every packet on the path
  silently dropped, so clients wait for their timeouts, as blackhole_network says), with
  `sources` = the RDS cluster's writer and reader endpoints (only the API <-> database path),
  `duration` = aws.fis_duration_s (FIS reverts by itself then; the rollback stops it after the hold) and `kubernetesServiceAccount`;
- one target of type `aws:eks:pod`: `clusterIdentifier` (aws.eks_cluster), `namespace` (the app's,
  an allowed one), `selectorType: labelSelector`, `selectorValue: app.kubernetes.io/name=...`,
  `targetContainerName: api`, selection mode ALL;
- the stop conditions of aws.fis_stop_alarms.

What FIS needs on the cluster (the same page, "Configure the Kubernetes service account"): the
ServiceAccount in the namespace, a Role letting it manage the FIS pod and the ephemeral containers,
and a RoleBinding of that Role to the ServiceAccount and to the user the FIS role is mapped to
(`fis-experiment`, by the aws-auth ConfigMap or an EKS access entry). `rbac_manifests` makes them;
docs/targets.md shows them. The documented limits: not on Fargate, not in bridge network mode, and
the ephemeral container needs root in the target pod's security context.

reject_network has no FIS action (no EKS pod action resets connections): refused (faults/refused.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import UserError
from ...fault_registry import FaultCall
from ..base import RollbackStep
from ..blast_radius import namespace_problem
from ..effect import Effect
from ..fault_module import FaultModule, InjectContext
from ..kubernetes.names import APP_NAME, Manifest
from ..netpath import path_effect, path_refusal, probe_of, signal
from .fis import _duration

if TYPE_CHECKING:
    from .nemesis import AwsNemesis

LATENCY, LOSS = "aws:eks:pod-network-latency", "aws:eks:pod-network-packet-loss"
CONTAINER = "api"  # the API container's name in the Deployment (kubernetes/manifests.py)
FIS_USER = "fis-experiment"  # the Kubernetes user the FIS role is mapped to (aws-auth / access entry)
ZONE_MECHANISM = ("the closest documented FIS action, aws:network:disrupt-connectivity on one Availability Zone's "
                  "subnets (a network ACL), cuts that zone off from every other subnet, not from one zone only, and "
                  "cannot drop a share of the packets")


def rbac_manifests(namespace: str, service_account: str) -> list[Manifest]:
    """The ServiceAccount, Role and RoleBinding FIS's EKS pod actions need (FIS User Guide, eks-pod-actions)."""
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch", "delete"]},
             {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "list", "get", "delete",
                                                                   "deletecollection"]},
             {"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["update"]},
             {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
             {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]
    meta = {"name": service_account, "namespace": namespace}
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": dict(meta), "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(meta),
             "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace},
                          {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": FIS_USER}],
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": service_account}}]


def pod_network(call: FaultCall, cluster: str, namespace: str, service_account: str, sources: list[str],
                seconds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(actions, targets) of the fault on the API pods, towards `sources` only."""
    parameters = {"duration": _duration(seconds), "kubernetesServiceAccount": service_account,
                  "sources": ",".join(sources)}
    if call.fault == "delay_network":
        action = LATENCY
        parameters.update(delayMilliseconds=str(int(round(call.get("delay_ms")))),
                          jitterMilliseconds=str(int(round(call.get("jitter_ms") or 0))))
    else:
        action = LOSS
        percent = 100 if call.fault == "blackhole_network" else call.get("percent")
        parameters["lossPercent"] = str(int(round(percent)))
    return ({"network": {"actionId": action, "parameters": parameters, "targets": {"Pods": "api-pods"}}},
            {"api-pods": {"resourceType": "aws:eks:pod", "selectionMode": "ALL", "parameters": {
                "clusterIdentifier": cluster, "namespace": namespace, "selectorType": "labelSelector",
                "selectorValue": f"app.kubernetes.io/name={APP_NAME}", "targetContainerName": CONTAINER}}})


class FisPodNetworkFault(FaultModule["AwsNemesis"]):
    """One network fault of the registry as one FIS experiment of an EKS pod network action."""

    def _platform(self, nemesis: AwsNemesis) -> Any:
        return nemesis.switch.platform if nemesis.switch is not None else None

    def refusal(self, nemesis: AwsNemesis, call: FaultCall) -> str | None:
        a = nemesis.aws
        if path_refusal(call, ZONE_MECHANISM):
            return path_refusal(call, ZONE_MECHANISM)
        if not nemesis.fis.on:
            return (f"aws.injection is {a.injection!r}: chaostoolkit-aws has no pod network fault; these faults run "
                    f"only as AWS FIS experiments (aws.injection: fis)")
        if not a.eks_cluster:
            return ("aws.eks_cluster is not set: FIS's EKS pod actions name the cluster (clusterIdentifier). Set it "
                    "to the EKS cluster the app runs on.")
        platform = self._platform(nemesis)
        if platform is None:
            return "the API's pods are unknown: the aws target runs the API on EKS (a kubeconfig context)"
        return (nemesis.fis.refusal() or namespace_problem(nemesis.services.settings, platform.namespace)
                or nemesis.allow_list_problem(("DB cluster", a.rds_cluster)))

    def plan(self, nemesis: AwsNemesis, call: FaultCall) -> list[str]:
        a = nemesis.aws
        platform = self._platform(nemesis)
        namespace = platform.namespace if platform is not None else "<namespace>"
        action = LATENCY if call.fault == "delay_network" else LOSS
        seconds = a.fis_duration_s
        return [f"{self.fault}: GET /api/v1/namespaces/{namespace}/serviceaccounts/{a.fis_kubernetes_service_account} "
                f"(FIS's pod actions run as it; refused when absent); rds:DescribeDBClusters -> sources = the writer "
                f"and reader endpoints; the path timed through the API before and during",
                *nemesis.fis.plan(self.fault, self.steps[0], [
                    f"{action} ({self._words(call)}) for {seconds} s on aws:eks:pod cluster {a.eks_cluster}, "
                    f"namespace {namespace}, labelSelector app.kubernetes.io/name={APP_NAME}, container {CONTAINER}"])]

    def _words(self, call: FaultCall) -> str:
        if call.fault == "delay_network":
            return f"delayMilliseconds {call.get('delay_ms'):g}, jitterMilliseconds {call.get('jitter_ms') or 0:g}"
        return f"lossPercent {100 if call.fault == 'blackhole_network' else call.get('percent'):g}"

    def inject(self, nemesis: AwsNemesis, call: FaultCall, context: InjectContext) -> RollbackStep:
        a, platform = nemesis.aws, self._platform(nemesis)
        problem = self.refusal(nemesis, call)
        if problem:
            raise UserError(f"{self.fault}: {problem}")
        self._need_service_account(platform, a.fis_kubernetes_service_account)
        cluster = nemesis.services.cluster()
        sources = [h for h in (cluster.get("Endpoint"), cluster.get("ReaderEndpoint")) if h]
        if not sources:
            raise UserError(f"{self.fault}: RDS cluster {a.rds_cluster!r} reports no endpoint to name as the path")
        probe = probe_of(platform)
        baseline = probe.measure() if probe is not None else {}
        part = pod_network(call, str(a.eks_cluster), platform.namespace, a.fis_kubernetes_service_account, sources,
                           a.fis_duration_s)
        return nemesis.fis.start(self.steps[0], f"resilience: {self.fault} on {call.get('path')}", [part],
                                 context.record, {"path": call.get("path"), "namespace": platform.namespace,
                                                  "sources": sources, "baseline": baseline, "mechanism": "aws-fis"})

    @staticmethod
    def _need_service_account(platform: Any, name: str) -> None:
        from kubernetes.client.rest import ApiException
        try:
            platform.core().read_namespaced_service_account(name, platform.namespace)
        except ApiException as exc:
            if exc.status == 403:
                return  # the harness's RBAC reads no ServiceAccounts (deploy/rbac.yaml): FIS fails the experiment
            if exc.status != 404:
                raise
            raise UserError(f"the ServiceAccount {platform.namespace}/{name} FIS's EKS pod actions run as is missing: "
                            f"create it with its Role and RoleBinding (docs/targets.md, 'AWS FIS on EKS pods'), or "
                            f"set aws.fis_kubernetes_service_account") from None

    def undo(self, nemesis: AwsNemesis, step: RollbackStep) -> None:
        nemesis.fis.stop(step)

    def undo_refusal(self, nemesis: AwsNemesis, step: RollbackStep) -> str | None:
        return nemesis.fis_undo_refusal(step)

    def effect(self, nemesis: AwsNemesis, call: FaultCall, step: RollbackStep) -> Effect | None:
        experiment = step.arguments.get("experiment_id")
        measured = path_effect(probe_of(self._platform(nemesis)), call, dict(step.arguments.get("baseline") or {}),
                               {"mechanism": "aws-fis", "experiment": experiment,
                                "actions": step.arguments.get("actions")})

        def look() -> dict[str, Any] | None:
            state = nemesis.services.client("fis").get_experiment(id=experiment)["experiment"]["state"]
            if state.get("status") != "running":
                return None  # FIS has not injected it (or it ended): nothing to measure
            return measured.look()
        return Effect(f"FIS experiment {experiment} running and {signal(call)}", measured.deadline_s, look,
                      in_call=False)
