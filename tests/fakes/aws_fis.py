"""AWS FIS on FakeAws: experiments that act on the fake account, through the documented lifecycle.

moto 5.2 keeps FIS templates and experiments, but accepts any template, steps an experiment's state
forward on every GetExperiment and never touches a resource. For requests through a FakeAws server
this module replaces that:

CreateExperimentTemplate refuses, with ValidationException
(https://docs.aws.amazon.com/fis/latest/APIReference/API_CreateExperimentTemplate.html, "Errors"):
a roleArn that is not an IAM role ARN; an actionId this fake does not implement (the three the
harness uses, from https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html:
aws:rds:failover-db-cluster, aws:elasticache:replicationgroup-interrupt-az-power,
aws:network:disrupt-connectivity); an action whose target names no target of the template or one
of another resource type; a missing or malformed `duration` (ISO 8601, PT1M..PT12H) where the action
takes one; a target with neither resourceArns nor resourceTags; a stop condition that is neither
`none` nor a CloudWatch alarm ARN; a template without tags when `require_tags` is set.

An experiment follows the states of https://docs.aws.amazon.com/fis/latest/userguide/monitoring-experiments.html
("Experiment states"): pending, initiating, running, then completed (every action's duration over) or,
on StopExperiment (https://docs.aws.amazon.com/fis/latest/APIReference/API_StopExperiment.html),
stopping then stopped; failed when a target resolves to nothing ("Target resolution returned empty
set", the emptyTargetResolutionMode `fail` default) or an action's call fails. While running, the
actions act through the fake's own API, as FIS acts with the experiment's role:
- aws:rds:failover-db-cluster: FailoverDBCluster on the cluster (its timing is FakeAws');
- aws:elasticache:replicationgroup-interrupt-az-power: TestFailover of each node group whose primary is
  in the target's availabilityZoneIdentifier (the action's documented effect on a Multi-AZ group: the
  primary's node loses power and a replica is promoted);
- aws:network:disrupt-connectivity (scope all): each subnet put on a new deny-all network ACL tagged
  managedByFIS=true, and back on its own ACL when the action ends or the experiment stops.
- aws:eks:pod-network-latency / aws:eks:pod-network-packet-loss on a fake EKS cluster's pods
  (`fake.fis.eks`, aws_fis_eks.py), changing the modelled API <-> database path until the action ends.
Fake seconds: initiating after 1 s, running after 2 s (FakeAws' clock).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from . import aws_fis_eks

ACTIONS: dict[str, tuple[str, str, bool]] = {  # actionId -> (target key, resource type, takes a duration)
    "aws:rds:failover-db-cluster": ("Clusters", "aws:rds:cluster", False),
    "aws:elasticache:replicationgroup-interrupt-az-power": ("ReplicationGroups", "aws:elasticache:replicationgroup",
                                                            True),
    "aws:network:disrupt-connectivity": ("Subnets", "aws:ec2:subnet", True),
    **aws_fis_eks.ACTIONS,  # aws:eks:pod-network-latency / -packet-loss (aws_fis_eks.py)
}
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
ALARM_ARN = re.compile(r"^arn:aws[a-z-]*:cloudwatch:[a-z0-9-]+:\d{12}:alarm:.+$")
DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")
DONE = ("completed", "stopped", "failed")


def _invalid(message: str) -> Exception:
    from moto.core.exceptions import JsonRESTError
    return JsonRESTError("ValidationException", message)


def duration_s(text: Any) -> int:
    """Seconds of an ISO 8601 duration as FIS takes it (PT1M..PT12H); ValidationException otherwise."""
    match = DURATION.match(str(text or ""))
    seconds = int(match.group(1) or 0) * 3600 + int(match.group(2) or 0) * 60 + int(match.group(3) or 0) if match else 0
    if not match or not 60 <= seconds <= 12 * 3600:
        raise _invalid(f"Invalid duration {text!r}: an ISO 8601 duration from PT1M to PT12H.")
    return seconds


def validate_template(params: dict[str, Any], require_tags: bool) -> None:
    """CreateExperimentTemplate's refusals (ValidationException), as the API reference lists them."""
    if not ROLE_ARN.match(str(params.get("roleArn") or "")):
        raise _invalid(f"roleArn {params.get('roleArn')!r} is not the ARN of an IAM role.")
    targets = params.get("targets") or {}
    for name, target in targets.items():
        if target.get("resourceType") != "aws:eks:pod" and not target.get("resourceArns") and not target.get(
                "resourceTags"):  # an aws:eks:pod target names its pods by parameters (aws_fis_eks.py)
            raise _invalid(f"Target {name} must have resourceArns or resourceTags.")
    for name, action in (params.get("actions") or {}).items():
        known = ACTIONS.get(action.get("actionId"))
        if known is None:
            raise _invalid(f"Action {name}: actionId {action.get('actionId')!r} is not supported.")
        key, resource_type, timed = known
        target_name = (action.get("targets") or {}).get(key)
        if target_name not in targets or targets[target_name].get("resourceType") != resource_type:
            raise _invalid(f"Action {name} ({action['actionId']}) needs a target '{key}' of type {resource_type}.")
        if timed:
            duration_s((action.get("parameters") or {}).get("duration"))
        if resource_type == "aws:eks:pod":
            aws_fis_eks.validate(name, action, targets[target_name], _invalid)
    for condition in params.get("stopConditions") or []:
        if condition.get("source") != "none" and not (condition.get("source") == "aws:cloudwatch:alarm"
                                                     and ALARM_ARN.match(str(condition.get("value") or ""))):
            raise _invalid(f"Stop condition {condition} is neither 'none' nor a CloudWatch alarm ARN.")
    if require_tags and not params.get("tags"):
        raise _invalid("This account requires every experiment template to be tagged.")


