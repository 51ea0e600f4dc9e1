"""FIS's EKS pod network actions for the fake FIS (aws_fis.py): `aws:eks:pod-network-latency` and
`aws:eks:pod-network-packet-loss` on pods of a FakeKubeApi, acting on the modelled API <-> database path.

After https://docs.aws.amazon.com/fis/latest/userguide/eks-pod-actions.html and the actions reference
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html#eks-actions-reference):
- CreateExperimentTemplate refuses (ValidationException) an `aws:eks:pod` target without the parameters
  `clusterIdentifier`, `namespace`, `selectorType` (labelSelector | deploymentName | podName) and
  `selectorValue`; an action without `kubernetesServiceAccount`; `lossPercent` outside 0..100;
  `delayMilliseconds` / `jitterMilliseconds` that are not whole numbers >= 0;
- when the experiment runs: an unknown cluster, or a ServiceAccount missing in the namespace (FIS's pod
  runs as it), fails the action and so the experiment; no Running pod matching the selector is "Target
  resolution returned empty set"; a `targetContainerName` the pods do not have fails the action;
- otherwise FIS's ephemeral container changes each target pod's network towards `sources` (comma
  separated hosts; empty: all) until the action's `duration` ends or the experiment stops.
The path (netpath_app.PathState) is changed when the pods are the app's and `sources` is empty or
names one of the cluster's database hosts; the change is undone with the experiment's other restores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .netpath_app import PathState

LATENCY, LOSS = "aws:eks:pod-network-latency", "aws:eks:pod-network-packet-loss"
ACTIONS = {LATENCY: ("Pods", "aws:eks:pod", True), LOSS: ("Pods", "aws:eks:pod", True)}
SELECTOR_TYPES = ("labelSelector", "deploymentName", "podName")


@dataclass
class EksCluster:
    """An EKS cluster FIS can reach: its API server (a FakeKubeApi) and the path its app's pods use."""

    name: str
    kube: Any  # FakeKubeApi
    path: PathState
    db_hosts: tuple[str, ...] = ()
    app_labels: dict[str, str] = field(default_factory=lambda: {"app.kubernetes.io/name": "school-meals-api"})
    fis_pods: list[str] = field(default_factory=list)  # the FIS pods each action made (namespace/account)


def validate(action_name: str, action: dict[str, Any], target: dict[str, Any], invalid: Callable[[str], Exception]
             ) -> None:
    """CreateExperimentTemplate's checks of an EKS pod network action and its aws:eks:pod target."""
    parameters = target.get("parameters") or {}
    for name in ("clusterIdentifier", "namespace", "selectorType", "selectorValue"):
        if not parameters.get(name):
            raise invalid(f"Target of action {action_name}: aws:eks:pod requires the parameter {name}.")
    if parameters["selectorType"] not in SELECTOR_TYPES:
        raise invalid(f"selectorType {parameters['selectorType']!r} must be one of {', '.join(SELECTOR_TYPES)}.")
    given = action.get("parameters") or {}
    if not given.get("kubernetesServiceAccount"):
        raise invalid(f"Action {action_name}: the parameter kubernetesServiceAccount is required.")
    for name in ("delayMilliseconds", "jitterMilliseconds"):
        if name in given and not str(given[name]).isdigit():
            raise invalid(f"Action {action_name}: {name} {given[name]!r} must be a whole number of milliseconds.")
    if "lossPercent" in given and not (str(given["lossPercent"]).isdigit() and 0 <= int(given["lossPercent"]) <= 100):
        raise invalid(f"Action {action_name}: lossPercent {given['lossPercent']!r} must be from 0 to 100.")


def run(clusters: dict[str, EksCluster], experiment_id: str, action: dict[str, Any], target: dict[str, Any],
        empty: Callable[[str], Exception]) -> Callable[[], None]:
    """Inject the action into the target's pods; returns how to undo it (raises to fail the action)."""
    parameters = target.get("parameters") or {}
    ident = str(parameters["clusterIdentifier"])
    cluster = clusters.get(ident.rsplit("/", 1)[-1])
    if cluster is None:
        raise RuntimeError(f"EKS cluster {ident} not found")
    namespace = str(parameters["namespace"])
    given = action.get("parameters") or {}
    account = str(given["kubernetesServiceAccount"])
    if cluster.kube.get("serviceaccounts", account, namespace) is None:
        raise RuntimeError(f"serviceaccounts \"{account}\" not found in namespace {namespace}: the FIS pod cannot "
                           f"be created")
    pods = _pods(cluster, namespace, str(parameters["selectorType"]), str(parameters["selectorValue"]))
    if not pods:
        raise empty(f"no Running pod in {namespace} matches {parameters['selectorValue']}")
    container = parameters.get("targetContainerName")
    if container and any(container not in [c["name"] for c in p["spec"]["containers"]] for p in pods):
        raise RuntimeError(f"targetContainerName {container} is not a container of every target pod")
    cluster.fis_pods.append(f"{namespace}/{account}")
    sources = [s for s in str(given.get("sources") or "").split(",") if s]
    labels = pods[0]["metadata"].get("labels") or {}
    on_path = all(labels.get(k) == v for k, v in cluster.app_labels.items()) and (
        not sources or any(s in cluster.db_hosts for s in sources))
    if on_path:
        if action["actionId"] == LATENCY:
            cluster.path.inject(experiment_id, delay_ms=float(given.get("delayMilliseconds", 200)),
                                jitter_ms=float(given.get("jitterMilliseconds", 10)))
        else:
            percent = float(given.get("lossPercent", 100))
            cluster.path.inject(experiment_id, loss_pct=percent, blackhole=percent >= 100)
    return lambda: cluster.path.clear(experiment_id)


def _pods(cluster: EksCluster, namespace: str, selector_type: str, value: str) -> list[dict[str, Any]]:
    running = [p for p in cluster.kube.objects("pods", namespace) if (p.get("status") or {}).get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp")]
    if selector_type == "podName":
        return [p for p in running if p["metadata"]["name"] == value]
    if selector_type == "deploymentName":
        return [p for p in running if p["metadata"]["name"].startswith(f"{value}-")]
    wanted = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    return [p for p in running if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]
