"""Faults as AWS FIS experiments: they end by themselves, so a killed harness cannot leave the platform broken.

With `aws.injection: fis` (the default) a fault is one experiment template made for the run
(https://docs.aws.amazon.com/fis/latest/userguide/experiment-templates.html): its actions from the
FIS actions reference (https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html)
—

- `aws:rds:failover-db-cluster` on the DB cluster (RDS keeps the promoted writer);
- `aws:elasticache:replicationgroup-interrupt-az-power` on the replication group, in one zone, for
  `aws.fis_duration_s` (the zone's nodes lose power; a primary there fails over; FIS restores them);
- `aws:network:disrupt-connectivity` (scope `all`) on a zone's allowed subnets for `aws.fis_duration_s`
  (FIS swaps in a deny-all network ACL and puts the original back when the action ends or stops);

— run as `aws.fis_role_arn`, stopped by FIS itself when a CloudWatch alarm of `aws.fis_stop_alarms`
fires, and tagged (`managed-by`, `resilience:run`) so the IAM policy (aws/iam.py) lets the harness
delete only templates it made. The template id goes into rollback.json before the experiment starts,
the experiment id as soon as it is known; the rollback stops the experiment (StopExperiment), waits
until FIS reports it stopped, and deletes the template. A rollback replayed from rollback.json stops
only templates carrying our tag.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

from ...errors import HarnessError, UserError
from ..base import Recorder, RollbackStep
from ..kubernetes.manifests import MANAGED_BY_LABEL, MANAGER
from .services import AwsServices

FIS = "fis"
CHAOSAWS = "chaosaws"
RUN_TAG = "resilience:run"
DONE = ("completed", "stopped", "failed", "cancelled")  # an experiment in these states changes nothing more
STOP_WAIT_S = 300.0  # how long a rollback waits for FIS to report the experiment stopped
POLL_S = 1.0
FIS_ACTIONS = ("aws:rds:failover-db-cluster", "aws:elasticache:replicationgroup-interrupt-az-power",
               "aws:network:disrupt-connectivity",
               "aws:eks:pod-network-latency", "aws:eks:pod-network-packet-loss")  # issue 21: aws/fis_network.py


def _duration(seconds: int) -> str:
    """ISO 8601, as FIS takes action durations (PT1M .. PT12H)."""
    return f"PT{max(60, min(12 * 3600, int(seconds)))}S"


def rds_failover(cluster_arn: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(actions, targets) of a failover of the DB cluster."""
    return ({"failover": {"actionId": "aws:rds:failover-db-cluster", "targets": {"Clusters": "cluster"}}},
            {"cluster": {"resourceType": "aws:rds:cluster", "resourceArns": [cluster_arn], "selectionMode": "ALL"}})


