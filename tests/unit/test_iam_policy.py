"""The harness's IAM policy: least privilege, covering every AWS call the code makes, and deploy/iam-policy.json
in step (like deploy/rbac.yaml: tests/unit/test_rbac.py)."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import botocore.session
from botocore import xform_name

from resilience.config import AwsSettings, Settings
from resilience.targets.aws import iam
from resilience.targets.aws.blackhole import BLACKHOLE_TAG

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / "deploy" / "iam-policy.json"
AWS_CODE = ROOT / "resilience" / "targets" / "aws"
SETTINGS = Settings(aws=iam.EXAMPLE)  # aws.injection: fis (the default)
DIRECT = Settings(aws=replace(iam.EXAMPLE, injection="chaosaws"))


def code_calls() -> set[str]:
    """The IAM actions of every AWS call in resilience/targets/aws: boto3 `client("svc").operation(...)` calls
    (an operation name of a service the code makes a client for), and the chaosaws functions it imports."""
    trees = [ast.parse(p.read_text(), str(p)) for p in sorted(AWS_CODE.rglob("*.py"))]
    services = {node.args[0].value for tree in trees for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                    "client", "get") and node.args and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in botocore.session.get_session().get_available_services()}
    operations: dict[str, set[str]] = {}
    session = botocore.session.get_session()
    for service in services:
        model = session.get_service_model(service)
        prefix = model.signing_name if service == "cloudwatch" else service
        prefix = "cloudwatch" if prefix == "monitoring" else prefix
        for operation in model.operation_names:
            operations.setdefault(xform_name(operation), set()).add(f"{prefix}:{operation}")
    actions: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                actions |= operations.get(node.func.attr, set())
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chaosaws"):
                for alias in node.names:
                    assert alias.name in iam.CHAOSAWS_CALLS, \
                        f"chaosaws.{alias.name} is called but iam.CHAOSAWS_CALLS does not say which IAM actions it needs"
                    actions |= set(iam.CHAOSAWS_CALLS[alias.name])
    return actions


def test_deploy_iam_policy_json_is_the_generated_output() -> None:
    assert POLICY_FILE.read_text() == iam.iam_json(Settings()), \
        "deploy/iam-policy.json is stale: regenerate it with `python -m resilience.targets.aws.iam > deploy/iam-policy.json`"
    assert json.loads(POLICY_FILE.read_text()) == iam.iam_policy(SETTINGS)


def test_every_aws_call_the_code_makes_is_allowed_and_nothing_else() -> None:
    needed = code_calls()
    assert {"rds:DescribeDBClusters", "rds:FailoverDBCluster", "elasticache:TestFailover",
            "ec2:CreateNetworkAcl", "cloudwatch:GetMetricStatistics"} <= needed  # the scan finds the calls
    fis, direct = (iam.allowed_actions(iam.iam_policy(s)) for s in (SETTINGS, DIRECT))
    assert needed - (fis | direct) == set(), "AWS calls no policy allows: add them to resilience/targets/aws/iam.py"
    granted_not_called = {"ec2:CreateTags", "fis:TagResource", "iam:PassRole",
                          "rds:AddTagsToResource"}  # permissions of a call (tags on create), not calls
    assert (fis | direct) - needed - granted_not_called == set(), "actions the code never calls (least privilege)"
    assert {a for a in fis if a.startswith(("fis:", "iam:"))} == {a for a in fis - direct}  # FIS only with FIS
    assert not {"rds:FailoverDBCluster", "elasticache:TestFailover", "ec2:CreateNetworkAcl",
                "ec2:DeleteNetworkAcl"} & fis  # with FIS, the role FIS assumes makes those calls


def test_least_privilege() -> None:
    unscoped = {a for group in iam.UNSCOPED_READS for a in group} | {"fis:ListExperiments"}
    for settings in (SETTINGS, DIRECT):
        for statement in iam.iam_policy(settings)["Statement"]:
            assert statement["Effect"] == "Allow" and "*" not in "".join(statement["Action"])
            assert statement["Condition"]["StringEquals"]["aws:RequestedRegion"] == ["ap-south-1"]
            if statement["Resource"] == "*":
                assert set(statement["Action"]) <= unscoped, statement
            else:
                assert all(r.startswith("arn:aws:") and ":111122223333:" in r for r in statement["Resource"])
    fis = {s["Sid"]: s for s in iam.iam_policy(SETTINGS)["Statement"]}
    ours = {"aws:RequestedRegion": ["ap-south-1"], "aws:RequestTag/app.kubernetes.io/managed-by": "resilience"}
    assert fis["FisCreate"]["Condition"]["StringEquals"] == ours
    assert fis["FisRun"]["Condition"]["StringEquals"]["aws:ResourceTag/app.kubernetes.io/managed-by"] == "resilience"
    assert fis["FisPassRole"]["Resource"] == ["arn:aws:iam::111122223333:role/resilience-fis"]
    assert fis["FisPassRole"]["Condition"]["StringEquals"]["iam:PassedToService"] == "fis.amazonaws.com"
    assert fis["FisActions"]["Resource"] == [f"arn:aws:fis:ap-south-1:111122223333:action/{a}" for a in (
        "aws:rds:failover-db-cluster", "aws:elasticache:replicationgroup-interrupt-az-power",
        "aws:network:disrupt-connectivity", "aws:eks:pod-network-latency", "aws:eks:pod-network-packet-loss")]
    by_sid = {s["Sid"]: s for s in iam.iam_policy(DIRECT)["Statement"]}
    assert by_sid["Database"]["Resource"] == ["arn:aws:rds:ap-south-1:111122223333:cluster:school-meals-db"]
    assert by_sid["Cache"]["Resource"] == [
        "arn:aws:elasticache:ap-south-1:111122223333:replicationgroup:school-meals-cache"]
    assert by_sid["BlackholeCreateTagged"]["Condition"]["Null"] == {f"aws:RequestTag/{BLACKHOLE_TAG}": "false"}
    assert by_sid["BlackholeDelete"]["Condition"]["Null"] == {f"aws:ResourceTag/{BLACKHOLE_TAG}": "false"}
    assert by_sid["BlackholeTagOnCreate"]["Condition"]["StringEquals"]["ec2:CreateAction"] == "CreateNetworkAcl"
    assert "arn:aws:ec2:ap-south-1:111122223333:subnet/subnet-0example1" in by_sid["BlackholeAssociate"]["Resource"]


def test_what_the_settings_do_not_allow_is_not_in_the_policy() -> None:
    settings = replace(SETTINGS, aws=replace(DIRECT.aws, allowed_resources=("school-meals-db",),
                                            blackhole_subnets=False, allowed_regions=("ap-south-1", "eu-west-1")))
    policy = iam.iam_policy(settings)
    allowed = iam.allowed_actions(policy)
    assert "elasticache:TestFailover" not in allowed and "ec2:CreateNetworkAcl" not in allowed
    assert "rds:FailoverDBCluster" in allowed
    database = next(s for s in policy["Statement"] if s["Sid"] == "Database")
    assert len(database["Resource"]) == 2  # one ARN per allowed region


def test_the_generator_reads_a_settings_file(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "resilience.yaml"
    config.write_text("aws:\n  allowed_accounts: ['444455556666']\n  allowed_regions: [eu-west-1]\n"
                      "  region: eu-west-1\n  allowed_resources: [school-meals-db]\n")
    assert iam.main(["--config", str(config)]) == 0
    policy = json.loads(capsys.readouterr().out)
    assert any("arn:aws:rds:eu-west-1:444455556666:cluster:school-meals-db" in s["Resource"]
               for s in policy["Statement"])
    assert isinstance(AwsSettings().allowed_accounts, tuple)
