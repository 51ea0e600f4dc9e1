"""restore_database on Kubernetes: a CloudNativePG recovery Cluster through the official client, against the fake
API server's CloudNativePG operator (tests/fakes/kube/cnpg.py), which follows the documentation:

- https://cloudnative-pg.io/documentation/current/recovery/: the recovery "must be performed on a new
  cluster", bootstrapped with `bootstrap.recovery` from an `externalClusters` entry (its `barmanObjectStore`
  and `serverName`); `recoveryTarget.targetTime` stops the replay at a time, without a target it runs to the
  end of the WAL archive;
- https://cloudnative-pg.io/documentation/current/cloudnative-pg.v1/ (API reference): `status.phase` "Setting
  up primary", "Creating a new replica", "Cluster in healthy state"; `status.readyInstances`,
  `status.currentPrimary`, `status.firstRecoverabilityPoint`; RecoveryTarget.targetTime in RFC 3339;
- a group the API server does not serve answers 404 to discovery (the CRDs are absent until installed).
Durations are the fake's clock: a 300 s recovery and two 60 s replicas take about a second here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from resilience.config import KubernetesSettings, Settings  # noqa: E402
from resilience.errors import UserError  # noqa: E402
from resilience.event_feed import EventFeed  # noqa: E402
from resilience.history import RECOVERY, History  # noqa: E402
from resilience.fault_registry import FaultCall  # noqa: E402
from resilience.targets.kubernetes.cnpg import HEALTHY, CnpgRestore, recovery_manifest, restored_name  # noqa: E402
from resilience.targets.kubernetes.manifests import cloudnative_pg_cluster, deployment_manifest  # noqa: E402
from resilience.targets.kubernetes.nemesis import KubernetesNemesis  # noqa: E402
from resilience.targets.recovery_log import RecoveryLog  # noqa: E402
from tests.fakes.kube.testing import api_client, namespace  # noqa: E402
from tests.fakes.kube_api import ApiError, FakeKubeApi  # noqa: E402

NS = "school-meals"
STORE = {"destinationPath": "s3://meals-backups/cnpg", "s3Credentials": {"inheritFromIAMRole": True},
         "wal": {"compression": "gzip"}}


class Platform:
    """What the kubernetes nemesis and cnpg.py use of KubernetesPlatform."""

    def __init__(self, fake: FakeKubeApi, settings: Settings) -> None:
        self.settings = settings
        self.namespace = NS
        self.recovery = RecoveryLog()
        self._api = api_client(fake)

    def core(self) -> Any:
        from kubernetes import client
        return client.CoreV1Api(self._api)


@pytest.fixture
def kube() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(time_scale=0.002) as fake:
        yield fake


def settings(database: str = "cloudnativepg", keep: bool = False) -> Settings:
    return Settings(kubernetes=replace(KubernetesSettings(), database=database, namespace=NS, keep_restored=keep))


def cluster_with_backups(s: Settings) -> dict[str, Any]:
    return cloudnative_pg_cluster(s, backup_destination=STORE["destinationPath"])


def prepare(kube: FakeKubeApi, s: Settings, installed: bool = True, backups: bool = True) -> Platform:
    from kubernetes import client
    platform = Platform(kube, s)
    api = platform.core().api_client
    client.CoreV1Api(api).create_namespace(namespace(NS))
    client.AppsV1Api(api).create_namespaced_deployment(NS, deployment_manifest(s, "in-cluster"))
    if installed:
        operator = kube.install_cnpg()
        source = cluster_with_backups(s) if backups else cloudnative_pg_cluster(s)
        client.CustomObjectsApi(api).create_namespaced_custom_object("postgresql.cnpg.io", "v1", NS, "clusters",
                                                                     source)
        hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        operator.set_backups(NS, source["metadata"]["name"], hour_ago, hour_ago)
    return platform


def fast(restore: CnpgRestore) -> CnpgRestore:
    restore.poll_s, restore.timeout_s = 0.05, 30.0
    return restore


def app_database(kube: FakeKubeApi) -> tuple[str, set[str]]:
    """The host in the app's RSL_PG_DSN and the secrets its PostgreSQL credentials come from."""
    env = kube.get("deployments", "school-meals-api", NS)["spec"]["template"]["spec"]["containers"][0]["env"]
    dsn = next(e["value"] for e in env if e["name"] == "RSL_PG_DSN")
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"] in ("RSL_PG_USER", "RSL_PG_PASSWORD")}
    return dsn.split("//", 1)[1].split(":", 1)[0], secrets


def nemesis_for(platform: Platform) -> KubernetesNemesis:
    nemesis = KubernetesNemesis(platform)  # type: ignore[arg-type]
    return nemesis


def test_without_cloudnativepg_crds_the_restore_is_refused_with_the_reason(kube: FakeKubeApi) -> None:
    platform = prepare(kube, settings(), installed=False)
    restore = fast(CnpgRestore(platform, platform.recovery))
    assert "CRDs are absent" in (restore.refusal() or "")
    with pytest.raises(UserError, match="CloudNativePG is not installed"):
        restore.run("latest", None)
    assert kube.objects("clusters") == []


