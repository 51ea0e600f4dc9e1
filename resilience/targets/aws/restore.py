"""RDS point-in-time restore as the platform's runbook: a new DB cluster, then the app swapped onto it.

RDS never restores in place: RestoreDBClusterToPointInTime "restores a DB cluster to an arbitrary
point in time" as a *new* cluster, to "any point in time before LatestRestorableTime for up to
BackupRetentionPeriod days"; for Aurora it "only restores the DB cluster, not the DB instances",
which are created with CreateDBInstance "only after ... the DB cluster is available"
(https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_RestoreDBClusterToPointInTime.html).
LatestRestorableTime is "typically within 5 minutes of the current time"
(https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PIT.html), so "before the fault" may have
to wait until RDS's logs reach the fault's time.

The steps, each a `recovery` history record (docs/recovery-records.md; recovery_log.py): `target` (the time or
latest), `decide` (source, restored name), `restore-start`, the cluster `available`, the writer
instance created (Aurora) and `available` (`restore-done`, `replay-done`: RDS replays its own logs and
reports neither bytes nor segments, so those are 0 with `wal_reported: false`), `cluster-whole`, then
`swap` (the app's ExternalName Service pointed at the new endpoint and the app restarted:
kubernetes/db_switch.py). The new resources are named `resilience-<cluster>-restored` (in
aws.allowed_resources, or refused), tagged with our managed-by tag and the source, and deleted on
rollback (after the app is pointed back) unless `aws.keep_restored` keeps them. Nothing is deleted that
does not carry our tag.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from ...errors import HarnessError, UserError
from ..blast_radius import resource_problem
from ..clock import to_monotonic
from ..kubernetes.names import MANAGED_BY_LABEL, MANAGER
from ...config import AwsSettings, Settings
from ..recovery_log import RecoveryLog

SUFFIX = "-restored"
SOURCE_TAG = "resilience/restored-from"
RESTORE_TIMEOUT_S = 4 * 3600.0  # AWS gives no bound: restores take minutes to hours with the data's size
POLL_S = 15.0
GIB = 1024 ** 3


class RdsAccess(Protocol):
    """What a restore uses of the managed services (AwsServices gives it)."""

    settings: Settings
    aws: AwsSettings

    def client(self, service: str) -> Any: ...
    def cluster(self) -> dict[str, Any]: ...


def restored_name(cluster: str) -> str:
    """The restored cluster's identifier: the project prefix, the source, a suffix (63 characters at most)."""
    name = f"resilience-{cluster}"[:63 - len(SUFFIX)].rstrip("-")
    return name + SUFFIX


def utc_text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Posture:
    """What the backups allow now: retention, the restorable window, cross-region copies (status/evidence)."""

    cluster: str
    engine: str
    retention_days: int
    earliest: datetime | None
    latest: datetime | None
    lag_s: float | None  # how far LatestRestorableTime is behind now
    replications: dict[str, list[str]] = field(default_factory=dict)  # instance -> replicated backup ARNs
    problems: list[str] = field(default_factory=list)

    def as_detail(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "engine": self.engine, "backup_retention_days": self.retention_days,
                "earliest_restorable_utc": utc_text(self.earliest), "latest_restorable_utc": utc_text(self.latest),
                "restorable_lag_s": self.lag_s, "cross_region_backup_replications": self.replications,
                "problems": self.problems}


def read_posture(services: RdsAccess) -> Posture:
    """The posture read now: the DB cluster and each member instance (DescribeDBInstances)."""
    cluster = services.cluster()
    rds = services.client("rds")
    instances = {m["DBInstanceIdentifier"]: rds.describe_db_instances(
        DBInstanceIdentifier=m["DBInstanceIdentifier"])["DBInstances"][0] for m in cluster.get("DBClusterMembers", [])}
    return posture_of(cluster, instances)


