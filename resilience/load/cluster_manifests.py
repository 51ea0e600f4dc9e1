"""The Kubernetes objects of in-cluster load: pure functions, settings in, plain dicts out.

One load is five objects in the target's namespace, all labelled with
`app.kubernetes.io/part-of: resilience` and the run label `RUN_LABEL` (so
`ClusterLoad.stop()` and an operator can find every one of them):

- ConfigMap `<base>`: the locustfile and stages.json, mounted read-only at `CONFIG_DIR`;
- Job `<base>-master`: one Locust master pod (`--role master --linger`), see `master_job`;
- Service `<base>-master`: the master's ZMQ port (workers connect) and HTTP port
  (the harness reads rows, status and clock through the API server's service proxy);
- Deployment `<base>-workers`: N Locust worker pods, each named by its pod name;
- NetworkPolicy `<base>-master`: the namespace denies ingress by default (exposure.py);
  this admits the workers to the ZMQ port and anyone to the read-only HTTP port.

The pods meet the `restricted` Pod Security Standard (non-root, no privilege
escalation, no capabilities, RuntimeDefault seccomp, read-only root filesystem
with emptyDirs for what is written).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from .shape import MAX_DURATION_S, LoadSettings, Stage

Manifest = dict[str, Any]

ZMQ_PORT = 5557  # Locust's default master port
HTTP_PORT = 8089  # the master's /rows, /status, /clock
CONFIG_DIR = "/etc/resilience-load"  # the ConfigMap (locustfile, stages.json)
DATA_DIR = "/var/run/resilience-load"  # an emptyDir: the master's rows.jsonl and status.json
STAGES_KEY = "stages.json"
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "resilience"
COMPONENT_LABEL = "app.kubernetes.io/component"
RUN_LABEL = "resilience.dev/load-run"
# The load plays the users for the whole run: no node consolidation may evict it midway. Karpenter does not
# voluntarily disrupt a node running a pod with do-not-disrupt (karpenter.sh docs, "Disruption": "Pod-Level
# Controls"); Cluster Autoscaler does not remove a node with a safe-to-evict "false" pod (its FAQ).
NO_DISRUPTION = {"karpenter.sh/do-not-disrupt": "true", "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
MASTER, WORKER, CONFIG = "load-master", "load-worker", "load-config"
WORKER_MODULE = "resilience.load.worker"
MASTER_GRACE_S = 60  # SIGTERM ends the stages; the master then serves the last rows until this runs out
LINGER_S = 900  # how long past its stages a master may live (the harness reads the rows, then deletes it)
FINISHED_TTL_S = 600  # a finished Job (and, by owner references, the rest) is removed this long after
CONFIGMAP_LIMIT = 1_000_000  # bytes; the API refuses a ConfigMap over 1 MiB


@dataclass(frozen=True)
class LoadNames:
    """The names of one load's objects, from the run id (DNS labels, at most 63 characters)."""

    base: str
    run: str  # the value of RUN_LABEL

    @classmethod
    def for_run(cls, run_id: str) -> "LoadNames":
        """`load-<slug>-<hash>`: readable, unique per run id, and short enough for a Service name."""
        slug = re.sub(r"[^a-z0-9]+", "-", run_id.lower()).strip("-")[:28].strip("-") or "run"
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:6]
        run = f"{slug}-{digest}"
        return cls(base=f"load-{run}", run=run)

    @property
    def master(self) -> str:
        return f"{self.base}-master"

    @property
    def workers(self) -> str:
        return f"{self.base}-workers"

    @property
    def selector(self) -> str:
        """The label selector of everything this load created."""
        return f"{RUN_LABEL}={self.run}"


def load_labels(names: LoadNames, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "resilience-load", PART_OF_LABEL: PART_OF, COMPONENT_LABEL: component,
            RUN_LABEL: names.run, "app.kubernetes.io/managed-by": "resilience"}


def _meta(names: LoadNames, name: str, namespace: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": load_labels(names, component)}


def locustfile_key(file_name: str) -> str:
    """The ConfigMap key (and file name in the pod) of the locustfile: its own name when the API allows it."""
    return file_name if re.fullmatch(r"[-._a-zA-Z0-9]+\.py", file_name) else "locustfile.py"


def config_map(names: LoadNames, namespace: str, locustfile_name: str, locustfile_text: str,
               stages: list[Stage]) -> Manifest:
    data = {locustfile_key(locustfile_name): locustfile_text,
            STAGES_KEY: json.dumps({"stages": [s.to_json() for s in stages]}, indent=1)}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(names, names.base, namespace, CONFIG),
            "data": data}


