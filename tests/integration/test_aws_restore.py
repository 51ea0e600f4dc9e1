"""restore_database on the aws target, judged against FakeAws restores that behave as the RDS documentation says.

What the fake reproduces (tests/fakes/aws_restore.py), and where the documentation says so:
- https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_RestoreDBClusterToPointInTime.html:
  "Users can restore to any point in time before LatestRestorableTime for up to BackupRetentionPeriod days"
  (a time outside the window: InvalidRestoreFault, which the page lists among the errors); "For Aurora, this
  operation only restores the DB cluster, not the DB instances ... You can create DB instances only after
  the RestoreDBClusterToPointInTime operation has completed and the DB cluster is available";
  DBClusterAlreadyExistsFault: "User already has a DB cluster with the given identifier."
- https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PIT.html: the latest restorable time "is
  typically within 5 minutes of the current time".
- https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/accessing-monitoring.html and
  https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/accessing-monitoring.html#Overview.DBInstance.Status:
  a new cluster is `creating` then `available`; a new instance `creating`, `backing-up`, `available`.
- AccessDenied for a missing permission (403, https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/CommonErrors.html).
Durations are the fake's clock: a 600 s restore, a 300 s lag and a 480 s instance take about 2 s here.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import AwsSettings, Settings  # noqa: E402
from resilience.errors import UserError  # noqa: E402
from resilience.event_feed import EventFeed  # noqa: E402
from resilience.history import RECOVERY, History  # noqa: E402
from resilience.fault_registry import FaultCall, fault_call  # noqa: E402
from resilience.targets.aws.clients import AccessDenied  # noqa: E402
from resilience.targets.aws.nemesis import AwsNemesis  # noqa: E402
from resilience.targets.aws.restore import RdsRestore, read_posture, restored_name  # noqa: E402
from resilience.targets.aws.services import AwsServices  # noqa: E402
from resilience.targets.kubernetes.names import MANAGED_BY_LABEL, MANAGER  # noqa: E402
from tests.fakes.aws_platform import MOTO_ACCOUNT, provision  # noqa: E402
from tests.fakes.aws_services import FakeAws, use_fake_credentials  # noqa: E402

REGION = "ap-south-1"
ZONES = ("ap-south-1a", "ap-south-1b", "ap-south-1c")
SCALE = 0.003  # real seconds per fake second


class Switch:
    """The app's database Service, as kubernetes/db_switch.py moves it (the FakeKubeApi test is below)."""

    service = "school-meals-postgres"

    def __init__(self, host: str) -> None:
        self.host = host
        self.moves: list[str] = []

    def plan(self, host: str) -> list[str]:
        return [f"point the app at {host}"]

    def current_host(self) -> str:
        return self.host

    def point_at(self, host: str) -> str:
        before, self.host = self.host, host
        self.moves.append(host)
        return before

    def wait_serving(self) -> int:
        return 2  # the restarted app's pods, Ready


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAws]:
    with FakeAws(time_scale=SCALE) as aws:
        yield aws


@pytest.fixture
def platform(fake: FakeAws, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, Any]:
    use_fake_credentials(monkeypatch, REGION)
    suffix = request.node.name[-18:].replace("_", "-").strip("-").lower()
    made = provision(fake.url, REGION, ZONES, suffix)
    restored = restored_name(made.cluster)
    settings = Settings(aws=AwsSettings(allowed_accounts=(MOTO_ACCOUNT,), region=REGION, rds_cluster=made.cluster,
                                        elasticache_group=made.group, endpoint_url=fake.url, allowed_regions=(REGION,),
                                        allowed_resources=(made.cluster, made.group, restored)))
    services = AwsServices(settings, session=made.session)
    endpoint = services.cluster()["Endpoint"]
    return {"made": made, "settings": settings, "services": services, "restored": restored, "endpoint": endpoint}


def nemesis_for(platform: dict[str, Any], **aws: Any) -> tuple[AwsNemesis, Switch]:
    settings = platform["settings"]
    services = AwsServices(replace(settings, aws=replace(settings.aws, **aws)), session=platform["made"].session)
    switch = Switch(platform["endpoint"])
    nemesis = AwsNemesis(services, switch)  # type: ignore[arg-type]
    return nemesis, switch