def cache_power(group_arn: str, zone: str, seconds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(actions, targets) of a power interruption of the replication group's nodes in `zone`."""
    return ({"cache-power": {"actionId": "aws:elasticache:replicationgroup-interrupt-az-power",
                             "parameters": {"duration": _duration(seconds)},
                             "targets": {"ReplicationGroups": "cache"}}},
            {"cache": {"resourceType": "aws:elasticache:replicationgroup", "resourceArns": [group_arn],
                       "selectionMode": "ALL", "parameters": {"availabilityZoneIdentifier": zone}}})


def network_cut(subnet_arns: list[str], seconds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(actions, targets) of all traffic to and from the subnets cut (FIS's own network ACL)."""
    return ({"network": {"actionId": "aws:network:disrupt-connectivity",
                         "parameters": {"duration": _duration(seconds), "scope": "all"},
                         "targets": {"Subnets": "subnets"}}},
            {"subnets": {"resourceType": "aws:ec2:subnet", "resourceArns": subnet_arns, "selectionMode": "ALL"}})


class FisEngine:
    """Experiment templates made, started, stopped and deleted for one aws target."""

    def __init__(self, services: AwsServices, sleep: Callable[[float], None] = time.sleep) -> None:
        self.services = services
        self.aws = services.aws
        self.sleep = sleep

    @property
    def on(self) -> bool:
        return self.aws.injection == FIS

    def refusal(self) -> str | None:
        """Why FIS cannot run these settings' experiments, or None."""
        if self.aws.injection not in (FIS, CHAOSAWS):
            return f"aws.injection is {self.aws.injection!r}: it must be 'fis' or 'chaosaws'."
        if self.on and not self.aws.fis_role_arn:
            return ("aws.fis_role_arn is not set: AWS FIS runs an experiment as an IAM role (docs/targets.md, "
                    "'AWS FIS'). Set it, or aws.injection: chaosaws to call the APIs directly.")
        if self.on and not 60 <= self.aws.fis_duration_s <= 12 * 3600:
            return f"aws.fis_duration_s is {self.aws.fis_duration_s}: FIS takes 60 s .. 12 h."
        return None

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.aws.region}:{self.services.account}:{resource}"

    def plan(self, fault: str, step: str, actions: list[str]) -> list[str]:
        alarms = ", ".join(self.aws.fis_stop_alarms) or "none"
        return [f"{fault}: fis:CreateExperimentTemplate(actions={actions}, roleArn={self.aws.fis_role_arn!r}, "
                f"stopConditions={alarms}, tags {MANAGED_BY_LABEL}={MANAGER}) -> its id into rollback.json",
                f"{fault}: fis:StartExperiment(experimentTemplateId=<template>) -> the experiment id into rollback.json; "
                f"fis:GetExperiment until it is running (FIS ends it by itself after at most "
                f"{self.aws.fis_duration_s} s)",
                f"rollback {step}: fis:StopExperiment(id=<experiment>), fis:GetExperiment until stopped, "
                f"fis:DeleteExperimentTemplate(id=<template>) (only a template carrying our tag)"]

    def start(self, step_name: str, description: str, parts: list[tuple[dict[str, Any], dict[str, Any]]],
              record: Recorder, extra: dict[str, Any]) -> RollbackStep:
        """Make the template, record it, start the experiment, record its id; return the rollback step."""
        problem = self.refusal()
        if problem:
            raise UserError(problem)
        fis = self.services.client("fis")
        actions: dict[str, Any] = {}
        targets: dict[str, Any] = {}
        for part_actions, part_targets in parts:
            actions.update(part_actions)
            targets.update(part_targets)
        run_tag = uuid.uuid4().hex[:12]
        stop = [{"source": "aws:cloudwatch:alarm", "value": a} for a in self.aws.fis_stop_alarms] or [
            {"source": "none"}]
        template = fis.create_experiment_template(
            clientToken=run_tag, description=description[:512], roleArn=self.aws.fis_role_arn,
            stopConditions=stop, actions=actions, targets=targets,
            tags={MANAGED_BY_LABEL: MANAGER, RUN_TAG: run_tag})["experimentTemplate"]
        arguments = {**extra, "template_id": template["id"], "experiment_id": None,
                     "actions": sorted(a["actionId"] for a in actions.values())}
        step = RollbackStep(step_name, arguments, f"stop FIS experiment of template {template['id']}, delete it")
        record(step)  # before the experiment starts: a crash from here on still stops and deletes it
        experiment = fis.start_experiment(clientToken=run_tag, experimentTemplateId=template["id"],
                                          tags={MANAGED_BY_LABEL: MANAGER, RUN_TAG: run_tag})["experiment"]
        step = RollbackStep(step_name, {**arguments, "experiment_id": experiment["id"]}, step.description)
        record(step)
        state = self._wait(experiment["id"], lambda s: s in ("running", *DONE), STOP_WAIT_S)
        if state["status"] == "failed":
            self.stop(step)
            raise HarnessError(f"AWS FIS experiment {experiment['id']} failed: {state.get('reason')}. The template "
                               f"was deleted; nothing is left running.")
        return step

    def stop(self, step: RollbackStep) -> None:
        """Stop the step's experiment(s), wait until FIS reports them done, delete the template; safe twice."""
        fis = self.services.client("fis")
        template_id = step.arguments.get("template_id")
        if not template_id:
            return
        from botocore.exceptions import ClientError
        try:
            template = fis.get_experiment_template(id=template_id)["experimentTemplate"]
        except ClientError as exc:
            if "NotFound" in str(exc):
                return  # deleted already: stopped and cleaned up
            raise
        if template.get("tags", {}).get(MANAGED_BY_LABEL) != MANAGER:
            raise UserError(f"FIS experiment template {template_id} does not carry the tag {MANAGED_BY_LABEL}="
                            f"{MANAGER}: it is not one this tool made, so it is not touched. Check rollback.json.")
        running = [e["id"] for e in fis.list_experiments(experimentTemplateId=template_id).get("experiments", [])
                   if e.get("state", {}).get("status") not in DONE]
        for experiment_id in running:
            fis.stop_experiment(id=experiment_id)
        for experiment_id in running:
            state = self._wait(experiment_id, lambda s: s in DONE, STOP_WAIT_S)
            if state["status"] not in DONE:
                raise HarnessError(f"AWS FIS experiment {experiment_id} is still {state['status']} after "
                                   f"{STOP_WAIT_S:g} s of StopExperiment; see the FIS console.")
        fis.delete_experiment_template(id=template_id)

    def _wait(self, experiment_id: str, done: Callable[[str], bool], timeout_s: float) -> dict[str, Any]:
        fis = self.services.client("fis")
        deadline = time.monotonic() + timeout_s
        while True:
            state = dict(fis.get_experiment(id=experiment_id)["experiment"]["state"])
            if done(str(state["status"])) or time.monotonic() >= deadline:
                return state
            self.sleep(POLL_S)