def active_deadline_s(stages: list[Stage]) -> int:
    """How long the master Job may run at all: the stages, 2 min to gather workers, then `LINGER_S`.

    A harness that dies mid-run leaves no load running past this (a stage that
    lasts forever counts as 24 h, the longest stage there is).
    """
    total = sum(MAX_DURATION_S if math.isinf(s.duration_s) else s.duration_s for s in stages)
    return int(min(total, 7 * MAX_DURATION_S)) + 120 + LINGER_S


def _common_args(url: str, settings: LoadSettings, run_id: str, locustfile: str) -> list[str]:
    """What master and workers both take (as LoadProcess passes them); no think time: the user class's own."""
    think = [] if settings.wait_min_s is None or settings.wait_max_s is None else [
        "--wait-min", str(settings.wait_min_s), "--wait-max", str(settings.wait_max_s)]
    return ["--host", url, "--locustfile", f"{CONFIG_DIR}/{locustfile}", "--user-class", settings.user_class,
            "--run-id", run_id, "--timeout", str(settings.timeout_s), *think]


def master_args(names: LoadNames, url: str, settings: LoadSettings, run_id: str, locustfile: str,
                workers: int) -> list[str]:
    """`--origin 0`: rows are stamped on the master's own monotonic clock; the harness converts them."""
    return ["--role", "master", "--workers", str(workers), "--bind-host", "*", "--bind-port", str(ZMQ_PORT),
            "--http-port", str(HTTP_PORT), "--linger", *_common_args(url, settings, run_id, locustfile),
            "--stages", f"{CONFIG_DIR}/{STAGES_KEY}", "--out", f"{DATA_DIR}/rows.jsonl",
            "--status", f"{DATA_DIR}/status.json", "--origin", "0"]


def worker_args(names: LoadNames, namespace: str, url: str, settings: LoadSettings, run_id: str,
                locustfile: str) -> list[str]:
    """`$(POD_NAME)` is expanded by the kubelet from the downward-API variable: each worker is named by its pod."""
    return ["--role", "worker", "--master-host", f"{names.master}.{namespace}.svc", "--master-port", str(ZMQ_PORT),
            "--worker-id", "$(POD_NAME)", *_common_args(url, settings, run_id, locustfile)]


def _container(name: str, image: str, args: list[str], resources: dict[str, Any], ports: list[dict[str, Any]],
               probe: dict[str, Any] | None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name, "image": image, "command": ["python", "-m", WORKER_MODULE], "args": args,
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": resources,
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }
    if ports:
        container["ports"] = ports
    if probe:
        container["readinessProbe"] = probe
    return container