def fast(nemesis: AwsNemesis, seen: list[tuple[str, str]] | None = None) -> None:
    """Poll every 50 ms (15 s on AWS), noting the restored cluster's and writer's states at each poll."""
    name = restored_name(nemesis.aws.rds_cluster)
    rds = nemesis.services.client("rds")

    def sleep(seconds: float) -> None:
        if seen is not None:
            for kind, read in (("cluster", lambda: rds.describe_db_clusters(DBClusterIdentifier=name)["DBClusters"][0]
                                ["Status"]),
                               ("instance", lambda: rds.describe_db_instances(DBInstanceIdentifier=f"{name}-1")[
                                   "DBInstances"][0]["DBInstanceStatus"])):
                try:
                    state = read()
                except Exception:
                    continue
                if not seen or seen[-1] != (kind, state):
                    seen.append((kind, state))
        time.sleep(0.05)
    nemesis.restorer = lambda **options: RdsRestore(nemesis.services, nemesis.services.recovery,  # type: ignore
                                                    poll_s=0.05, sleep=sleep, timeout_s=60)


def recovery_records(nemesis: AwsNemesis, origin: float) -> dict[str, Any]:
    """The restore's records as the run's history gets them (the event feed), by op (the last of each)."""
    history = History(origin_monotonic=origin)
    EventFeed(nemesis.services.events_since, history).poll()
    return {r.op: r for r in history.records if r.source == RECOVERY}


def restore(to: str, repo: int = 1) -> FaultCall:
    return fault_call("restore_database", {"to": to, "repo": repo})


def test_restore_to_latest_makes_a_tagged_cluster_through_the_documented_states_and_swaps_the_app(
        platform: dict[str, Any], fake: FakeAws) -> None:
    nemesis, switch = nemesis_for(platform)
    seen: list[tuple[str, str]] = []
    fast(nemesis, seen)
    recorded: list[Any] = []
    started = time.monotonic()
    step = nemesis.inject(restore("latest"), record=recorded.append)
    took = time.monotonic() - started
    name = platform["restored"]
    assert name == f"resilience-{platform['made'].cluster}-restored"
    rds = platform["made"].rds
    cluster = rds.describe_db_clusters(DBClusterIdentifier=name)["DBClusters"][0]
    assert cluster["Status"] == "available" and {"Key": MANAGED_BY_LABEL, "Value": MANAGER} in cluster["TagList"]
    # Aurora: the restore made the cluster only; the harness created its writer once the cluster was available
    assert ("cluster", "creating") in seen and ("instance", "creating") in seen and ("instance", "backing-up") in seen
    assert seen.index(("cluster", "available")) < seen.index(("instance", "creating"))
    assert took >= (600 + 420 + 60) * SCALE * 0.9  # the fake's minutes, scaled
    assert fake.restores.restored[name].use_latest
    # the app now uses the restored cluster; the step says how to undo it, handed over before acting
    assert switch.moves == [cluster["Endpoint"]] and step.arguments["previous_host"] == platform["endpoint"]
    assert recorded[0].arguments == {"restored_cluster": name, "swapped": False} and recorded[-1] == step
    ops = nemesis.services.recovery.ops()
    assert ops == ["target", "decide", "restore-start", "restore-done", "replay-done", "cluster-whole", "swap",
                   "serving"]
    records = recovery_records(nemesis, started)
    assert records["target"].detail["kind"] == "latest" and records["target"].detail["target_t"] is None
    assert records["restore-done"].status == "ok" and records["restore-done"].detail["seconds"] > 0
    assert records["replay-done"].detail["outcome"] == "latest" and records["replay-done"].detail["wal_reported"] is False
    assert records["cluster-whole"].detail == {"members": 1, "leader": f"{name}-1"}
    assert isinstance(records["restore-start"].detail["backup_stop_t"], float)
    assert records["replay-done"].detail["replayed_to_t"] <= records["restore-start"].t  # RDS's latest, lagging
    assert records["serving"].t >= records["swap"].t > records["cluster-whole"].t > records["restore-start"].t
    assert records["serving"].detail == {"ready_replicas": 2}

    nemesis.rollback(step)  # the app back on the source, the restored cluster and its writer deleted
    assert switch.host == platform["endpoint"]
    assert name not in {c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"]}
    nemesis.rollback(step)  # safe twice


def test_before_the_fault_waits_for_latest_restorable_time_then_restores_to_the_second_before_it(
        platform: dict[str, Any], fake: FakeAws) -> None:
    nemesis, _ = nemesis_for(platform, keep_restored=True)
    fast(nemesis)
    time.sleep(1.0)  # the cluster is older than the fault
    fault = datetime.now(timezone.utc)
    nemesis.last_fault_utc = fault
    started = time.monotonic()
    step = nemesis.inject(restore("before-fault"))
    restored = fake.restores.restored[platform["restored"]]
    # RestoreToTime in whole seconds: the last whole second before the fault (its own second may hold it)
    expected = fault.replace(microsecond=0) if fault.microsecond else fault - timedelta(seconds=1)
    assert restored.restore_time == expected.replace(tzinfo=None)
    assert not restored.use_latest
    assert time.monotonic() - started >= 300 * SCALE - 1.0  # LatestRestorableTime lags by 300 fake s
    records = recovery_records(nemesis, started)
    assert records["target"].detail["kind"] == "time" and records["replay-done"].detail["outcome"] == "reached"
    assert records["target"].detail["target_t"] < 0  # the target is before the run's origin here (the fault's second)
    assert records["restore-start"].detail["backup_age_s"] is not None
    nemesis.rollback(step)  # aws.keep_restored: the app is back, the restored cluster stays
    rds = platform["made"].rds
    assert platform["restored"] in {c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"]}


def test_rds_refuses_a_time_outside_the_window_and_the_harness_checks_it_first(platform: dict[str, Any]) -> None:
    rds, cluster = platform["made"].rds, platform["made"].cluster
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError, match="InvalidRestoreFault"):  # now is after LatestRestorableTime
        rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier="x-now", SourceDBClusterIdentifier=cluster,
                                                RestoreToTime=datetime.now(timezone.utc))
    with pytest.raises(ClientError, match="InvalidRestoreFault"):  # before the cluster existed
        rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier="x-old", SourceDBClusterIdentifier=cluster,
                                                RestoreToTime=datetime.now(timezone.utc) - timedelta(days=2))
    nemesis, switch = nemesis_for(platform)
    fast(nemesis)
    nemesis.last_fault_utc = datetime.now(timezone.utc) - timedelta(days=2)
    with pytest.raises(UserError, match="EarliestRestorableTime"):
        nemesis.inject(restore("before-fault"))
    assert switch.moves == []
    nemesis.last_fault_utc = None
    with pytest.raises(UserError, match="to=latest"):
        nemesis.inject(restore("before-fault"))