@dataclass
class FisRun:
    """One experiment as this fake runs it."""

    experiment_id: str
    region: str
    actions: dict[str, Any]
    targets: dict[str, Any]
    status: str = "pending"
    reason: str = "Experiment is pending"
    restores: list[Callable[[], None]] = field(default_factory=list)


class FakeFis:
    """The FIS experiments of one FakeAws: run on its clock, acting through its URL."""

    def __init__(self, clock: Any, url: Callable[[], str], require_tags: bool = False) -> None:
        self.clock = clock
        self.url = url
        self.require_tags = require_tags
        self.runs: dict[str, FisRun] = {}
        self.eks: dict[str, aws_fis_eks.EksCluster] = {}  # EKS clusters the pod actions reach, by name
        self._lock = threading.RLock()

    def started(self, experiment: dict[str, Any], region: str) -> None:
        run = FisRun(experiment["id"], region, experiment.get("actions") or {}, experiment.get("targets") or {})
        with self._lock:
            self.runs[run.experiment_id] = run
        self.clock.call_later(1, lambda: self._move(run, "initiating", "Experiment is initiating"))
        self.clock.call_later(2, lambda: self._run(run))

    def stop(self, experiment_id: str) -> None:
        with self._lock:
            run = self.runs.get(experiment_id)
            if run is None or run.status in DONE:
                return
            run.status, run.reason = "stopping", "Experiment is stopping"
        self.clock.call_later(0.5, lambda: self._end(run, "stopped", "Experiment stopped"))

    def patch(self, experiment: dict[str, Any]) -> dict[str, Any]:
        """An experiment's JSON with this fake's state instead of moto's."""
        with self._lock:
            run = self.runs.get(experiment.get("id", ""))
            if run is not None:
                experiment["state"] = {"status": run.status, "reason": run.reason}
        return experiment

    # -- the run ----------------------------------------------------------------------------
    def _move(self, run: FisRun, status: str, reason: str) -> bool:
        with self._lock:
            if run.status in DONE or run.status == "stopping":
                return False
            run.status, run.reason = status, reason
            return True

    def _end(self, run: FisRun, status: str, reason: str) -> None:
        with self._lock:
            if run.status in DONE:
                return
            restores, run.restores = run.restores, []
        for restore in reversed(restores):
            restore()
        with self._lock:
            run.status, run.reason = status, reason

    def _run(self, run: FisRun) -> None:
        if not self._move(run, "running", "Experiment is running"):
            return
        longest = 0
        try:
            for action in run.actions.values():
                key, _, timed = ACTIONS[action["actionId"]]
                target = run.targets[action["targets"][key]]
                getattr(self, "_" + action["actionId"].rsplit(":", 1)[1].replace("-", "_"))(run, target)
                if timed:
                    longest = max(longest, duration_s(action["parameters"]["duration"]))
        except _Empty as exc:
            self._end(run, "failed", f"Target resolution returned empty set ({exc})")
            return
        except Exception as exc:  # noqa: BLE001 - an action that fails fails the experiment, as FIS does
            self._end(run, "failed", f"Action failed: {exc}")
            return
        self.clock.call_later(max(longest, 1), lambda: self._end(run, "completed", "Experiment completed"))

    def _client(self, run: FisRun, service: str) -> Any:
        import boto3
        return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                             region_name=run.region).client(service, endpoint_url=self.url())

    def _failover_db_cluster(self, run: FisRun, target: dict[str, Any]) -> None:
        rds = self._client(run, "rds")
        for arn in target["resourceArns"]:
            name = arn.rsplit(":", 1)[1]
            if not rds.describe_db_clusters(Filters=[{"Name": "db-cluster-id", "Values": [name]}])["DBClusters"]:
                raise _Empty(arn)
            rds.failover_db_cluster(DBClusterIdentifier=name)

    def _replicationgroup_interrupt_az_power(self, run: FisRun, target: dict[str, Any]) -> None:
        cache = self._client(run, "elasticache")
        zone = (target.get("parameters") or {}).get("availabilityZoneIdentifier")
        for arn in target["resourceArns"]:
            try:
                group = cache.describe_replication_groups(ReplicationGroupId=arn.rsplit(":", 1)[1])[
                    "ReplicationGroups"][0]
            except Exception as exc:  # noqa: BLE001 - not found: nothing to resolve
                raise _Empty(arn) from exc
            for node_group in group.get("NodeGroups", []):
                primary = next((m for m in node_group.get("NodeGroupMembers", []) if m.get("CurrentRole") ==
                                "primary"), {})
                if primary.get("PreferredAvailabilityZone") == zone:
                    cache.test_failover(ReplicationGroupId=group["ReplicationGroupId"],
                                        NodeGroupId=node_group["NodeGroupId"])

    def _pod_network_latency(self, run: FisRun, target: dict[str, Any]) -> None:
        self._pod_network(run, target, aws_fis_eks.LATENCY)

    def _pod_network_packet_loss(self, run: FisRun, target: dict[str, Any]) -> None:
        self._pod_network(run, target, aws_fis_eks.LOSS)

    def _pod_network(self, run: FisRun, target: dict[str, Any], action_id: str) -> None:
        action = next(a for a in run.actions.values() if a["actionId"] == action_id)
        restore = aws_fis_eks.run(self.eks, run.experiment_id, action, target, _Empty)
        with self._lock:
            run.restores.append(restore)

    def _disrupt_connectivity(self, run: FisRun, target: dict[str, Any]) -> None:
        ec2 = self._client(run, "ec2")
        for arn in target["resourceArns"]:
            subnet_id = arn.rsplit("/", 1)[1]
            subnets = ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])["Subnets"]
            if not subnets:
                raise _Empty(arn)
            acls = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])
            acl = acls["NetworkAcls"][0]
            association = next(a for a in acl["Associations"] if a["SubnetId"] == subnet_id)
            deny = ec2.create_network_acl(VpcId=subnets[0]["VpcId"], TagSpecifications=[{
                "ResourceType": "network-acl", "Tags": [{"Key": "managedByFIS", "Value": "true"}]}])["NetworkAcl"]
            moved = ec2.replace_network_acl_association(AssociationId=association["NetworkAclAssociationId"],
                                                        NetworkAclId=deny["NetworkAclId"])["NewAssociationId"]

            def restore(moved: str = moved, original: str = acl["NetworkAclId"], deny_id: str = deny["NetworkAclId"]
                        ) -> None:
                ec2.replace_network_acl_association(AssociationId=moved, NetworkAclId=original)
                ec2.delete_network_acl(NetworkAclId=deny_id)
            with self._lock:
                run.restores.append(restore)


