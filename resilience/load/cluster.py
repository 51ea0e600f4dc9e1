"""Locust load generated inside the Kubernetes cluster: a master Job and N worker pods, read through the API server.

`ClusterLoad` is a `LoadHandle` (load/plan.py) like `LoadProcess`, but
Locust runs in the target's namespace instead of on the harness host, so the
load comes from where users' traffic comes from and is not limited by one
machine. What runs where (docs/in-cluster-load.md):

- the harness (here): creates the objects (cluster_manifests.py), waits for the
  pods and the master, reads rows, status and clock through the API server's
  service proxy (master_client.py), converts row times to the history's clock,
  deletes everything at the end;
- the master pod: `python -m resilience.load.worker --role master --linger`,
  drives the stages, collects the workers' rows, serves them over HTTP;
- the worker pods: `--role worker`, make the requests, stamp each row on the
  master's clock (their offset to it measured over Locust messages).

Clocks. Rows arrive stamped with the master's CLOCK_MONOTONIC (`--origin 0`).
The harness measures master minus harness by round trips to `/clock`
(estimate() keeps the shortest), converts every row
(history t = master t - offset - origin), and `clock_sync()` states the whole
chain: worker → master (the worst worker's bound, from the master's status)
plus master → harness, re-measured at stop() so that drift widens the bound.

Nothing is left behind: stop() deletes every object start() created, also
after a failure half-way through start(); objects carry the master Job as
owner and the Job has a deadline, so a harness that is killed outright leaves
load that ends by itself and objects that the cluster removes.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..config import Settings
from ..errors import HarnessError, UserError
from ..history import Record
from ..targets.blast_radius import namespace_problem
from . import cluster_manifests as cm
from .clock_sync import ClockSync, combine, estimate
from .master_client import MasterClient, MasterUnreachable
from .plan import LoadFactory
from .pod_diagnosis import diagnose
from .process import EXIT_BAD_INPUT, LoadStats, check_load_target, check_locustfile, refusal_in
from .shape import LoadSettings

CLOCK_ROUND_TRIPS = 7  # the shortest of these bounds the offset
POLL_S = 0.5
STATUS_MAX_AGE_S = 0.5  # running()/stats() reuse a status read this recently
FINAL_GRACE_S = 5  # once the rows are in, a load pod gets this long between SIGTERM and SIGKILL
DELETE_WAIT_S = 30  # how long stop() waits for the pods to be gone
CLOCK_METHOD = "round trips to the master's /clock through the API server's service proxy"


class ClusterLoad:
    """One in-cluster Locust load for one run. Same use as LoadProcess: start(), stats(), new_records(), stop()."""

    def __init__(self, url: str, settings: LoadSettings, run_dir: Path, origin_monotonic: float, run_id: str, *,
                 cluster: Settings, api_client: Any, workers: int | None = None,
                 start_timeout_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        check_load_target(url, run_id)
        workers = workers or settings.worker_count()
        if not 1 <= workers <= 100:
            raise UserError(f"in-cluster load needs 1..100 workers; got {workers}.")
        self.namespace = cluster.kubernetes.namespace
        problem = namespace_problem(cluster, self.namespace)
        if problem:
            raise UserError(f"in-cluster load: {problem}")
        self.workers = workers
        self.origin_monotonic = origin_monotonic
        self.image = cm.load_image(cluster)
        self.start_timeout_s = start_timeout_s or cluster.kubernetes.load_start_timeout_s
        locustfile = check_locustfile(settings)
        text = locustfile.read_text(encoding="utf-8")
        if len(text.encode()) > cm.CONFIGMAP_LIMIT:
            raise UserError(f"locustfile {locustfile} is {len(text.encode())} bytes; in-cluster load ships it in a "
                            f"ConfigMap, which holds at most 1 MiB. Make it smaller.")
        self.names = cm.LoadNames.for_run(run_id)
        self.manifests = cm.load_manifests(cluster, self.names, url.rstrip("/"), settings, run_id, locustfile.name,
                                           text, workers)
        self.api_client = api_client
        self.master = MasterClient(api_client, self.namespace, self.names.master, cm.HTTP_PORT, clock)
        self.dir = Path(run_dir) / "load"
        self._created: list[tuple[str, str]] = []  # (kind, name), in creation order
        self._started = self._stopped = False
        self._clock_start: ClockSync | None = None
        self._clock_end: ClockSync | None = None
        self._status: dict[str, Any] | None = None  # the master's last status
        self._status_read = 0.0  # when it was read (monotonic)
        self._offset = 0  # bytes of the master's rows file read so far
        self._rows: list[Record] = []
        self._handed = 0  # rows new_records() has returned
        self._rows_lock = threading.Lock()  # the run may read rows and stats from different threads

    # -- the API -------------------------------------------------------------
    def _api(self, group: str) -> Any:
        from kubernetes import client
        return {"core": client.CoreV1Api, "apps": client.AppsV1Api, "batch": client.BatchV1Api,
                "networking": client.NetworkingV1Api}[group](self.api_client)

    _CREATE = {"Job": ("batch", "create_namespaced_job"), "ConfigMap": ("core", "create_namespaced_config_map"),
               "Service": ("core", "create_namespaced_service"),
               "NetworkPolicy": ("networking", "create_namespaced_network_policy"),
               "Deployment": ("apps", "create_namespaced_deployment")}
    _DELETE = {"Job": ("batch", "delete_namespaced_job"), "ConfigMap": ("core", "delete_namespaced_config_map"),
               "Service": ("core", "delete_namespaced_service"),
               "NetworkPolicy": ("networking", "delete_namespaced_network_policy"),
               "Deployment": ("apps", "delete_namespaced_deployment")}

    def _create(self, manifest: cm.Manifest) -> Any:
        from kubernetes.client.rest import ApiException
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        group, method = self._CREATE[kind]
        try:
            created = getattr(self._api(group), method)(self.namespace, manifest)
        except ApiException as exc:
            if exc.status == 403:
                raise UserError(f"in-cluster load: the harness may not create {kind} objects in namespace "
                                f"{self.namespace} (HTTP 403). Apply the RBAC that `python -m resilience.targets.kubernetes.rbac "
                                f"--config FILE` prints for settings with kubernetes.load_generator: in-cluster (the "
                                f"Role resilience-load; docs/in-cluster-load.md).") from None
            if exc.status == 409:
                raise HarnessError(f"in-cluster load: {kind} {self.namespace}/{name} already exists, left by an "
                                   f"earlier run with the same run id? Delete it with `kubectl -n {self.namespace} "
                                   f"delete job,deployment,service,configmap,networkpolicy -l "
                                   f"{self.names.selector}`.") from None
            raise HarnessError(f"in-cluster load: creating {kind} {self.namespace}/{name} failed: HTTP "
                               f"{exc.status} {exc.reason}: {str(exc.body)[:300]}") from None
        self._created.append((kind, name))
        return created

    def _pods(self) -> list[Any]:
        return list(self._api("core").list_namespaced_pod(self.namespace, label_selector=self.names.selector).items)

    # -- start -----------------------------------------------------------------
    def start(self) -> None:
        """Create the objects, wait until the master reports running stages, measure its clock."""
        if self._started:
            raise HarnessError("ClusterLoad.start() called twice; create a new ClusterLoad for a new load.")
        self._started = True
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            job = self._create(self.manifests[0])
            for manifest in self.manifests[1:]:
                self._create(cm.owned_by_job(manifest, self.names.master, job.metadata.uid))
            self._wait_until_running(time.monotonic() + self.start_timeout_s)
            self._clock_start = self._measure_clock()
        except BaseException as exc:
            try:
                self._delete_all()
            except HarnessError as cleanup:
                exc.add_note(f"Cleaning up after that failed too: {cleanup}")
            self._stopped = True
            raise
        self._write_info()

    def _wait_until_running(self, deadline: float) -> None:
        """Until the master answers /status (all workers connected, the first stage started), or a clear failure."""
        last_error = "the master has not answered yet"
        while True:
            diagnosis = diagnose(self._pods(), self.image)
            if diagnosis.fatal:
                log = self.log_tail()
                refusal = refusal_in(log)
                if diagnosis.exit_code == EXIT_BAD_INPUT and refusal:  # the worker refused its input: say what
                    raise UserError(f"in-cluster load: {refusal}")
                raise HarnessError(f"in-cluster load did not start: {diagnosis.fatal}\nMaster log:\n{log}")
            status = self.master.status()
            if status is not None:
                self._status = status
                return
            try:
                answer = self.master.get("clock")
                last_error = f"GET {self.master.url('status')}: no status yet (/clock answered {answer.status})"
            except MasterUnreachable as exc:
                last_error = str(exc)
            if time.monotonic() >= deadline:
                waiting = "; ".join(diagnosis.waiting) or (
                    f"{len(diagnosis.running)} of {self.workers + 1} pods running; {last_error}")
                raise HarnessError(f"in-cluster load did not start within {self.start_timeout_s:.0f} s "
                                   f"(kubernetes.load_start_timeout_s): {waiting}\nMaster log:\n{self.log_tail()}")
            time.sleep(POLL_S)

    def _measure_clock(self) -> ClockSync:
        samples = [s for s in (self.master.clock_sample() for _ in range(CLOCK_ROUND_TRIPS)) if s is not None]
        if not samples:
            raise HarnessError(f"in-cluster load: the master did not answer GET {self.master.url('clock')}, so row "
                               f"times cannot be put on the harness's clock. Master log:\n{self.log_tail()}")
        return estimate(samples, CLOCK_METHOD)

    # -- while it runs -----------------------------------------------------------
    def _recent_status(self) -> dict[str, Any] | None:
        """The master's status, asked for at most once per STATUS_MAX_AGE_S (it rewrites it once a second;
        the run polls running() ten times a second, and each ask is a request through the API server)."""
        now = time.monotonic()
        if self._status is not None and now - self._status_read < STATUS_MAX_AGE_S:
            return self._status
        status = self.master.status()
        if status is not None:
            self._status, self._status_read = status, now
        return status

    def running(self) -> bool:
        """The stages are still going (the master has not reported done, and its pod is alive)."""
        if not self._started or self._stopped:
            return False
        status = self._recent_status()
        if status is not None:
            return not status.get("done", False)
        return any(p.status.phase in ("Pending", "Running") for p in self._pods()
                   if p.metadata.labels.get(cm.COMPONENT_LABEL) == cm.MASTER)

    def stats(self) -> LoadStats | None:
        """The master's latest status, its time on the history clock (after stop(): its last one); None while
        it has not been read."""
        status = self._recent_status() if self._started and not self._stopped else None
        if status is None:
            status = self._status if self._stopped else None
        if status is None:
            return None
        stats = LoadStats.from_json(status)
        return dataclasses.replace(stats, t=round(self._to_history(stats.t), 3))

    def records(self) -> list[Record]:
        """Every row fetched so far (fetching what is new first, while the master is there)."""
        self._fetch_rows()
        with self._rows_lock:
            return list(self._rows)

    def new_records(self) -> list[Record]:
        """Rows since the previous call (for watching the load live)."""
        self._fetch_rows()
        with self._rows_lock:
            new, self._handed = self._rows[self._handed:], len(self._rows)
        return new

    def clock_sync(self) -> ClockSync:
        """Row clock minus harness clock: worker → master (worst worker) combined with master → harness."""
        if self._clock_start is None:
            raise HarnessError("ClusterLoad.clock_sync() before a successful start(): nothing was measured.")
        master = self._clock_start
        if self._clock_end is not None:  # drift over the run widens the bound
            drift = abs(self._clock_end.offset_s - master.offset_s)
            master = ClockSync(master.offset_s, max(master.uncertainty_s, self._clock_end.uncertainty_s) + drift,
                               f"{CLOCK_METHOD}, at start and at stop (drift {drift * 1000:.3f} ms)",
                               master.samples + self._clock_end.samples)
        status = self._status or {}
        workers = ClockSync(0.0, float(status.get("clock_uncertainty_s") or 0.0),
                            "workers to master: round trips over Locust messages (rows stamped on the master's clock)",
                            len(status.get("workers") or []))
        return combine(workers, master)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the master pod's log (or why it cannot be read)."""
        from kubernetes.client.rest import ApiException
        try:
            masters = [p for p in self._pods() if p.metadata.labels.get(cm.COMPONENT_LABEL) == cm.MASTER]
            if not masters:
                return "(no master pod)"
            text = self._api("core").read_namespaced_pod_log(masters[0].metadata.name, self.namespace,
                                                              tail_lines=lines)
        except ApiException as exc:
            return f"(master log unavailable: HTTP {exc.status} {exc.reason})"
        except Exception as exc:  # noqa: BLE001 - a diagnosis must not hide the error it decorates
            return f"(master log unavailable: {type(exc).__name__}: {exc})"
        return str(text).rstrip() or "(empty log)"

    def _to_history(self, master_t: float) -> float:
        assert self._clock_start is not None
        return self._clock_start.to_local(master_t) - self.origin_monotonic

    def _fetch_rows(self) -> None:
        """Append the master's new rows, converted to the history's clock. Keeps what it has if it cannot read."""
        if self._clock_start is None or self._stopped:
            return
        with self._rows_lock:
            try:
                rows, self._offset = self.master.rows(self._offset)
            except MasterUnreachable:
                return
            for row in rows:
                record = Record.from_row(row)
                self._rows.append(dataclasses.replace(record, t=round(self._to_history(record.t), 6)))

    # -- stop -------------------------------------------------------------------
    def stop(self, timeout_s: float = cm.MASTER_GRACE_S) -> int | None:
        """End the stages if they still run, fetch every row, delete every object; the number of rows."""
        if not self._created or self._stopped:
            self._stopped = True
            return None
        try:
            deadline = time.monotonic() + timeout_s
            if self._status is None or not self._status.get("done"):
                self._end_stages(deadline)
            self._fetch_rows()
            samples = [s for s in (self.master.clock_sample() for _ in range(CLOCK_ROUND_TRIPS)) if s is not None]
            self._clock_end = estimate(samples, CLOCK_METHOD) if samples else None
        finally:
            self._stopped = True
            self._write_rows()
            self._delete_all()
            self._write_info()
        return len(self._rows)

    def _end_stages(self, deadline: float) -> None:
        """Ask the master to end the stages (POST /stop): it gathers the workers' last rows, reports done and
        keeps serving them. If it cannot be asked, SIGTERM does the same (a graceful delete of its pod; the
        master then serves until the grace period ends). Wait for done."""
        from kubernetes.client.rest import ApiException
        if not self.master.finish():
            for pod in self._pods():
                if pod.metadata.labels.get(cm.COMPONENT_LABEL) == cm.MASTER:
                    try:
                        self._api("core").delete_namespaced_pod(pod.metadata.name, self.namespace,
                                                                grace_period_seconds=cm.MASTER_GRACE_S)
                    except ApiException as exc:
                        if exc.status != 404:
                            raise
        while time.monotonic() < deadline:
            status = self.master.status()
            if status is not None:
                self._status = status
                if status.get("done"):
                    return
            time.sleep(POLL_S)

    def _delete_all(self) -> None:
        """Delete what start() created, newest first; then wait (bounded) until its pods are gone."""
        from kubernetes.client.rest import ApiException
        failures = []
        for kind, name in reversed(self._created):
            group, method = self._DELETE[kind]
            try:
                # A Job deleted through the API orphans its pods unless told otherwise (batch/v1 keeps the
                # old default; github.com/kubernetes/kubernetes/issues/20902): Background deletes them.
                getattr(self._api(group), method)(name, self.namespace, propagation_policy="Background")
            except ApiException as exc:
                if exc.status != 404:
                    failures.append(f"{kind} {name}: HTTP {exc.status} {exc.reason}")
            except Exception as exc:  # noqa: BLE001 - try every object, report all at the end
                failures.append(f"{kind} {name}: {type(exc).__name__}: {exc}")
        self._created = [] if not failures else self._created
        if not failures:
            self._hurry_pods()
        deadline = time.monotonic() + DELETE_WAIT_S
        while not failures and time.monotonic() < deadline:
            try:
                if not self._pods():
                    break
            except Exception:  # broad: the API is unreachable: nothing more to wait for; the owners are deleted
                break
            time.sleep(POLL_S)
        if failures:
            raise HarnessError(f"in-cluster load: could not delete {'; '.join(failures)}. Delete them with "
                               f"`kubectl -n {self.namespace} delete job,deployment,service,configmap,networkpolicy "
                               f"-l {self.names.selector}`.")

    def _hurry_pods(self) -> None:
        """The rows are in (or there are none): shorten the pods' grace periods to FINAL_GRACE_S. A second delete
        may shorten a pod's grace period, never lengthen it (kubernetes.io/docs/concepts/workloads/pods/
        pod-lifecycle/#pod-termination); a lingering master otherwise serves on for its whole MASTER_GRACE_S."""
        from kubernetes.client.rest import ApiException
        try:
            for pod in self._pods():
                try:
                    self._api("core").delete_namespaced_pod(pod.metadata.name, self.namespace,
                                                            grace_period_seconds=FINAL_GRACE_S)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        except Exception:  # broad: only a shortcut: the owners are deleted, the pods go anyway
            pass

    def _write_rows(self) -> None:
        with (self.dir / "rows.jsonl").open("w", encoding="utf-8") as out:
            for record in self._rows:
                out.write(json.dumps(record.to_row(), separators=(",", ":")) + "\n")

    def _write_info(self) -> None:
        """cluster.json: where the load ran and how its clock was tied to ours (evidence for the run)."""
        info = {"namespace": self.namespace, "image": self.image, "workers": self.workers,
                "objects": [{"kind": k, "name": n} for k, n in self._created] if not self._stopped else [],
                "selector": self.names.selector,
                "clock_start": self._clock_start.to_json() if self._clock_start else None,
                "clock_end": self._clock_end.to_json() if self._clock_end else None,
                "clock": self.clock_sync().to_json() if self._clock_start else None,
                "rows": len(self._rows), "status": self._status}
        (self.dir / "cluster.json").write_text(json.dumps(info, indent=1), encoding="utf-8")

    def __enter__(self) -> "ClusterLoad":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_load_factory(settings: Settings, context: str, api_client: Any | None = None,
                         workers: int | None = None) -> LoadFactory:
    """A LoadFactory making ClusterLoads on the cluster of `context`, in `kubernetes.namespace`, with `workers`
    worker pods (None: the load settings' `workers`, as resolved by the run).

    The context is checked against kubernetes.allowed_contexts now; the kubeconfig is read only when the first
    load is made, so building a run for a dry run reads nothing.
    """
    from ..targets.kubernetes.platform import api_client_for, check_context_allowed
    check_context_allowed(settings, context)
    clients: list[Any] = [api_client] if api_client is not None else []

    def make(url: str, load: LoadSettings, run_dir: Path, origin_monotonic: float, run_id: str) -> ClusterLoad:
        if not clients:
            clients.append(api_client_for(context))
        if not hasattr(clients[0], "param_serialize"):
            raise UserError("in-cluster load needs the kubernetes client pinned in pyproject.toml (ApiClient."
                            "param_serialize is missing from the installed one): reinstall with `pip install -e .`.")
        return ClusterLoad(url, load, run_dir, origin_monotonic, run_id, cluster=settings, api_client=clients[0],
                           workers=workers)

    return make