def posture_of(cluster: dict[str, Any], instances: dict[str, dict[str, Any]]) -> Posture:
    """The cluster's BackupRetentionPeriod and restorable window, and each member instance's cross-region
    automated backups (DBInstanceAutomatedBackupsReplications), from what RDS answered (no call here)."""
    engine = str(cluster.get("Engine", ""))
    retention = int(cluster.get("BackupRetentionPeriod") or 0)
    earliest, latest = cluster.get("EarliestRestorableTime"), cluster.get("LatestRestorableTime")
    lag = None if not isinstance(latest, datetime) else round((datetime.now(timezone.utc) - latest).total_seconds(), 3)
    problems = []
    if retention < 1:
        problems.append("automated backups are off (BackupRetentionPeriod 0): no point-in-time restore")
    replications = {name: [r.get("DBInstanceAutomatedBackupsArn", "") for r in
                           instance.get("DBInstanceAutomatedBackupsReplications", [])]
                    for name, instance in instances.items()}
    if not any(replications.values()):
        problems.append("no cross-region copy of the automated backups (StartDBInstanceAutomatedBackupsReplication "
                        "is for DB instances; Aurora and Multi-AZ DB clusters need cross-region snapshot copies "
                        "or a global database): a lost region loses its backups")
    return Posture(str(cluster.get("DBClusterIdentifier")), engine, retention, earliest, latest, lag, replications,
                   problems)