def test_a_restore_into_an_existing_identifier_conflicts(platform: dict[str, Any]) -> None:
    rds, cluster = platform["made"].rds, platform["made"].cluster
    rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier=platform["restored"], SourceDBClusterIdentifier=cluster,
                                            UseLatestRestorableTime=True)
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError, match="DBClusterAlreadyExistsFault"):
        rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier=platform["restored"],
                                                SourceDBClusterIdentifier=cluster, UseLatestRestorableTime=True)
    nemesis, switch = nemesis_for(platform)
    fast(nemesis)
    with pytest.raises(UserError, match="already exists"):
        nemesis.inject(restore("latest"))
    assert switch.moves == []
    assert recovery_records(nemesis, 0.0)["restore-done"].status == "fail"
    with pytest.raises(UserError, match="does not carry the tag"):  # made without our tag: never deleted
        nemesis.restorer().delete(platform["restored"])


def test_instances_join_a_restored_cluster_only_once_it_is_available(platform: dict[str, Any]) -> None:
    rds, cluster = platform["made"].rds, platform["made"].cluster
    rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier="early-join", SourceDBClusterIdentifier=cluster,
                                            UseLatestRestorableTime=True)
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError, match="InvalidDBClusterStateFault"):
        rds.create_db_instance(DBInstanceIdentifier="early-join-1", DBClusterIdentifier="early-join",
                               Engine="aurora-postgresql", DBInstanceClass="db.r6g.large")


