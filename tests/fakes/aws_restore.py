"""RDS point-in-time restore as the documentation describes it, where moto's is instant and never refuses.

moto 5 restores a DB cluster at once (available on the first read), reports `LatestRestorableTime` as the
present, accepts any `RestoreToTime`, and lets a DB instance join a cluster that is still being created.
A harness measuring a restore's duration, or choosing a recovery target, learns nothing from that. For
requests through a `FakeAws` server this module replaces those behaviours (`fake.restores`):

RestoreDBClusterToPointInTime
(https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_RestoreDBClusterToPointInTime.html):
- "Users can restore to any point in time before LatestRestorableTime for up to BackupRetentionPeriod
  days": a RestoreToTime after the source's LatestRestorableTime, or before its EarliestRestorableTime, is
  refused with InvalidRestoreFault (the page lists InvalidRestoreFault among the operation's errors without
  naming this case: which code AWS returns for an out-of-window time is this fake's assumption; the
  harness checks the window itself before it asks);
- RestoreToTime together with UseLatestRestorableTime, or neither, is InvalidParameterCombination;
- a DBClusterIdentifier that already exists: DBClusterAlreadyExistsFault ("User already has a DB cluster
  with the given identifier.");
- the new cluster is `creating` for `restore_s` fake seconds (600 by default: "minutes", the fake's
  assumption; AWS states no figure, restores take longer with more data), then `available`
  (DB cluster states: https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/accessing-monitoring.html);
- "For Aurora, this operation only restores the DB cluster, not the DB instances ... You can create DB
  instances only after the RestoreDBClusterToPointInTime operation has completed and the DB cluster is
  available": CreateDBInstance into a cluster that is not `available` is InvalidDBClusterStateFault.
  A Multi-AZ DB cluster (not Aurora: it has a DBClusterInstanceClass) is restored with its instances, a
  writer and two readers (`<id>-instance-1..3`, "Multi-AZ DB cluster deployments" in the RDS User Guide:
  one writer and two readable standbys), which appear `available` with the cluster.

CreateDBInstance into a cluster: the instance is `creating` for `instance_create_s` (420), then
`backing-up` for `instance_backup_s` (60), then `available` (DB instance states:
https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/accessing-monitoring.html#Overview.DBInstance.Status).

LatestRestorableTime "is typically within 5 minutes of the current time"
(https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PIT.html): DescribeDBClusters and
DescribeDBInstances report it `restorable_lag_s` fake seconds (300) behind the present (on the scaled clock
that is 3 s of wall time with time_scale 0.01), never before the cluster was created.

Durations are fake seconds on the FakeAws clock (tests/fakes/clock.py), so a ten-minute restore takes 6 s
of wall time with time_scale 0.01, or nothing with a manual clock until `advance()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .aws_services import FakeAws


@dataclass(frozen=True)
class Restored:
    """What a restore made: from which cluster, to which moment (naive UTC, as moto keeps times)."""

    source: str
    restore_time: datetime
    use_latest: bool


def _naive_utc(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _true(value: Any) -> bool:
    return str(value).lower() == "true" or value is True


class RdsRestores:
    """The fake's point-in-time restores: windows, states and durations (see the module docstring)."""

    def __init__(self, fake: "FakeAws", restore_s: float = 600.0, instance_create_s: float = 420.0,
                 instance_backup_s: float = 60.0, restorable_lag_s: float = 300.0) -> None:
        self.fake = fake
        self.restore_s = restore_s
        self.instance_create_s = instance_create_s
        self.instance_backup_s = instance_backup_s
        self.restorable_lag_s = restorable_lag_s
        self.restored: dict[str, Restored] = {}  # new cluster id -> what it was restored from

    # -- what DescribeDBClusters reports
    def latest_restorable(self, created: datetime | None) -> datetime:
        """The present minus the lag (in wall time on the fake's clock), never before `created`."""
        latest = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(
            seconds=self.fake.clock.real_seconds(self.restorable_lag_s))
        return max(latest, created) if created is not None else latest

    # -- RestoreDBClusterToPointInTime
    def restore_cluster(self, response: Any, original: Callable[[Any], Any]) -> Any:
        from moto.rds.exceptions import DBClusterNotFoundError, InvalidParameterCombination
        from .aws_services import _fault
        params = response.params
        backend = response.backend
        new_id = params.get("DBClusterIdentifier")
        source_id = params.get("SourceDBClusterIdentifier")
        source = backend.clusters.get(source_id)
        if source is None:
            raise DBClusterNotFoundError(source_id, f"DBCluster {source_id} not found.")
        if new_id in backend.clusters:
            raise _fault("DBClusterAlreadyExistsFault", "DB Cluster already exists")
        use_latest = _true(params.get("UseLatestRestorableTime"))
        when = _naive_utc(params.get("RestoreToTime"))
        if (when is None) == (not use_latest):
            raise InvalidParameterCombination("Exactly one of RestoreToTime and UseLatestRestorableTime must be "
                                              "given")
        earliest = source.earliest_restorable_time
        latest = self.latest_restorable(earliest)
        if when is not None and not earliest <= when <= latest:
            raise _fault("InvalidRestoreFault", f"The restore time {when.isoformat()}Z is outside the restorable "
                                                f"window of {source_id}: {earliest.isoformat()}Z to "
                                                f"{latest.isoformat()}Z.")
        result = original(response)
        cluster = backend.clusters[new_id]
        cluster.fake_state = "creating"
        self.restored[new_id] = Restored(source_id, when or latest, use_latest)

        multi_az = not str(source.engine).startswith("aurora") and bool(
            params.get("DBClusterInstanceClass") or getattr(source, "db_cluster_instance_class", None))

        def done() -> None:
            if backend.clusters.get(new_id) is not cluster:
                return
            if multi_az:  # its writer and two readable standbys come with it
                instance_class = params.get("DBClusterInstanceClass") or source.db_cluster_instance_class
                for i in (1, 2, 3):
                    backend.create_db_instance({"db_instance_identifier": f"{new_id}-instance-{i}",
                                                "db_cluster_identifier": new_id, "engine": source.engine,
                                                "db_instance_class": instance_class})
            cluster.fake_state = "available"
        self.fake._later(self.restore_s, done)
        return result

    # -- CreateDBInstance into a cluster
    def create_instance(self, response: Any, original: Callable[[Any], Any]) -> Any:
        from moto.rds.exceptions import InvalidDBClusterStateFault
        params = response.params
        backend = response.backend
        cluster_id = params.get("DBClusterIdentifier")
        cluster = backend.clusters.get(cluster_id) if cluster_id else None
        state = getattr(cluster, "fake_state", None)
        if cluster is not None and state is not None and state != "available":
            raise InvalidDBClusterStateFault(f"DB cluster {cluster_id} is in {state} state; DB instances can be "
                                             f"created only once it is available.")
        result = original(response)
        if cluster_id not in self.restored:
            return result
        instance_id = params.get("DBInstanceIdentifier")
        instance = backend.databases[instance_id]
        instance.status = "creating"

        def backing_up() -> None:
            if backend.databases.get(instance_id) is instance:
                instance.status = "backing-up"
                self.fake._later(self.instance_backup_s, available)

        def available() -> None:
            if backend.databases.get(instance_id) is instance:
                instance.status = "available"
        self.fake._later(self.instance_create_s, backing_up)
        return result