def test_a_recovery_to_before_the_fault_is_a_new_cluster_through_the_documented_phases_then_the_app_moves(
        kube: FakeKubeApi) -> None:
    s = settings()
    platform = prepare(kube, s)
    nemesis = nemesis_for(platform)
    assert nemesis.argument_refusal(FaultCall("restore_database", {"to": "before-fault", "repo": 1})) is None
    nemesis.last_fault_utc = fault = datetime.now(timezone.utc)
    from resilience.targets.kubernetes.faults import restore_database as module
    module_restorer = module.restorer
    module.restorer = lambda n: fast(module_restorer(n))  # type: ignore[assignment]
    try:
        recorded: list[Any] = []
        step = nemesis.inject(FaultCall("restore_database", {"to": "before-fault", "repo": 1}),
                              record=recorded.append)
        name = restored_name()
        made = kube.get("clusters", name, NS)
        recovery = made["spec"]["bootstrap"]["recovery"]
        expected = fault.replace(microsecond=0) if fault.microsecond else fault - timedelta(seconds=1)
        assert recovery["recoveryTarget"]["targetTime"] == expected.strftime("%Y-%m-%dT%H:%M:%SZ")
        origin = made["spec"]["externalClusters"][0]
        assert recovery["source"] == origin["name"] and origin["barmanObjectStore"]["serverName"] == "school-meals-db"
        assert origin["barmanObjectStore"]["destinationPath"] == STORE["destinationPath"]
        assert made["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "resilience"
        assert kube.cnpg is not None and kube.cnpg.phases[name] == [
            "Setting up primary", "Creating a new replica", "Creating a new replica", HEALTHY]
        assert app_database(kube) == (f"{name}-rw", {f"{name}-app"})
        assert recorded[0].arguments["swapped"] is False and recorded[-1] == step
        assert platform.recovery.ops() == ["target", "decide", "restore-start", "restore-done", "replay-done",
                                           "cluster-whole", "swap", "serving"]
        history = History(origin_monotonic=0.0)
        EventFeed(platform.recovery.since, history).poll()
        records = {r.op: r for r in history.records if r.source == RECOVERY}
        assert records["cluster-whole"].status == "ok"
        assert records["cluster-whole"].detail == {"members": 3, "leader": f"{name}-1"}
        assert records["replay-done"].detail["outcome"] == "reached"
        assert isinstance(records["target"].detail["target_t"], float)

        nemesis.rollback(step)  # the app back on the source, the recovery Cluster deleted
        assert app_database(kube) == ("school-meals-db-rw", {"school-meals-db-app"})
        assert kube.get("clusters", name, NS) is None
        nemesis.rollback(step)  # safe twice
    finally:
        module.restorer = module_restorer  # type: ignore[assignment]


def test_latest_has_no_recovery_target_and_a_second_restore_conflicts(kube: FakeKubeApi) -> None:
    platform = prepare(kube, settings())
    fast(CnpgRestore(platform, platform.recovery)).run("latest", None)
    assert "recoveryTarget" not in kube.get("clusters", restored_name(), NS)["spec"]["bootstrap"]["recovery"]
    with pytest.raises(UserError, match="already exists"):
        fast(CnpgRestore(platform, platform.recovery)).run("latest", None)
    assert [e.detail["status"] for e in platform.recovery.since(0.0) if e.op == "restore-done"] == ["ok", "fail"]


def test_a_cluster_without_backups_is_refused(kube: FakeKubeApi) -> None:
    platform = prepare(kube, settings(), backups=False)
    with pytest.raises(UserError, match="barmanObjectStore"):
        fast(CnpgRestore(platform, platform.recovery)).run("latest", None)
    assert kube.get("clusters", restored_name(), NS) is None


def test_a_target_older_than_the_backups_is_refused(kube: FakeKubeApi) -> None:
    platform = prepare(kube, settings())
    with pytest.raises(UserError, match="first recoverability point"):
        fast(CnpgRestore(platform, platform.recovery)).run("before-fault",
                                                           datetime.now(timezone.utc) - timedelta(days=1))
    assert kube.get("clusters", restored_name(), NS) is None


def test_the_operator_webhook_refuses_a_recovery_from_an_undefined_source(kube: FakeKubeApi) -> None:
    platform = prepare(kube, settings())
    manifest = recovery_manifest(cluster_with_backups(settings()), "bad", NS, None)
    manifest["spec"]["externalClusters"] = []
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    with pytest.raises(ApiException) as info:
        client.CustomObjectsApi(platform.core().api_client).create_namespaced_custom_object(
            "postgresql.cnpg.io", "v1", NS, "clusters", manifest)
    assert info.value.status == 422 and "External cluster origin not found" in str(info.value.body)


def test_with_rds_the_kubernetes_restore_is_refused_toward_the_aws_target(kube: FakeKubeApi) -> None:
    platform = prepare(kube, settings(database="external"), installed=False)
    why = nemesis_for(platform).argument_refusal(FaultCall("restore_database", {"to": "latest", "repo": 1}))
    assert why is not None and "--target aws" in why
    assert ApiError is not None  # the fake's error type, for readers