def test_a_missing_permission_is_access_denied_naming_the_action(platform: dict[str, Any], fake: FakeAws) -> None:
    nemesis, switch = nemesis_for(platform)
    fast(nemesis)
    fake.refusals.add("RestoreDBClusterToPointInTime", "AccessDenied")
    with pytest.raises(AccessDenied, match="rds:RestoreDBClusterToPointInTime"):
        nemesis.inject(restore("latest"))
    assert switch.moves == []
    assert recovery_records(nemesis, 0.0)["restore-done"].status == "fail"


def test_refusals_name_the_allow_list_and_the_second_region(platform: dict[str, Any]) -> None:
    nemesis, _ = nemesis_for(platform, allowed_resources=(platform["made"].cluster,))
    assert "aws.allowed_resources" in (nemesis.argument_refusal(restore("latest")) or "")
    assert platform["restored"] in (nemesis.argument_refusal(restore("latest")) or "")
    nemesis, _ = nemesis_for(platform)
    assert nemesis.argument_refusal(restore("latest")) is None
    assert "repo 1 only" in (nemesis.argument_refusal(restore("latest", repo=2)) or "")
    no_app = AwsNemesis(nemesis.services)  # no EKS platform to swap the app on
    assert "ExternalName" in (no_app.argument_refusal(restore("latest")) or "")
    plan = "\n".join(nemesis.plan(restore("before-fault")))
    assert "RestoreDBClusterToPointInTime" in plan and "CreateDBInstance" in plan and "rollback undo_restore" in plan


def test_posture_shows_retention_the_lagging_window_and_no_cross_region_copy(platform: dict[str, Any]) -> None:
    time.sleep(1.2)
    posture = read_posture(platform["services"])
    assert posture.retention_days >= 1 and posture.earliest is not None and posture.latest is not None
    assert posture.lag_s is not None and 300 * SCALE * 0.8 <= posture.lag_s <= 300 * SCALE + 1.0
    assert set(posture.replications) == {f"{platform['made'].cluster}-1", f"{platform['made'].cluster}-2"}
    assert any("cross-region" in p for p in posture.problems)
    status = platform["services"].components_status()
    assert status.detail["backups"]["backup_retention_days"] == posture.retention_days


def test_the_swap_moves_the_external_name_service_and_restarts_the_app() -> None:
    from tests.fakes.kube_api import FakeKubeApi
    from tests.fakes.kube.testing import api_client, deployment, namespace
    from resilience.targets.kubernetes.db_switch import RESTARTED_AT, ExternalNameSwitch
    with FakeKubeApi() as kube:
        api = api_client(kube)
        from kubernetes import client
        client.CoreV1Api(api).create_namespace(namespace("meals"))
        client.CoreV1Api(api).create_namespaced_service("meals", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "school-meals-postgres"},
            "spec": {"type": "ExternalName", "externalName": "old.cluster.example"}})
        client.AppsV1Api(api).create_namespaced_deployment("meals", deployment("school-meals-api", 2))

        class Platform:
            namespace = "meals"

            def core(self) -> Any:
                return client.CoreV1Api(api)
        switch = ExternalNameSwitch(Platform())
        assert switch.point_at("new.cluster.example") == "old.cluster.example"
        assert kube.get("services", "school-meals-postgres", "meals")["spec"]["externalName"] == "new.cluster.example"
        template = kube.get("deployments", "school-meals-api", "meals")["spec"]["template"]
        assert RESTARTED_AT in template["metadata"]["annotations"]
        assert switch.current_host() == "new.cluster.example"


def test_a_restore_in_progress_does_not_block_reads_of_the_source(platform: dict[str, Any]) -> None:
    """The source stays available while RDS restores (a new cluster; nothing is overwritten)."""
    nemesis, _ = nemesis_for(platform, keep_restored=True)
    fast(nemesis)
    states: list[str] = []
    worker = threading.Thread(target=lambda: nemesis.inject(restore("latest")))
    worker.start()
    while worker.is_alive():
        states.append(platform["services"].cluster()["Status"])
        time.sleep(0.1)
    worker.join()
    assert set(states) == {"available"}