class _Empty(Exception):
    """A target that names nothing in the account."""


_INSTALLED = False


def install(active: Callable[[], Any]) -> None:
    """Wrap moto's FIS handlers once; `active()` is the FakeAws serving this request (None: moto's own)."""
    global _INSTALLED
    if _INSTALLED:
        return
    from moto.fis.responses import FISResponse
    originals = {name: getattr(FISResponse, name) for name in (
        "create_experiment_template", "start_experiment", "get_experiment", "list_experiments", "stop_experiment")}

    def create_experiment_template(self: Any) -> str:
        fake = active()
        if fake is not None:
            validate_template(json.loads(self.body or "{}"), fake.fis.require_tags)
        return str(originals["create_experiment_template"](self))

    def start_experiment(self: Any) -> str:
        answer = str(originals["start_experiment"](self))
        fake = active()
        if fake is None:
            return answer
        data = json.loads(answer)
        if data["experiment"]["id"] not in fake.fis.runs:
            fake.fis.started(data["experiment"], self.region)
        data["experiment"] = fake.fis.patch(data["experiment"])
        return json.dumps(data)

    def get_experiment(self: Any) -> str:
        return _patched(self, "get_experiment", "experiment")

    def list_experiments(self: Any) -> str:
        return _patched(self, "list_experiments", "experiments")

    def stop_experiment(self: Any) -> str:
        fake = active()
        if fake is not None:
            fake.fis.stop(self._get_param("id"))
        return _patched(self, "stop_experiment", "experiment")

    def _patched(response: Any, name: str, key: str) -> str:
        answer = str(originals[name](response))
        fake = active()
        if fake is None:
            return answer
        data = json.loads(answer)
        found = data[key]
        data[key] = [fake.fis.patch(e) for e in found] if isinstance(found, list) else fake.fis.patch(found)
        return json.dumps(data)

    FISResponse.create_experiment_template = create_experiment_template  # type: ignore[method-assign]
    FISResponse.start_experiment = start_experiment  # type: ignore[method-assign]
    FISResponse.get_experiment = get_experiment  # type: ignore[method-assign]
    FISResponse.list_experiments = list_experiments  # type: ignore[method-assign]
    FISResponse.stop_experiment = stop_experiment  # type: ignore[method-assign]
    _INSTALLED = True