def _pod_spec(names: LoadNames, container: dict[str, Any], restart: str, grace_s: int) -> dict[str, Any]:
    return {"containers": [container], "restartPolicy": restart, "terminationGracePeriodSeconds": grace_s,
            "automountServiceAccountToken": False,  # the load needs no API access
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "config", "configMap": {"name": names.base}},
                        {"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]}


def master_job(names: LoadNames, namespace: str, image: str, url: str, settings: LoadSettings, run_id: str,
               locustfile: str, workers: int, stages: list[Stage]) -> Manifest:
    """The master as a Job, not a Deployment: it must run once and never be restarted.

    A restarted master would start the stages again from the first, with an
    empty rows file and a new clock, and the run would not know. A Job with
    `restartPolicy: Never` and `backoffLimit: 0` leaves a failed master failed
    (the harness sees it and says so), and `activeDeadlineSeconds` bounds how
    long load can run if the harness disappears; `ttlSecondsAfterFinished` then
    removes the Job, and garbage collection removes what names it as owner.
    """
    probe = {"httpGet": {"path": "/clock", "port": "http"}, "periodSeconds": 2, "timeoutSeconds": 1,
             "failureThreshold": 3}
    resources = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    ports = [{"name": "zmq", "containerPort": ZMQ_PORT, "protocol": "TCP"},
             {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
    container = _container("master", image, master_args(names, url, settings, run_id, locustfile, workers),
                           resources, ports, probe)
    labels = load_labels(names, MASTER)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(names, names.master, namespace, MASTER),
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": active_deadline_s(stages),
                     "ttlSecondsAfterFinished": FINISHED_TTL_S,
                     "template": {"metadata": {"labels": labels, "annotations": dict(NO_DISRUPTION)},
                                  "spec": _pod_spec(names, container, "Never", MASTER_GRACE_S)}}}


def master_service(names: LoadNames, namespace: str) -> Manifest:
    """ClusterIP for the master; `publishNotReadyAddresses` so workers reach it before its HTTP answers,
    and the harness still reaches it while it finishes after SIGTERM (Terminating, not Ready)."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(names, names.master, namespace, MASTER),
            "spec": {"type": "ClusterIP", "selector": load_labels(names, MASTER), "publishNotReadyAddresses": True,
                     "ports": [{"name": "zmq", "port": ZMQ_PORT, "targetPort": "zmq", "protocol": "TCP"},
                               {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}]}}


def worker_deployment(names: LoadNames, namespace: str, image: str, url: str, settings: LoadSettings, run_id: str,
                      locustfile: str, workers: int) -> Manifest:
    """N workers. No CPU limit: a throttled Locust would count its own pauses as the platform's latency."""
    resources = {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    container = _container("worker", image, worker_args(names, namespace, url, settings, run_id, locustfile),
                           resources, [], None)
    labels = load_labels(names, WORKER)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(names, names.workers, namespace, WORKER),
            "spec": {"replicas": workers, "selector": {"matchLabels": {RUN_LABEL: names.run, COMPONENT_LABEL: WORKER}},
                     "template": {"metadata": {"labels": labels, "annotations": dict(NO_DISRUPTION)},
                                  "spec": _pod_spec(names, container, "Always", 30)}}}


def master_network_policy(names: LoadNames, namespace: str) -> Manifest:
    """The ZMQ port from this load's workers only (a stranger could send rows); HTTP from anywhere.

    The HTTP port serves reads only (rows, status, clock). Service-proxy traffic
    comes from the API server, whose source address depends on the cluster
    (on EKS, the control plane's network interfaces in the VPC), so no `from`.
    """
    workers = {"matchLabels": {RUN_LABEL: names.run, COMPONENT_LABEL: WORKER}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(names, names.master, namespace, MASTER),
            "spec": {"podSelector": {"matchLabels": {RUN_LABEL: names.run, COMPONENT_LABEL: MASTER}},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": workers}],
                                  "ports": [{"protocol": "TCP", "port": ZMQ_PORT}]},
                                 {"ports": [{"protocol": "TCP", "port": HTTP_PORT}]}]}}


def load_image(settings: Settings) -> str:
    """`kubernetes.load_image`, else `kubernetes.image`: the repository's Dockerfile holds Locust and scenarios/."""
    return settings.kubernetes.load_image or settings.kubernetes.image


def load_manifests(settings: Settings, names: LoadNames, url: str, load: LoadSettings, run_id: str,
                   locustfile_name: str, locustfile_text: str, workers: int) -> list[Manifest]:
    """Every object of one load, in creation order: the Job first, because the others name it as their owner
    (`ClusterLoad` adds the ownerReferences once the Job has a uid); its pod waits for the ConfigMap to mount."""
    namespace = settings.kubernetes.namespace
    image = load_image(settings)
    stages = load.effective_stages()
    key = locustfile_key(locustfile_name)
    return [master_job(names, namespace, image, url, load, run_id, key, workers, stages),
            config_map(names, namespace, locustfile_name, locustfile_text, stages),
            master_service(names, namespace), master_network_policy(names, namespace),
            worker_deployment(names, namespace, image, url, load, run_id, key, workers)]


def owned_by_job(manifest: Manifest, job_name: str, job_uid: str) -> Manifest:
    """`manifest` with the master Job as its owner: deleting the Job (or its TTL running out) removes it too
    (kubernetes.io/docs/concepts/overview/working-with-objects/owners-dependents/)."""
    owned = {**manifest, "metadata": {**manifest["metadata"]}}
    owned["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                             "uid": job_uid, "blockOwnerDeletion": False}]
    return owned
