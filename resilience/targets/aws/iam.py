"""Least-privilege IAM policy for the harness on the aws target, generated from settings.

`python -m resilience.targets.aws.iam [--config FILE] > deploy/iam-policy.json` writes what
`iam_policy()` returns; deploy/iam-policy.json is that output for the example settings below (a
unit test keeps the two equal, and fails when the code makes an AWS call no statement allows).
An administrator attaches it to the role the harness runs as (e.g. the game-day CronJob's IRSA role).

What it allows, and why (docs/targets.md, "IAM policy"):

- every statement only in `aws.allowed_regions` (`aws:RequestedRegion`,
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-requestedregion);
- reads: the DB cluster, its instances and subnet group, the replication group, events, the
  CloudWatch connection count, subnets, network ACLs, NAT gateways and VPC endpoints. The Describe
  calls of EC2, RDS/ElastiCache DescribeEvents, CloudWatch GetMetricStatistics and STS
  GetCallerIdentity support no resource-level permissions, so their Resource is "*"
  (https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html);
- with `aws.injection: fis` (the default; aws/fis.py): FIS templates created only with our
  managed-by tag in the request and only for the three actions the faults use; started, stopped,
  read and deleted only when they carry that tag (`aws:ResourceTag`); iam:PassRole on
  `aws.fis_role_arn` only to FIS (`iam:PassedToService`). The failovers and the network cut are
  then FIS's, made with the role's permissions (e.g. the AWS managed policies
  AWSFaultInjectionSimulatorRDSAccess, ...ElastiCacheAccess, ...NetworkAccess), not the harness's;
- with `aws.injection: chaosaws`: rds:FailoverDBCluster on the cluster ARN and
  elasticache:TestFailover on the replication group ARN, only those named in `aws.rds_cluster` /
  `aws.elasticache_group` and allowed by `aws.allowed_resources`; and the zone blackhole (only
  with `aws.blackhole_subnets`): CreateNetworkAcl only in the allowed VPCs and only with the
  blackhole tag in the request (`aws:RequestTag`), CreateTags only as part of that creation
  (`ec2:CreateAction`), ReplaceNetworkAclAssociation on the allowed subnets, DeleteNetworkAcl only
  on ACLs carrying the blackhole tag (`aws:ResourceTag`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any, Sequence

from ...config import AwsSettings, Settings, load_settings
from ...monitoring_settings import CloudWatchAlarmSettings
from ...errors import UserError
from ..kubernetes.names import MANAGED_BY_LABEL, MANAGER
from .alarms import alarm_statements
from .blackhole import BLACKHOLE_TAG
from .fis import FIS, FIS_ACTIONS
from .restore import restored_name

# what a deploy/iam-policy.json for the default settings names where the settings have nothing yet
EXAMPLE = AwsSettings(allowed_accounts=("111122223333",), region="ap-south-1", allowed_regions=("ap-south-1",),
                      allowed_resources=("school-meals-db", "school-meals-cache", "vpc-0example",
                                         "subnet-0example1", "subnet-0example2", "subnet-0example3",
                                         restored_name("school-meals-db")),
                      blackhole_subnets=True, fis_role_arn="arn:aws:iam::111122223333:role/resilience-fis",
                      alarms=CloudWatchAlarmSettings(detection=("school-meals-db-down=DatabaseDown",),
                                                     stop=("school-meals-availability",)))

# (IAM actions, why): reads that support no resource-level permission
UNSCOPED_READS: tuple[tuple[str, ...], ...] = (
    ("sts:GetCallerIdentity",),  # the account check, before any other call
    ("rds:DescribeEvents", "elasticache:DescribeEvents", "cloudwatch:GetMetricStatistics"),  # observation
    ("ec2:DescribeSubnets", "ec2:DescribeNetworkAcls", "ec2:DescribeNatGateways", "ec2:DescribeVpcEndpoints"),
)
# what the code may call through chaosaws (the function imported from chaosaws -> the IAM actions it needs)
CHAOSAWS_CALLS: dict[str, tuple[str, ...]] = {
    "failover_db_cluster": ("rds:FailoverDBCluster",),
    "test_failover": ("elasticache:TestFailover",),
}


def _arn(service: str, region: str, account: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


def _arns(aws: AwsSettings, service: str, resources: Sequence[str]) -> list[str]:
    return [_arn(service, region, account, r) for region in aws.allowed_regions
            for account in aws.allowed_accounts for r in resources]


def iam_policy(settings: Settings) -> dict[str, Any]:
    """The policy document (IAM JSON policy language, Version 2012-10-17) for these settings."""
    aws = settings.aws
    allowed = set(aws.allowed_resources)
    region = {"StringEquals": {"aws:RequestedRegion": list(aws.allowed_regions)}}
    statements: list[dict[str, Any]] = [
        {"Sid": "Reads", "Effect": "Allow", "Action": sorted(a for group in UNSCOPED_READS for a in group),
         "Resource": "*", "Condition": region},
    ]
    direct = aws.injection != FIS
    if aws.rds_cluster in allowed:
        statements.append({"Sid": "Database", "Effect": "Allow",
                           "Action": ["rds:DescribeDBClusters", *(["rds:FailoverDBCluster"] if direct else [])],
                           "Resource": _arns(aws, "rds", [f"cluster:{aws.rds_cluster}"]), "Condition": region})
        statements.append({"Sid": "DatabaseMembers", "Effect": "Allow",
                           "Action": ["rds:DescribeDBInstances", "rds:DescribeDBSubnetGroups"],
                           "Resource": _arns(aws, "rds", ["db:*", "subgrp:*"]), "Condition": region})
    restored = restored_name(aws.rds_cluster)
    if aws.rds_cluster in allowed and restored in allowed:
        statements += _restore_statements(aws, restored, region)
    if aws.elasticache_group in allowed:
        statements.append({"Sid": "Cache", "Effect": "Allow",
                           "Action": ["elasticache:DescribeReplicationGroups",
                                      *(["elasticache:TestFailover"] if direct else [])],
                           "Resource": _arns(aws, "elasticache", [f"replicationgroup:{aws.elasticache_group}"]),
                           "Condition": region})
    vpcs = sorted(r for r in allowed if r.startswith("vpc-"))
    subnets = sorted(r for r in allowed if r.startswith("subnet-"))
    if not direct:
        statements += _fis_statements(aws, region)
    if direct and aws.blackhole_subnets and vpcs and subnets:
        tagged = {"Null": {f"aws:RequestTag/{BLACKHOLE_TAG}": "false"}}
        statements += [
            {"Sid": "BlackholeCreate", "Effect": "Allow", "Action": ["ec2:CreateNetworkAcl"],
             "Resource": _arns(aws, "ec2", [f"vpc/{v}" for v in vpcs]), "Condition": region},
            {"Sid": "BlackholeCreateTagged", "Effect": "Allow", "Action": ["ec2:CreateNetworkAcl"],
             "Resource": _arns(aws, "ec2", ["network-acl/*"]), "Condition": {**region, **tagged}},
            {"Sid": "BlackholeTagOnCreate", "Effect": "Allow", "Action": ["ec2:CreateTags"],
             "Resource": _arns(aws, "ec2", ["network-acl/*"]),
             "Condition": {**region, "StringEquals": {**region["StringEquals"], "ec2:CreateAction": "CreateNetworkAcl"}}},
            {"Sid": "BlackholeAssociate", "Effect": "Allow", "Action": ["ec2:ReplaceNetworkAclAssociation"],
             "Resource": _arns(aws, "ec2", ["network-acl/*", *(f"subnet/{s}" for s in subnets)]),
             "Condition": region},
            {"Sid": "BlackholeDelete", "Effect": "Allow", "Action": ["ec2:DeleteNetworkAcl"],
             "Resource": _arns(aws, "ec2", ["network-acl/*"]),
             "Condition": {**region, "Null": {f"aws:ResourceTag/{BLACKHOLE_TAG}": "false"}}},
        ]
    statements += alarm_statements(aws, region)  # aws.alarms (alarms.py)
    return {"Version": "2012-10-17", "Statement": statements}


def _restore_statements(aws: AwsSettings, restored: str, region: dict[str, Any]) -> list[dict[str, Any]]:
    """restore_database (aws/restore.py): the point-in-time restore into `restored` and its writer, created
    with our tag (tagging on create needs rds:AddTagsToResource); deleted only while it carries the tag."""
    ours = {**region, "StringEquals": {**region["StringEquals"], f"aws:ResourceTag/{MANAGED_BY_LABEL}": MANAGER}}
    return [
        {"Sid": "RestoreCreate", "Effect": "Allow",
         "Action": ["rds:AddTagsToResource", "rds:CreateDBInstance", "rds:DescribeDBClusters",
                    "rds:RestoreDBClusterToPointInTime"],
         "Resource": _arns(aws, "rds", [f"cluster:{aws.rds_cluster}", f"cluster:{restored}", f"db:{restored}-*",
                                        "subgrp:*", "cluster-pg:*", "pg:*", "og:*"]), "Condition": region},
        {"Sid": "RestoreDelete", "Effect": "Allow", "Action": ["rds:DeleteDBCluster", "rds:DeleteDBInstance"],
         "Resource": _arns(aws, "rds", [f"cluster:{restored}", f"db:{restored}-*"]), "Condition": ours},
    ]


def _fis_statements(aws: AwsSettings, region: dict[str, Any]) -> list[dict[str, Any]]:
    """Templates made, run and deleted only with our tag; the role passed only to FIS."""
    ours = f"aws:ResourceTag/{MANAGED_BY_LABEL}"
    tagging = {**region, "StringEquals": {**region["StringEquals"], f"aws:RequestTag/{MANAGED_BY_LABEL}": MANAGER}}
    tagged = {**region, "StringEquals": {**region["StringEquals"], ours: MANAGER}}
    statements: list[dict[str, Any]] = [
        {"Sid": "FisCreate", "Effect": "Allow", "Action": ["fis:CreateExperimentTemplate", "fis:StartExperiment",
                                                        "fis:TagResource"],
         "Resource": _arns(aws, "fis", ["experiment-template/*", "experiment/*"]), "Condition": tagging},
        {"Sid": "FisActions", "Effect": "Allow", "Action": ["fis:CreateExperimentTemplate"],
         "Resource": _arns(aws, "fis", [f"action/{a}" for a in FIS_ACTIONS]), "Condition": region},
        {"Sid": "FisRun", "Effect": "Allow",
         "Action": ["fis:DeleteExperimentTemplate", "fis:GetExperiment", "fis:GetExperimentTemplate",
                    "fis:StartExperiment", "fis:StopExperiment"],
         "Resource": _arns(aws, "fis", ["experiment-template/*", "experiment/*"]), "Condition": tagged},
        {"Sid": "FisList", "Effect": "Allow", "Action": ["fis:ListExperiments"], "Resource": "*",
         "Condition": region},
    ]
    if aws.fis_role_arn:
        statements.append({"Sid": "FisPassRole", "Effect": "Allow", "Action": ["iam:PassRole"],
                           "Resource": [aws.fis_role_arn], "Condition": {**region, "StringEquals": {
                               **region["StringEquals"], "iam:PassedToService": "fis.amazonaws.com"}}})
    return statements


def allowed_actions(policy: dict[str, Any]) -> set[str]:
    """Every IAM action some statement of `policy` allows."""
    return {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}


def iam_json(settings: Settings) -> str:
    """deploy/iam-policy.json's text: the example settings fill in what the given settings leave empty."""
    aws = settings.aws
    filled = replace(aws, allowed_accounts=aws.allowed_accounts or EXAMPLE.allowed_accounts,
                     allowed_regions=aws.allowed_regions or EXAMPLE.allowed_regions,
                     allowed_resources=aws.allowed_resources or EXAMPLE.allowed_resources,
                     blackhole_subnets=aws.blackhole_subnets or not aws.allowed_resources,
                     fis_role_arn=aws.fis_role_arn or EXAMPLE.fis_role_arn,
                     alarms=aws.alarms if aws.alarms.detection or aws.alarms.stop else EXAMPLE.alarms)
    return json.dumps(iam_policy(replace(settings, aws=filled)), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.targets.aws.iam",
                                     description="print the harness's least-privilege IAM policy (JSON)")
    parser.add_argument("--config", help="settings file (default: resilience.yaml or $RESILIENCE_CONFIG)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)  # like the CLI: ./resilience.yaml when there is one
    except UserError as exc:
        print(f"resilience.targets.aws.iam: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(iam_json(settings))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
