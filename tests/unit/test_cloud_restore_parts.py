"""The pure parts of the cloud restores: names inside RDS's and Kubernetes' limits, the CloudNativePG recovery
manifest, status times, the backup posture read from what RDS answers, and the recovery log's records."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from resilience.config import AwsSettings, Settings
from resilience.event_feed import as_record
from resilience.history import RECOVERY, History
from resilience.targets.aws.restore import read_posture, restored_name
from resilience.targets.kubernetes import cnpg
from resilience.targets.recovery_log import RecoveryLog


def test_restored_names_keep_the_prefix_and_fit_the_identifier_limits() -> None:
    assert restored_name("school-meals-db") == "resilience-school-meals-db-restored"
    long = restored_name("a" * 63)
    assert len(long) <= 63 and long.startswith("resilience-") and long.endswith("-restored") and "--" not in long
    assert cnpg.restored_name() == "school-meals-db-restored"
    assert len(cnpg.restored_name("b" * 60)) <= 50  # CloudNativePG derives pod and service names from it


def test_the_recovery_manifest_reads_the_source_object_store_to_the_target_time() -> None:
    source = {"metadata": {"name": "school-meals-db"},
              "spec": {"instances": 3, "imageName": "ghcr.io/cloudnative-pg/postgresql:15", "storage": {"size": "20Gi"},
                       "bootstrap": {"initdb": {"database": "meals"}},
                       "backup": {"barmanObjectStore": {"destinationPath": "s3://b/p"}}}}
    target = datetime(2026, 12, 6, 17, 0, 5, tzinfo=timezone.utc)
    made = cnpg.recovery_manifest(source, "school-meals-db-restored", "ns", target)
    assert made["spec"]["bootstrap"] == {"recovery": {"source": "origin", "database": "meals", "owner": "app",
                                                      "recoveryTarget": {"targetTime": "2026-12-06T17:00:05Z"}}}
    assert made["spec"]["externalClusters"] == [{"name": "origin", "barmanObjectStore": {
        "destinationPath": "s3://b/p", "serverName": "school-meals-db"}}]
    assert made["spec"]["instances"] == 3 and "backup" not in made["spec"]  # the copy does not archive over the source
    assert made["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "resilience"
    latest = cnpg.recovery_manifest(source, "r", "ns", None)
    assert "recoveryTarget" not in latest["spec"]["bootstrap"]["recovery"]
    assert source["spec"]["backup"]["barmanObjectStore"] == {"destinationPath": "s3://b/p"}  # not changed
    assert cnpg.backup_problem(source) is None
    assert "barmanObjectStore" in (cnpg.backup_problem({"metadata": {"name": "x"}, "spec": {}}) or "")


def test_cloudnativepg_status_times_parse_in_both_spellings() -> None:
    assert cnpg.parse_time("2024-05-01T10:00:00Z") == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    assert cnpg.parse_time("2024-05-01 12:00:00.5+02") == datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=timezone.utc)
    assert cnpg.parse_time(None) is None


class Rds:
    def __init__(self, instances: dict[str, Any]) -> None:
        self.instances = instances

    def describe_db_instances(self, DBInstanceIdentifier: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        return {"DBInstances": [self.instances[DBInstanceIdentifier]]}


class Services:
    def __init__(self, cluster: dict[str, Any], instances: dict[str, Any]) -> None:
        self.settings = Settings(aws=AwsSettings())
        self.aws = self.settings.aws
        self._cluster, self._rds = cluster, Rds(instances)

    def cluster(self) -> dict[str, Any]:
        return self._cluster

    def client(self, service: str) -> Any:
        return self._rds


def test_posture_reads_retention_the_window_and_each_members_cross_region_copies() -> None:
    now = datetime.now(timezone.utc)
    arn = "arn:aws:rds:eu-west-1:111122223333:auto-backup:ab-1"
    cluster = {"DBClusterIdentifier": "db", "Engine": "postgres", "BackupRetentionPeriod": 30,
               "EarliestRestorableTime": now - timedelta(days=30), "LatestRestorableTime": now - timedelta(minutes=4),
               "DBClusterMembers": [{"DBInstanceIdentifier": "db-1"}, {"DBInstanceIdentifier": "db-2"}]}
    instances = {"db-1": {"DBInstanceAutomatedBackupsReplications": [{"DBInstanceAutomatedBackupsArn": arn}]},
                 "db-2": {}}
    posture = read_posture(Services(cluster, instances))  # type: ignore[arg-type]
    assert posture.retention_days == 30 and posture.replications == {"db-1": [arn], "db-2": []}
    assert posture.lag_s is not None and 239 <= posture.lag_s <= 250 and posture.problems == []
    detail = posture.as_detail()
    assert detail["backup_retention_days"] == 30 and detail["cross_region_backup_replications"]["db-1"] == [arn]
    off = read_posture(Services({**cluster, "BackupRetentionPeriod": 0}, {"db-1": {}, "db-2": {}}))  # type: ignore
    assert len(off.problems) == 2 and "BackupRetentionPeriod 0" in off.problems[0]


def test_recovery_notes_become_recovery_records_on_the_run_clock() -> None:
    ticks = iter([105.0, 110.0])
    log = RecoveryLog(clock=lambda: next(ticks))
    log.note("target", kind="time", target_m=95.0, target_utc="2026-12-06T17:00:05Z", repo=1)
    log.note("restore-done", "fail", seconds=5.0, bytes=0, throughput_mb_s=0.0, error="AccessDenied")
    history = History(origin_monotonic=100.0)
    records = [as_record(e, history) for e in log.since(100.0)]
    assert [(r.source, r.op, r.status, r.t) for r in records] == [(RECOVERY, "target", "info", 5.0),
                                                                  (RECOVERY, "restore-done", "fail", 10.0)]
    assert records[0].detail == {"kind": "time", "target_t": -5.0, "target_utc": "2026-12-06T17:00:05Z", "repo": 1}
    assert log.since(106.0)[0].op == "restore-done" and log.ops() == ["target", "restore-done"]
    assert replace(Settings().aws, keep_restored=True).keep_restored


def test_the_cloudnativepg_cluster_with_backups_and_its_schedule() -> None:
    from resilience.targets.kubernetes import manifests
    settings = Settings()
    assert "backup" not in manifests.cloudnative_pg_cluster(settings)["spec"]
    cluster = manifests.cloudnative_pg_cluster(settings, backup_destination="s3://meals-backups/cnpg")
    store = cluster["spec"]["backup"]["barmanObjectStore"]
    assert store["destinationPath"] == "s3://meals-backups/cnpg" and cluster["spec"]["backup"]["retentionPolicy"] == "30d"
    assert cnpg.backup_problem(cluster) is None
    scheduled = manifests.cloudnative_pg_scheduled_backup(settings)
    assert scheduled["kind"] == "ScheduledBackup" and scheduled["spec"]["cluster"] == {"name": "school-meals-db"}
    assert len(scheduled["spec"]["schedule"].split()) == 6  # CloudNativePG's cron has seconds


def test_a_rollout_is_complete_only_when_every_replica_is_new_and_available() -> None:
    from types import SimpleNamespace as N
    from resilience.targets.kubernetes.db_switch import rolled_out

    def deployment(generation: int, observed: int, updated: int, available: int, total: int) -> Any:
        return N(spec=N(replicas=3), metadata=N(generation=generation),
                 status=N(observed_generation=observed, updated_replicas=updated, available_replicas=available,
                          replicas=total))
    assert rolled_out(deployment(2, 1, 3, 3, 3)) is None  # the controller has not seen the restart yet
    assert rolled_out(deployment(2, 2, 2, 3, 4)) is None  # an old pod still serves from the old database
    assert rolled_out(deployment(2, 2, 3, 2, 3)) is None  # a new pod is not Ready yet
    assert rolled_out(deployment(2, 2, 3, 3, 3)) == 3