class RdsRestore:
    """One point-in-time restore of `aws.rds_cluster` into `restored_name(...)`, recorded in `log`."""

    def __init__(self, services: RdsAccess, log: RecoveryLog, poll_s: float = POLL_S,
                 timeout_s: float = RESTORE_TIMEOUT_S, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.services = services
        self.aws = services.aws
        self.log = log
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.clock = clock
        self.name = restored_name(self.aws.rds_cluster)

    # -- what may be done ------------------------------------------------------------------------
    def refusal(self, repo: int) -> str | None:
        if repo != 1:
            return (f"repo {repo}: RDS keeps a DB cluster's automated backups in its own region; a second-region "
                    f"copy of a cluster is a snapshot copy or a global database, which this target does not "
                    f"restore from (repo 1 only)")
        return resource_problem(self.services.settings, "restored DB cluster", self.name)

    def plan(self, to: str) -> list[str]:
        a = self.aws
        when = ("UseLatestRestorableTime=True" if to == "latest" else
                "RestoreToTime=<1 s before the fault> (after waiting until LatestRestorableTime reaches it)")
        return [f"restore_database: rds:DescribeDBClusters({a.rds_cluster!r}): BackupRetentionPeriod, "
                f"EarliestRestorableTime, LatestRestorableTime",
                f"restore_database: rds:RestoreDBClusterToPointInTime(SourceDBClusterIdentifier={a.rds_cluster!r}, "
                f"DBClusterIdentifier={self.name!r}, {when}, Tags=[{MANAGED_BY_LABEL}={MANAGER}, "
                f"{SOURCE_TAG}={a.rds_cluster}]) and wait until it is available",
                f"restore_database: rds:CreateDBInstance(DBClusterIdentifier={self.name!r}, the writer's class) "
                f"(Aurora) and wait until it is available"]

    # -- the steps -------------------------------------------------------------------------------
    def run(self, to: str, fault_utc: datetime | None, repo: int = 1) -> dict[str, Any]:
        """Restore, wait until whole; returns the new cluster's facts (endpoint, target). Raises on failure."""
        problem = self.refusal(repo)
        if problem:
            raise UserError(f"restore_database: {problem}")
        source = self.services.cluster()
        target = self._target(to, fault_utc, source)
        self.log.note("decide", source=self.aws.rds_cluster, restored_as=self.name, repo=repo,
                      backup_retention_days=int(source.get("BackupRetentionPeriod") or 0))
        started = self.clock()
        latest = self._latest(self.aws.rds_cluster)
        self.log.note("restore-start", repo=repo, backup_label=f"rds-automated:{self.aws.rds_cluster}",
                      backup_type="incr", backup_kind="RDS automated backups (snapshots + transaction logs)",
                      backup_stop_m=to_monotonic(latest) if latest else None,
                      backup_age_s=(round((fault_utc - latest).total_seconds(), 3)
                                    if fault_utc is not None and latest is not None else None))
        try:
            self._start(target, source)
            restored = self._wait_cluster()
            writer = self._writer(restored, source)
        except Exception as exc:
            self.log.note("restore-done", "fail", seconds=round(self.clock() - started, 3), bytes=0,
                          throughput_mb_s=0.0, error=str(exc))
            raise
        seconds = round(self.clock() - started, 3)
        size = int(restored.get("AllocatedStorage") or 0) * GIB if int(restored.get("AllocatedStorage") or 0) > 1 else 0
        self.log.note("restore-done", "ok", seconds=seconds, bytes=size,
                      throughput_mb_s=round(size / 1e6 / seconds, 3) if size and seconds else 0.0,
                      bytes_source="AllocatedStorage" if size else "unknown (Aurora reports no size here)")
        self.log.note("replay-done", "ok", outcome="latest" if target is None else "reached", wal_bytes=0,
                      wal_segments=0, wal_reported=False, replayed_to_utc=utc_text(target or latest),
                      replayed_to_m=to_monotonic(target or latest))
        self.log.note("cluster-whole", "ok", members=1, leader=writer)
        return {"restored_cluster": self.name, "endpoint": restored["Endpoint"], "writer": writer,
                "target_utc": utc_text(target), "latest_utc": utc_text(latest)}

    def _target(self, to: str, fault_utc: datetime | None, source: dict[str, Any]) -> datetime | None:
        """The restore time (None: the latest), recorded; for before-fault, waits until RDS can restore to it."""
        if to == "latest":
            latest = source.get("LatestRestorableTime")
            self.log.note("target", kind="latest", target_m=None, target_utc=utc_text(latest), repo=1)
            return None
        if fault_utc is None:
            raise UserError("restore_database to=before-fault: no fault on this target recorded a time to restore "
                            "to before; use to=latest, or inject the fault in the same run first")
        target = fault_utc.replace(microsecond=0)  # a whole second at or before the fault
        if target >= fault_utc:
            target = datetime.fromtimestamp(fault_utc.timestamp() - 1, timezone.utc).replace(microsecond=0)
        earliest = source.get("EarliestRestorableTime")
        if earliest is not None and target < earliest:
            raise UserError(f"restore_database: {utc_text(target)} is before the cluster's EarliestRestorableTime "
                            f"{utc_text(earliest)} (BackupRetentionPeriod {source.get('BackupRetentionPeriod')} "
                            f"days): RDS cannot restore to it")
        self.log.note("target", kind="time", target_m=to_monotonic(target), target_utc=utc_text(target),
                      repo=1)
        self._until(lambda: (self._latest(self.aws.rds_cluster) or target) >= target,
                    f"LatestRestorableTime of {self.aws.rds_cluster} to reach {utc_text(target)}")
        return target

    def _latest(self, cluster: str) -> datetime | None:
        found = self.services.client("rds").describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]
        latest = found.get("LatestRestorableTime")
        return latest if isinstance(latest, datetime) else None

    def _start(self, target: datetime | None, source: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError
        arguments: dict[str, Any] = {
            "SourceDBClusterIdentifier": self.aws.rds_cluster, "DBClusterIdentifier": self.name,
            "Tags": [{"Key": MANAGED_BY_LABEL, "Value": MANAGER}, {"Key": SOURCE_TAG, "Value": self.aws.rds_cluster}]}
        arguments.update({"RestoreToTime": target} if target is not None else {"UseLatestRestorableTime": True})
        if source.get("DBSubnetGroup"):
            arguments["DBSubnetGroupName"] = source["DBSubnetGroup"]
        groups = [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", []) if g.get("VpcSecurityGroupId")]
        if groups:  # otherwise "the new DB cluster is created with the default DB security group"
            arguments["VpcSecurityGroupIds"] = groups
        # a Multi-AZ DB cluster (not Aurora) restores its instances too: their class and storage, as the source's
        for field in ("DBClusterInstanceClass", "StorageType", "Iops"):
            if source.get(field) and not str(source.get("Engine", "")).startswith("aurora"):
                arguments[field] = source[field]
        try:
            self.services.client("rds").restore_db_cluster_to_point_in_time(**arguments)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "DBClusterAlreadyExistsFault":
                raise UserError(f"restore_database: DB cluster {self.name!r} already exists (a restore kept by "
                                f"aws.keep_restored, or one still being deleted). Delete it, or wait, and run "
                                f"again.") from None
            raise HarnessError(f"rds:RestoreDBClusterToPointInTime({self.name}) failed: {exc}") from None

    def _wait_cluster(self) -> dict[str, Any]:
        rds = self.services.client("rds")
        found: dict[str, Any] = {}

        def available() -> bool:
            found.update(rds.describe_db_clusters(DBClusterIdentifier=self.name)["DBClusters"][0])
            return found.get("Status") == "available"
        self._until(available, f"restored DB cluster {self.name} to be available")
        return found

    def _writer(self, restored: dict[str, Any], source: dict[str, Any]) -> str:
        """The restored cluster's writer, available. Aurora's is created here (the source writer's class): the
        restore "only restores the DB cluster, not the DB instances"; a Multi-AZ DB cluster restores its own."""
        rds = self.services.client("rds")
        members = list(restored.get("DBClusterMembers", []))
        if not members and str(restored.get("Engine") or source.get("Engine", "")).startswith("aurora"):
            source_writer = next((m["DBInstanceIdentifier"] for m in source.get("DBClusterMembers", [])
                                  if m.get("IsClusterWriter")), None)
            klass = "db.r6g.large"
            if source_writer:
                klass = rds.describe_db_instances(DBInstanceIdentifier=source_writer)["DBInstances"][0][
                    "DBInstanceClass"]
            members = [{"DBInstanceIdentifier": f"{self.name}-1", "IsClusterWriter": True}]
            rds.create_db_instance(DBInstanceIdentifier=members[0]["DBInstanceIdentifier"],
                                   DBClusterIdentifier=self.name, DBInstanceClass=klass,
                                   Engine=restored.get("Engine") or source.get("Engine"),
                                   Tags=[{"Key": MANAGED_BY_LABEL, "Value": MANAGER},
                                         {"Key": SOURCE_TAG, "Value": self.aws.rds_cluster}])
        while not members:  # Multi-AZ DB cluster: its instances appear with it
            self._until(lambda: bool(self._members()), f"the instances of {self.name}")
            members = self._members()
        writer = next((m["DBInstanceIdentifier"] for m in members if m.get("IsClusterWriter")),
                      members[0]["DBInstanceIdentifier"])
        self._until(lambda: rds.describe_db_instances(DBInstanceIdentifier=writer)["DBInstances"][0].get(
            "DBInstanceStatus") == "available", f"DB instance {writer} of {self.name} to be available")
        return writer

    def _members(self) -> list[dict[str, Any]]:
        found = self.services.client("rds").describe_db_clusters(DBClusterIdentifier=self.name)["DBClusters"][0]
        return list(found.get("DBClusterMembers", []))

    def _until(self, done: Callable[[], bool], what: str) -> None:
        deadline = self.clock() + self.timeout_s
        while not done():
            if self.clock() >= deadline:
                raise HarnessError(f"restore_database: gave up waiting {self.timeout_s:g} s for {what}")
            self.sleep(self.poll_s)

    # -- the rollback ----------------------------------------------------------------------------------
    def delete(self, name: str) -> list[str]:
        """Delete a restored cluster and its instances, only if it carries our tag; returns what was deleted."""
        from botocore.exceptions import ClientError
        rds = self.services.client("rds")
        try:
            cluster = rds.describe_db_clusters(DBClusterIdentifier=name)["DBClusters"][0]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "DBClusterNotFoundFault":
                return []  # deleted already: safe twice
            raise
        tags = {t["Key"]: t["Value"] for t in cluster.get("TagList", [])}  # DescribeDBClusters returns them
        if tags.get(MANAGED_BY_LABEL) != MANAGER:
            raise UserError(f"DB cluster {name!r} does not carry the tag {MANAGED_BY_LABEL}={MANAGER}: the harness "
                            f"deletes only what it restored. Nothing was deleted.")
        deleted = []
        for member in cluster.get("DBClusterMembers", []):
            rds.delete_db_instance(DBInstanceIdentifier=member["DBInstanceIdentifier"], SkipFinalSnapshot=True)
            deleted.append(member["DBInstanceIdentifier"])
        rds.delete_db_cluster(DBClusterIdentifier=name, SkipFinalSnapshot=True)
        return [*deleted, name]