def install(active: Callable[[], "FakeAws | None"]) -> None:
    """Wrap moto's handlers and the cluster's status / LatestRestorableTime (called once, from aws_services)."""
    from moto.rds.models import DBCluster, DBInstance
    from moto.rds.responses import RDSResponse

    original_restore = RDSResponse.restore_db_cluster_to_point_in_time
    original_create = RDSResponse.create_db_instance
    status_property = DBCluster.status

    def restore_db_cluster_to_point_in_time(self: Any) -> Any:
        fake = active()
        return original_restore(self) if fake is None else fake.restores.restore_cluster(self, original_restore)

    def create_db_instance(self: Any) -> Any:
        fake = active()
        return original_create(self) if fake is None else fake.restores.create_instance(self, original_create)

    def status(cluster: Any) -> str:
        state = getattr(cluster, "fake_state", None)
        return str(state) if state is not None else str(status_property.fget(cluster))  # type: ignore[misc]

    def set_status(cluster: Any, value: str) -> None:
        if getattr(cluster, "fake_state", None) is not None:
            cluster.fake_state = value
        status_property.fset(cluster, value)  # type: ignore[misc]

    def latest_restorable_time(model: Any) -> datetime:
        fake = active()
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        if fake is None:
            return now
        created = getattr(model, "earliest_restorable_time", None) or getattr(model, "created", None)
        return fake.restores.latest_restorable(_naive_utc(created))

    RDSResponse.restore_db_cluster_to_point_in_time = restore_db_cluster_to_point_in_time  # type: ignore[method-assign]
    RDSResponse.create_db_instance = create_db_instance  # type: ignore[method-assign]
    DBCluster.status = property(status, set_status)  # type: ignore[assignment,method-assign]
    DBCluster.latest_restorable_time = property(latest_restorable_time)  # type: ignore[assignment,method-assign]
    DBInstance.latest_restorable_time = property(latest_restorable_time)  # type: ignore[assignment,method-assign]