def test_on_the_composed_aws_target_the_restore_moves_the_eks_apps_service_and_back(
        platform: dict[str, Any], fake: FakeAws) -> None:
    """The aws composition routes restore_database to the aws nemesis, built from the EKS platform: the app's
    ExternalName Service on the (fake) cluster points at the restored endpoint, then back on rollback."""
    from kubernetes import client
    from resilience.config import KubernetesSettings
    from resilience.targets.aws.nemesis import AwsNemesis as Nemesis
    from resilience.targets.base import Build
    from resilience.targets.kubernetes.exposure import external_service_manifests
    from resilience.targets.kubernetes.nemesis import KubernetesNemesis
    from resilience.targets.kubernetes.names import BackendEndpoints
    from resilience.targets.kubernetes.platform import KubernetesPlatform
    from resilience.targets.target import COMPOSITIONS, support_of
    from tests.fakes.kube.testing import api_client, deployment, namespace
    from tests.fakes.kube_api import FakeKubeApi
    composition = COMPOSITIONS["aws"]
    assert composition.nemesis_names("restore_database") == ("aws",)
    support = support_of(composition, {"kubernetes": KubernetesNemesis, "aws": Nemesis})
    assert support["restore_database"] is None and "SQL" in (support["corrupt_orders"] or "")
    settings = replace(platform["settings"], kubernetes=replace(KubernetesSettings(), allowed_contexts=("eks",)))
    with FakeKubeApi() as kube:
        api = api_client(kube)
        ns = settings.kubernetes.namespace
        client.CoreV1Api(api).create_namespace(namespace(ns))
        for service in external_service_manifests(ns, BackendEndpoints(platform["endpoint"], "cache.example")):
            client.CoreV1Api(api).create_namespaced_service(ns, service)
        client.AppsV1Api(api).create_namespaced_deployment(ns, deployment("school-meals-api", 2))
        eks = KubernetesPlatform(settings, "eks", api_client=api)
        services = AwsServices(settings, session=platform["made"].session)
        nemesis = Nemesis.build(Build(settings, context="eks", services={"aws": services}, platform=eks))
        assert nemesis.switch is not None
        fast(nemesis)
        step = nemesis.inject(restore("latest"))
        external = kube.get("services", "school-meals-postgres", ns)["spec"]["externalName"]
        assert external == step.arguments["endpoint"] != platform["endpoint"]
        assert [e.op for e in eks.events_since(0.0) if e.source == "recovery"] == []  # the aws services keep them
        ops = [e.op for e in services.events_since(0.0) if e.source == "recovery"]
        assert ops[-2:] == ["swap", "serving"]  # the fake's Deployment counts as rolled out at once
        nemesis.rollback(step)
        assert kube.get("services", "school-meals-postgres", ns)["spec"]["externalName"] == platform["endpoint"]


def test_a_multi_az_db_cluster_restores_with_its_own_instances(platform: dict[str, Any], fake: FakeAws) -> None:
    """A Multi-AZ DB cluster (engine postgres, DBClusterInstanceClass) restores its writer and two readable standbys
    itself: the harness creates no instance, passes the source's class and storage, and waits for the writer."""
    rds = platform["made"].rds
    source = "maz-" + platform["made"].cluster
    rds.create_db_cluster(DBClusterIdentifier=source, Engine="postgres", DBClusterInstanceClass="db.m6gd.large",
                          StorageType="io1", Iops=1000, AllocatedStorage=100, MasterUsername="app",
                          MasterUserPassword="not-a-secret-1")
    restored = restored_name(source)
    nemesis, switch = nemesis_for(platform, rds_cluster=source, allowed_resources=(source, restored))
    fast(nemesis)
    fake.refusals.calls.clear()
    step = nemesis.inject(restore("latest"))
    assert fake.refusals.calls["CreateDBInstance"] == 0
    members = rds.describe_db_clusters(DBClusterIdentifier=restored)["DBClusters"][0]["DBClusterMembers"]
    assert {m["DBInstanceIdentifier"] for m in members} == {f"{restored}-instance-{i}" for i in (1, 2, 3)}
    assert step.arguments["writer"] in {m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"]}
    assert switch.moves == [step.arguments["endpoint"]]
    records = recovery_records(nemesis, 0.0)
    assert records["restore-done"].detail["bytes"] == 100 * 1024 ** 3  # AllocatedStorage of the restored cluster
    nemesis.rollback(step)
    assert restored not in {c["DBClusterIdentifier"] for c in rds.describe_db_clusters()["DBClusters"]}
