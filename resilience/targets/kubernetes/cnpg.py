"""CloudNativePG point-in-time recovery: a new `Cluster` bootstrapped from the old one's backups, the app moved to it.

CloudNativePG never recovers in place: "the recovery ... must be performed on a new cluster"
(https://cloudnative-pg.io/documentation/current/recovery/), bootstrapped with `bootstrap.recovery`
from an `externalClusters` entry holding the source's object store (`barmanObjectStore`, with its
`serverName`), to `recoveryTarget.targetTime` ("the time stamp up to which recovery will proceed,
expressed in RFC 3339 format", API reference, RecoveryTarget) or, without a target, "to the end of
the WAL archive" (the latest). The source must have `spec.backup.barmanObjectStore` (its base backups
and WAL archive); `status.firstRecoverabilityPoint` is the oldest time a recovery can reach.

The steps (each a `recovery` history record, docs/recovery-records.md): the CRDs present (API discovery of
postgresql.cnpg.io/v1, refused otherwise), the source's backup and window, the recovery Cluster
`<source>-restored` created through the official client (our managed-by label), waited for until
its `status.phase` is "Cluster in healthy state" with every instance ready, then the app's Deployment
pointed at `<restored>-rw` with the `<restored>-app` secret (a template change: the pods roll). The
rollback points it back and deletes the restored Cluster unless `kubernetes.keep_restored`.
"""

from __future__ import annotations

import copy
import time
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from ...config import Settings
from ...errors import HarnessError, UserError
from ..clock import to_monotonic
from ..recovery_log import RecoveryLog
from . import discovery
from .names import APP_NAME, CNPG_CLUSTER_NAME, MANAGED_BY_LABEL, MANAGER, Manifest, object_meta

GROUP, VERSION, PLURAL = "postgresql.cnpg.io", "v1", "clusters"
HEALTHY = "Cluster in healthy state"  # status.phase once every instance is ready
SUFFIX = "-restored"
ORIGIN = "origin"  # the externalClusters entry the recovery reads from
RESTORE_TIMEOUT_S = 4 * 3600.0
POLL_S = 10.0


class Cluster(Protocol):
    settings: Settings
    namespace: str

    def core(self) -> Any: ...


def restored_name(source: str = CNPG_CLUSTER_NAME) -> str:
    return source[:50 - len(SUFFIX)] + SUFFIX


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    """A CloudNativePG status time ("2024-05-01T10:00:00Z" or "2024-05-01 10:00:00.123+00"), or None."""
    if not text:
        return None
    value = str(text).replace(" ", "T").replace("Z", "+00:00")
    if len(value) >= 3 and value[-3] in "+-" and ":" not in value[-3:]:
        value += ":00"
    return datetime.fromisoformat(value).astimezone(timezone.utc)


def backup_problem(source: Manifest) -> str | None:
    """Why this Cluster cannot be recovered from, or None: it needs an object store with its backups."""
    store = ((source.get("spec") or {}).get("backup") or {}).get("barmanObjectStore")
    if not store or not store.get("destinationPath"):
        name = source.get("metadata", {}).get("name")
        return (f"CloudNativePG Cluster {name!r} has no spec.backup.barmanObjectStore (no base backups or WAL "
                f"archive to recover from); configure backups (and a ScheduledBackup) first")
    return None


def recovery_manifest(source: Manifest, name: str, namespace: str, target: datetime | None) -> Manifest:
    """The recovery Cluster: the source's size and image, bootstrapped from its object store to `target`."""
    spec = source.get("spec") or {}
    store = copy.deepcopy(spec["backup"]["barmanObjectStore"])
    store.setdefault("serverName", source["metadata"]["name"])  # where the source's backups are, by server name
    recovery: dict[str, Any] = {"source": ORIGIN, "database": "meals", "owner": "app"}
    if target is not None:
        recovery["recoveryTarget"] = {"targetTime": rfc3339(target)}
    new_spec: dict[str, Any] = {key: copy.deepcopy(spec[key]) for key in
                                ("instances", "imageName", "storage", "affinity", "minSyncReplicas",
                                 "maxSyncReplicas", "postgresql") if key in spec}
    new_spec["bootstrap"] = {"recovery": recovery}
    new_spec["externalClusters"] = [{"name": ORIGIN, "barmanObjectStore": store}]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Cluster",
            "metadata": object_meta(name, namespace, "postgres"), "spec": new_spec}


