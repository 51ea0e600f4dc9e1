"""Network faults on the aws target: AWS FIS experiments of the EKS pod network actions, against FakeAws' FIS
(tests/fakes/aws_fis.py, aws_fis_eks.py) acting on a fake EKS cluster's pods (FakeKubeApi) and the modelled
API <-> database path (tests/fakes/netpath_app.py).

What the fakes follow (cited):
- https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html (EKS actions):
  `aws:eks:pod-network-latency` (delayMilliseconds, jitterMilliseconds, sources, duration,
  kubernetesServiceAccount), `aws:eks:pod-network-packet-loss` (lossPercent 0..100, ...), the target type
  `aws:eks:pod` (clusterIdentifier, namespace, selectorType, selectorValue, targetContainerName);
- https://docs.aws.amazon.com/fis/latest/userguide/eks-pod-actions.html: the FIS pod runs as the Kubernetes
  ServiceAccount the action names (its Role: pods, pods/ephemeralcontainers, pods/exec, configmaps,
  deployments get), the ephemeral container reverts the pod's network when the action ends or stops;
- https://docs.aws.amazon.com/fis/latest/userguide/monitoring-experiments.html ("Experiment states"):
  pending, initiating, running, completed / stopping, stopped / failed; "Target resolution returned empty set";
- https://docs.aws.amazon.com/fis/latest/APIReference/API_CreateExperimentTemplate.html: ValidationException.
The effect is measured on the path through the API's probe endpoint; a fault FIS did not apply is never seen.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import AwsSettings, Settings  # noqa: E402
from resilience.errors import HarnessError, UserError  # noqa: E402
from resilience.fault_registry import fault_call  # noqa: E402
from resilience.targets.aws.fis_network import LATENCY, LOSS, pod_network, rbac_manifests  # noqa: E402
from resilience.targets.aws.nemesis import AwsNemesis  # noqa: E402
from resilience.targets.aws.services import AwsServices  # noqa: E402
from resilience.targets.base import RollbackStep  # noqa: E402
from resilience.targets.kubernetes.db_switch import ExternalNameSwitch  # noqa: E402
from tests.fakes.aws_fis_eks import EksCluster  # noqa: E402
from tests.fakes.aws_platform import MOTO_ACCOUNT, AwsPlatform, provision  # noqa: E402
from tests.fakes.aws_services import FakeAws, use_fake_credentials  # noqa: E402
from tests.fakes.kube.testing import api_client, deployment, namespace  # noqa: E402
from tests.fakes.kube_api import FakeKubeApi  # noqa: E402
from tests.fakes.netpath_app import FakePathApp, PathState  # noqa: E402
from tests.fakes.waiting import wait_for  # noqa: E402

REGION = "ap-south-1"
ZONES = ("ap-south-1a", "ap-south-1b", "ap-south-1c")
ROLE = f"arn:aws:iam::{MOTO_ACCOUNT}:role/resilience-fis"
NS = "school-meals"
EKS = "meals-eks"
APP_LABELS = {"app.kubernetes.io/name": "school-meals-api"}


class Platform:
    """What the aws nemesis uses of the EKS platform (through ExternalNameSwitch): namespace, core(), url()."""

    def __init__(self, kube: FakeKubeApi, app: FakePathApp) -> None:
        self.namespace = NS
        self._api = api_client(kube)
        self.app = app

    def core(self) -> Any:
        from kubernetes import client
        return client.CoreV1Api(self._api)

    def url(self) -> str:
        return self.app.url


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAws]:
    with FakeAws(time_scale=0.01) as server:
        yield server


@pytest.fixture
def made(fake: FakeAws, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> AwsPlatform:
    use_fake_credentials(monkeypatch, REGION)
    import hashlib
    suffix = "n" + hashlib.sha1(request.node.name.encode()).hexdigest()[:12]
    return provision(fake.url, REGION, ZONES, suffix, cache_zones=[ZONES[1], ZONES[2]])


@pytest.fixture
def path() -> PathState:
    return PathState()


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(time_scale=0.01) as served:
        from kubernetes import client
        api = api_client(served)
        client.CoreV1Api(api).create_namespace(namespace(NS))
        client.CoreV1Api(api).create_namespaced_service_account(NS, rbac_manifests(NS, "fis-experiment")[0])
        client.AppsV1Api(api).create_namespaced_deployment(NS, deployment("school-meals-api", 2, labels=APP_LABELS))
        yield served


@pytest.fixture
def app(path: PathState) -> Iterator[FakePathApp]:
    with FakePathApp(path, base_ms=5.0, db_timeout_s=0.3) as served:
        yield served


@pytest.fixture
def eks(fake: FakeAws, made: AwsPlatform, kube: FakeKubeApi, path: PathState) -> Iterator[EksCluster]:
    endpoint = made.rds.describe_db_clusters(DBClusterIdentifier=made.cluster)["DBClusters"][0]["Endpoint"]
    cluster = EksCluster(EKS, kube, path, db_hosts=(endpoint,))
    fake.fis.eks[EKS] = cluster
    yield cluster
    fake.fis.eks.pop(EKS, None)


def nemesis(fake: FakeAws, made: AwsPlatform, kube: FakeKubeApi, app: FakePathApp, **aws: Any) -> AwsNemesis:
    settings = Settings(aws=replace(AwsSettings(
        allowed_accounts=(MOTO_ACCOUNT,), region=REGION, rds_cluster=made.cluster, elasticache_group=made.group,
        endpoint_url=fake.url, allowed_regions=(REGION,), allowed_resources=(made.cluster, made.group),
        fis_role_arn=ROLE, eks_cluster=EKS), **aws))
    return AwsNemesis(AwsServices(settings, session=made.session), ExternalNameSwitch(Platform(kube, app)))


def experiment(made: AwsPlatform, fake: FakeAws, step: RollbackStep) -> dict[str, Any]:
    fis = made.session.client("fis", endpoint_url=fake.url)
    return dict(fis.get_experiment(id=step.arguments["experiment_id"])["experiment"])


def test_delay_is_a_fis_pod_latency_experiment_measured_on_the_path(
        fake: FakeAws, made: AwsPlatform, kube: FakeKubeApi, app: FakePathApp, path: PathState, eks: EksCluster) -> None:
    aws = nemesis(fake, made, kube, app)
    call = fault_call("delay_network", {"delay_ms": 150, "jitter_ms": 10})
    assert aws.argument_refusal(call) is None
    recorded: list[RollbackStep] = []
    step = aws.inject(call, record=recorded.append)
    assert recorded[0].arguments["experiment_id"] is None  # the template is in rollback.json before the start
    assert step.capability == "stop_fis_delay" and step.arguments["actions"] == [LATENCY]
    template = made.session.client("fis", endpoint_url=fake.url).get_experiment_template(
        id=step.arguments["template_id"])["experimentTemplate"]
    action = template["actions"]["network"]
    assert action["parameters"]["delayMilliseconds"] == "150" and action["parameters"]["jitterMilliseconds"] == "10"
    assert action["parameters"]["kubernetesServiceAccount"] == "fis-experiment"
    assert action["parameters"]["sources"].split(",")[0] in eks.db_hosts and action["parameters"]["duration"] == "PT900S"
    target = template["targets"]["api-pods"]
    assert target["resourceType"] == "aws:eks:pod" and target["parameters"] == {
        "clusterIdentifier": EKS, "namespace": NS, "selectorType": "labelSelector",
        "selectorValue": "app.kubernetes.io/name=school-meals-api", "targetContainerName": "api"}
    assert eks.fis_pods == [f"{NS}/fis-experiment"]
    effect = aws.effect(call, step)
    assert effect is not None and not effect.in_call
    seen = wait_for(effect.look, timeout_s=20, what="the delay measured on the path")
    assert seen["injected_rtt_ms"] >= 75 and seen["mechanism"] == "aws-fis"
    aws.rollback(step)
    assert experiment(made, fake, step)["state"]["status"] == "stopped" and not path.faulty
    aws.rollback(RollbackStep(**step.to_json()))  # twice, and from rollback.json's form


def test_loss_and_blackhole_are_packet_loss_experiments(
        fake: FakeAws, made: AwsPlatform, kube: FakeKubeApi, app: FakePathApp, path: PathState, eks: EksCluster) -> None:
    aws = nemesis(fake, made, kube, app)
    loss = fault_call("drop_packets", {"percent": 40})
    step = aws.inject(loss)
    assert step.arguments["actions"] == [LOSS]
    effect = aws.effect(loss, step)
    assert effect is not None
    assert wait_for(effect.look, timeout_s=30, what="lost packets on the path")["slow_or_lost"] > 0
    aws.rollback(step)
    assert not path.faulty

    hole = fault_call("blackhole_network", {})
    step = aws.inject(hole)
    effect = aws.effect(hole, step)
    assert effect is not None
    assert wait_for(effect.look, timeout_s=30, what="no answer on the path")["during"]["answered"] == 0
    aws.rollback(step)
    assert not path.faulty


def test_fis_reverts_by_itself_when_the_action_ends(
        fake: FakeAws, made: AwsPlatform, kube: FakeKubeApi, app: FakePathApp, path: PathState, eks: EksCluster) -> None:
    aws = nemesis(fake, made, kube, app, fis_duration_s=60)  # 0.6 s on the fake clock
    step = aws.inject(fault_call("delay_network", {"delay_ms": 100}))
    wait_for(lambda: experiment(made, fake, step)["state"]["status"] == "completed", timeout_s=20,
             what="the experiment to complete")
    assert not path.faulty
    aws.rollback(step)  # deletes the template


def test_no_matching_pod_fails_the_experiment_and_leaves_nothing(
        fake: FakeAws, made: AwsPlatform, kube: FakeKubeApi, app: FakePathApp, path: PathState, eks: EksCluster) -> None:
    from kubernetes import client
    client.AppsV1Api(api_client(kube)).delete_namespaced_deployment("school-meals-api", NS)
    for pod in kube.objects("pods", NS):
        client.CoreV1Api(api_client(kube)).delete_namespaced_pod(pod["metadata"]["name"], NS, grace_period_seconds=0)
    aws = nemesis(fake, made, kube, app)
    with pytest.raises(HarnessError, match="Target resolution returned empty set"):
        aws.inject(fault_call("delay_network", {"delay_ms": 100}))
    assert not path.faulty


def test_a_missing_service_account_is_refused_before_any_template(
        fake: FakeAws, made: AwsPlatform, kube: FakeKubeApi, app: FakePathApp, eks: EksCluster) -> None:
    aws = nemesis(fake, made, kube, app, fis_kubernetes_service_account="nobody")
    with pytest.raises(UserError, match="ServiceAccount school-meals/nobody"):
        aws.inject(fault_call("drop_packets", {"percent": 5}))


def test_refusals_reject_chaosaws_and_no_cluster() -> None:
    why = AwsNemesis.support()["reject_network"]
    assert why is not None and "FIS has no action that resets connections" in why
    from resilience.targets import composition
    assert composition("aws").nemesis_names("delay_network") == ("aws",)


def test_settings_refusals(fake: FakeAws, made: AwsPlatform, kube: FakeKubeApi, app: FakePathApp) -> None:
    call = fault_call("delay_network", {"delay_ms": 100})
    assert "aws.eks_cluster" in (nemesis(fake, made, kube, app, eks_cluster=None).argument_refusal(call) or "")
    assert "aws.injection" in (nemesis(fake, made, kube, app, injection="chaosaws").argument_refusal(call) or "")
    plan = "\n".join(nemesis(fake, made, kube, app).plan(call))
    assert "aws:eks:pod-network-latency" in plan and "serviceaccounts/fis-experiment" in plan


@pytest.mark.parametrize("change, message", [
    ({"targets": {"api-pods": {"resourceType": "aws:eks:pod", "selectionMode": "ALL",
                               "parameters": {"clusterIdentifier": EKS, "namespace": NS}}}}, "requires the parameter selectorType"),
    ({"parameters": {"duration": "PT5M", "lossPercent": "140"}}, "kubernetesServiceAccount"),
    ({"parameters": {"duration": "PT5M", "kubernetesServiceAccount": "sa", "lossPercent": "140"}}, "from 0 to 100"),
])
def test_the_fake_refuses_eks_templates_the_api_refuses(fake: FakeAws, made: AwsPlatform, change: dict[str, Any],
                                                        message: str) -> None:
    actions, targets = pod_network(fault_call("drop_packets", {"percent": 5}), EKS, NS, "sa", ["db"], 300)
    if "targets" in change:
        targets = change["targets"]
    if "parameters" in change:
        actions["network"]["parameters"] = change["parameters"]
    with pytest.raises(ClientError) as info:
        made.session.client("fis", endpoint_url=fake.url).create_experiment_template(
            clientToken="t", description="d", roleArn=ROLE, stopConditions=[{"source": "none"}], actions=actions,
            targets=targets, tags={"k": "v"})
    assert info.value.response["Error"]["Code"] == "ValidationException" and message in str(info.value)


def test_rbac_is_what_the_fis_user_guide_lists() -> None:
    account, role, binding = rbac_manifests(NS, "fis-experiment")
    assert account["kind"] == "ServiceAccount" and role["kind"] == "Role"
    rules = {(tuple(r["apiGroups"]), r["resources"][0]): set(r["verbs"]) for r in role["rules"]}
    assert rules[(("",), "pods/ephemeralcontainers")] == {"update"}
    assert rules[(("",), "pods")] >= {"create", "get", "list", "delete"}
    assert {"kind": "User", "name": "fis-experiment", "apiGroup": "rbac.authorization.k8s.io"} in binding["subjects"]


def test_an_experiment_that_runs_but_misses_the_path_is_never_seen(
        fake: FakeAws, made: AwsPlatform, kube: FakeKubeApi, app: FakePathApp, path: PathState, eks: EksCluster) -> None:
    """FIS reports `running`, but its sources are not the hosts the API talks to (here: the fake cluster's database
    is elsewhere): the path is unchanged, so the effect is not seen and the run would be inconclusive."""
    eks.db_hosts = ("elsewhere.example.internal",)
    aws = nemesis(fake, made, kube, app)
    call = fault_call("delay_network", {"delay_ms": 100})
    step = aws.inject(call)
    assert experiment(made, fake, step)["state"]["status"] == "running"
    effect = aws.effect(call, step)
    assert effect is not None and effect.look() is None and not path.faulty
    aws.rollback(step)