class CnpgRestore:
    """One point-in-time recovery of the CloudNativePG Cluster into `<source>-restored`, recorded in `log`."""

    def __init__(self, platform: Cluster, log: RecoveryLog, source: str = CNPG_CLUSTER_NAME, poll_s: float = POLL_S,
                 timeout_s: float = RESTORE_TIMEOUT_S, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.platform = platform
        self.namespace = platform.namespace
        self.log = log
        self.source = source
        self.name = restored_name(source)
        self.poll_s, self.timeout_s, self.sleep, self.clock = poll_s, timeout_s, sleep, clock

    def _custom(self) -> Any:
        from kubernetes import client
        return client.CustomObjectsApi(self.platform.core().api_client)

    def installed(self) -> bool:
        """Whether the API serves postgresql.cnpg.io/v1 clusters (API discovery: the CRD is installed)."""
        return discovery.serves(self.platform.core().api_client, GROUP, VERSION, PLURAL)

    def refusal(self) -> str | None:
        if not self.installed():
            return (f"CloudNativePG is not installed on this cluster: the API does not serve {GROUP}/{VERSION} "
                    f"{PLURAL} (its CRDs are absent). Install the operator, or use the aws target for RDS.")
        return None

    def plan(self, to: str) -> list[str]:
        ns = self.namespace
        target = ("recoveryTarget.targetTime=<the second before the fault>" if to == "before-fault"
                  else "no recoveryTarget (to the end of the WAL archive)")
        return [f"restore_database: GET /apis/{GROUP}/{VERSION} (refused when CloudNativePG's CRDs are absent)",
                f"restore_database: GET /apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{self.source}: "
                f"spec.backup.barmanObjectStore, status.firstRecoverabilityPoint",
                f"restore_database: POST /apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL} Cluster {self.name} "
                f"(bootstrap.recovery from externalClusters[{ORIGIN}], {target}); wait for status.phase {HEALTHY!r}",
                f"restore_database: PUT /apis/apps/v1/namespaces/{ns}/deployments/{APP_NAME}: RSL_PG_DSN host "
                f"{self.name}-rw, secret {self.name}-app (the pods roll)"]

    # -- the steps ---------------------------------------------------------------------------------
    def run(self, to: str, fault_utc: datetime | None) -> dict[str, Any]:
        problem = self.refusal()
        if problem:
            raise UserError(f"restore_database: {problem}")
        custom = self._custom()
        source = custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.source)
        problem = backup_problem(source)
        if problem:
            raise UserError(f"restore_database: {problem}")
        status = source.get("status") or {}
        first = parse_time(status.get("firstRecoverabilityPoint"))
        target = self._target(to, fault_utc, first)
        self.log.note("decide", source=self.source, restored_as=self.name, repo=1,
                      destination=source["spec"]["backup"]["barmanObjectStore"]["destinationPath"])
        last = parse_time(status.get("lastSuccessfulBackup"))
        self.log.note("restore-start", repo=1, backup_label=f"cnpg:{self.source}", backup_type="full",
                      backup_stop_m=to_monotonic(last),
                      backup_age_s=(round((fault_utc - last).total_seconds(), 3)
                                    if fault_utc is not None and last is not None else None))
        started = self.clock()
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                   recovery_manifest(source, self.name, self.namespace, target))
            restored = self._wait_healthy(custom)
        except Exception as exc:
            self.log.note("restore-done", "fail", seconds=round(self.clock() - started, 3), bytes=0,
                          throughput_mb_s=0.0, error=_why(exc, self.name))
            raise _user_error(exc, self.name) from None
        seconds = round(self.clock() - started, 3)
        self.log.note("restore-done", "ok", seconds=seconds, bytes=0, throughput_mb_s=0.0,
                      bytes_source="unknown (the Cluster status reports no restored size)")
        self.log.note("replay-done", "ok", outcome="latest" if target is None else "reached", wal_bytes=0,
                      wal_segments=0, wal_reported=False, replayed_to_utc=None if target is None else rfc3339(target),
                      replayed_to_m=to_monotonic(target))
        rstatus = restored.get("status") or {}
        self.log.note("cluster-whole", "ok", members=int(rstatus.get("readyInstances") or 0),
                      leader=str(rstatus.get("currentPrimary") or ""))
        return {"restored_cluster": self.name, "target_utc": None if target is None else rfc3339(target)}

    def _target(self, to: str, fault_utc: datetime | None, first: datetime | None) -> datetime | None:
        if to == "latest":
            self.log.note("target", kind="latest", target_m=None, target_utc=None, repo=1)
            return None
        if fault_utc is None:
            raise UserError("restore_database to=before-fault: no fault on this target recorded a time to restore "
                            "to before; use to=latest, or inject the fault in the same run first")
        target = fault_utc.replace(microsecond=0)
        if target >= fault_utc:
            target = datetime.fromtimestamp(fault_utc.timestamp() - 1, timezone.utc)
        if first is not None and target < first:
            raise UserError(f"restore_database: {rfc3339(target)} is before the first recoverability point "
                            f"{rfc3339(first)} of {self.source}: no base backup is that old")
        self.log.note("target", kind="time", target_m=to_monotonic(target), target_utc=rfc3339(target), repo=1)
        return target

    def _wait_healthy(self, custom: Any) -> dict[str, Any]:
        deadline = self.clock() + self.timeout_s
        while True:
            found = custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
            status = found.get("status") or {}
            wanted = int((found.get("spec") or {}).get("instances") or 1)
            if status.get("phase") == HEALTHY and int(status.get("readyInstances") or 0) >= wanted:
                return dict(found)
            if self.clock() >= deadline:
                raise HarnessError(f"restore_database: Cluster {self.name} not healthy after {self.timeout_s:g} s "
                                   f"(phase {status.get('phase')!r})")
            self.sleep(self.poll_s)

    # -- the app, and the rollback ----------------------------------------------------------------
    def point_app_at(self, cluster: str) -> str:
        """Point the app's Deployment at `cluster` (host <cluster>-rw, secret <cluster>-app); the one before."""
        from kubernetes import client
        apps = client.AppsV1Api(self.platform.core().api_client)
        deployment = apps.read_namespaced_deployment(APP_NAME, self.namespace)
        before = None
        pod_spec: Any = deployment.spec.template.spec
        for container in pod_spec.containers:
            for env in container.env or []:
                if env.name == "RSL_PG_DSN" and env.value:
                    host = env.value.split("//", 1)[1].split(":", 1)[0]
                    before = host[:-3] if host.endswith("-rw") else host
                    env.value = env.value.replace(f"//{host}:", f"//{cluster}-rw:", 1)
                ref = env.value_from.secret_key_ref if env.value_from else None
                if ref is not None and env.name in ("RSL_PG_USER", "RSL_PG_PASSWORD"):
                    ref.name = f"{cluster}-app"
        if before is None:
            raise HarnessError(f"Deployment {APP_NAME} has no RSL_PG_DSN to point at {cluster}")
        apps.replace_namespaced_deployment(APP_NAME, self.namespace, deployment)  # resourceVersion: 409 if moved
        self.log.note("swap", deployment=APP_NAME, to=f"{cluster}-rw", previous=f"{before}-rw", restored_cluster=self.name)
        return before

    def delete(self) -> bool:
        """Delete the restored Cluster if it carries our label (safe twice); whether it was there."""
        from kubernetes.client.rest import ApiException
        custom = self._custom()
        try:
            found = custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        if (found.get("metadata", {}).get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGER:
            raise UserError(f"Cluster {self.name!r} does not carry the label {MANAGED_BY_LABEL}={MANAGER}: the harness "
                            f"deletes only what it restored. Nothing was deleted.")
        custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        return True


def _why(exc: Exception, name: str) -> str:
    status = getattr(exc, "status", None)
    return f"HTTP {status}: {getattr(exc, 'body', '')}" if status else str(exc)


def _user_error(exc: Exception, name: str) -> Exception:
    status = getattr(exc, "status", None)
    if status == 409:
        return UserError(f"restore_database: Cluster {name!r} already exists (a restore kept by "
                         f"kubernetes.keep_restored?). Delete it and run again.")
    if status is not None:
        return HarnessError(f"restore_database: creating Cluster {name} failed: {_why(exc, name)}")
    return exc
