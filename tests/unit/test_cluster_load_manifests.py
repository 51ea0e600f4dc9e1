"""In-cluster load, the pure parts: its manifests, names, RBAC, settings, and how it reads a pod that does not run."""

from __future__ import annotations

import dataclasses
import re

import kubernetes_validate
import pytest

from resilience.config import KubernetesSettings, Settings
from resilience.load import LoadSettings, parse_stages
from resilience.load import cluster_manifests as cm
from resilience.load.pod_diagnosis import diagnose
from resilience.load.worker import parse_args
from resilience.targets.kubernetes import rbac
from resilience.targets.blast_radius import namespace_problem

SETTINGS = Settings(kubernetes=KubernetesSettings(namespace="school-meals", image="registry.example/api:1"))
LOAD = LoadSettings(stages=tuple(parse_stages("10s:5,20s:50@10")), user_class="LunchRushUser", timeout_s=1.5,
                    wait_min_s=0.1, wait_max_s=0.3)
NAMES = cm.LoadNames.for_run("20261128T115227Z-zone-failure")
URL = "http://school-meals-api.school-meals.svc"


def manifests(settings: Settings = SETTINGS, load: LoadSettings = LOAD, workers: int = 3) -> list[cm.Manifest]:
    return cm.load_manifests(settings, NAMES, URL, load, "run-1", "lunch_rush.py", "# locustfile\n", workers)


def by_kind(kind: str, settings: Settings = SETTINGS) -> cm.Manifest:
    return next(m for m in manifests(settings) if m["kind"] == kind)


def container(kind: str) -> dict:
    return by_kind(kind)["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("version", ["1.29", "1.33"])
def test_every_manifest_validates_strictly(version: str) -> None:
    for manifest in manifests():
        kubernetes_validate.validate(manifest, version, strict=True)
        kubernetes_validate.validate(cm.owned_by_job(manifest, NAMES.master, "0d4e-uid"), version, strict=True)


@pytest.mark.parametrize("run_id", ["20261128T115227Z-zone-failure", "x", "Run_ID.With.Dots" * 10, "---", "ä-ö"])
def test_names_are_dns_labels_unique_per_run(run_id: str) -> None:
    names = cm.LoadNames.for_run(run_id)
    for name in (names.base, names.master, names.workers, names.run):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
    assert names == cm.LoadNames.for_run(run_id)
    assert names.run != cm.LoadNames.for_run(run_id + "2").run


def test_everything_is_in_the_target_namespace_labelled_for_cleanup_and_allowed() -> None:
    for manifest in manifests():
        meta = manifest["metadata"]
        assert meta["namespace"] == "school-meals"
        assert namespace_problem(SETTINGS, meta["namespace"]) is None
        assert meta["labels"][cm.PART_OF_LABEL] == "resilience" and meta["labels"][cm.RUN_LABEL] == NAMES.run
    elsewhere = dataclasses.replace(SETTINGS, kubernetes=dataclasses.replace(
        SETTINGS.kubernetes, namespace="payments", allowed_namespaces=("school-meals",)))
    assert "not in kubernetes.allowed_namespaces" in (namespace_problem(elsewhere, "payments") or "")


def test_selectors_pick_the_pods_they_mean() -> None:
    master_pods = by_kind("Job")["spec"]["template"]["metadata"]["labels"]
    worker_pods = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = by_kind("Service")["spec"]["selector"]
    assert service.items() <= master_pods.items() and not service.items() <= worker_pods.items()
    deployment = by_kind("Deployment")["spec"]["selector"]["matchLabels"]
    assert deployment.items() <= worker_pods.items() and not deployment.items() <= master_pods.items()
    policy = by_kind("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= master_pods.items()
    zmq_from = policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert zmq_from.items() <= worker_pods.items() and not zmq_from.items() <= master_pods.items()
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": cm.ZMQ_PORT}]


def test_command_lines_follow_the_worker_protocol() -> None:
    master = container("Job")
    args = parse_args(master["args"])
    assert master["command"] == ["python", "-m", "resilience.load.worker"]
    assert (args.role, args.workers, args.bind_port, args.http_port, args.linger, args.origin) == \
        ("master", 3, cm.ZMQ_PORT, cm.HTTP_PORT, True, 0.0)
    assert str(args.locustfile) == f"{cm.CONFIG_DIR}/lunch_rush.py" and str(args.stages).startswith(cm.CONFIG_DIR)
    assert str(args.out).startswith(cm.DATA_DIR) and str(args.status).startswith(cm.DATA_DIR)
    assert (args.host, args.user_class, args.run_id, args.timeout, args.wait_min, args.wait_max) == \
        (URL, "LunchRushUser", "run-1", 1.5, 0.1, 0.3)
    worker = container("Deployment")
    wargs = parse_args(worker["args"])
    assert (wargs.role, wargs.master_host, wargs.master_port, wargs.worker_id) == \
        ("worker", f"{NAMES.master}.school-meals.svc", cm.ZMQ_PORT, "$(POD_NAME)")
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in worker["env"]
    assert by_kind("Deployment")["spec"]["replicas"] == 3
    assert master["image"] == worker["image"] == "registry.example/api:1"
    own = dataclasses.replace(SETTINGS, kubernetes=dataclasses.replace(SETTINGS.kubernetes, load_image="r.example/l:2"))
    assert {m["kind"]: m for m in manifests(own)}["Job"]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "r.example/l:2"


def test_no_think_time_leaves_the_user_class_its_own() -> None:
    own_pace = dataclasses.replace(LOAD, wait_min_s=None, wait_max_s=None)
    for kind in ("Job", "Deployment"):
        args = {m["kind"]: m for m in manifests(load=own_pace)}[kind]["spec"]["template"]["spec"]["containers"][0]
        assert "--wait-min" not in args["args"] and parse_args(args["args"]).wait_min is None


def test_the_config_map_carries_the_locustfile_and_the_stages() -> None:
    data = by_kind("ConfigMap")["data"]
    assert data["lunch_rush.py"] == "# locustfile\n"
    assert parse_stages(__import__("json").loads(data[cm.STAGES_KEY])["stages"]) == list(LOAD.stages)
    assert cm.locustfile_key("my scenario.py") == "locustfile.py"


def test_the_master_runs_once_and_not_forever() -> None:
    job = by_kind("Job")["spec"]
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    assert job["activeDeadlineSeconds"] == 30 + 120 + cm.LINGER_S
    forever = LoadSettings(users=10)  # no stages: `users` until stopped
    deadline = {m["kind"]: m for m in manifests(load=forever)}["Job"]["spec"]["activeDeadlineSeconds"]
    assert deadline == 24 * 3600 + 120 + cm.LINGER_S
    assert by_kind("Service")["spec"]["publishNotReadyAddresses"] is True
    for kind in ("Job", "Deployment"):
        spec = by_kind(kind)["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        security = spec["containers"][0]["securityContext"]
        assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
        assert security["allowPrivilegeEscalation"] is False


def test_the_load_role_allows_exactly_what_the_load_does() -> None:
    assert not [m for m in rbac.rbac_manifests(Settings()) if m["metadata"]["name"] == rbac.LOAD_ROLE]
    in_cluster = Settings(kubernetes=KubernetesSettings(load_generator="in-cluster"))
    role = next(m for m in rbac.rbac_manifests(in_cluster) if m["kind"] == "Role" and
                m["metadata"]["name"] == rbac.LOAD_ROLE)
    assert role["metadata"]["namespace"] == "school-meals"
    allowed = {(group, resource): set(rule["verbs"])
               for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]}
    for manifest in manifests():
        group = manifest["apiVersion"].rpartition("/")[0]
        plural = {"ConfigMap": "configmaps", "Service": "services", "NetworkPolicy": "networkpolicies",
                  "Job": "jobs", "Deployment": "deployments"}[manifest["kind"]]
        assert {"create", "delete"} <= allowed[(group, plural)], plural
    assert allowed[("", "services/proxy")] == {"get", "create"}  # GET rows/status/clock, POST stop
    assert allowed[("", "configmaps")] == {"create", "delete"}  # never reads one
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in role["rules"])
    for version in ("1.29", "1.33"):
        for manifest in rbac.rbac_manifests(in_cluster):
            kubernetes_validate.validate(manifest, version, strict=True)


def pod(name: str, phase: str = "Pending", conditions: list | None = None, waiting: dict | None = None) -> dict:
    statuses = [{"name": "master", "state": {"waiting": waiting}}] if waiting else []
    return {"metadata": {"name": name}, "status": {"phase": phase, "conditions": conditions or [],
                                                  "containerStatuses": statuses}}


def test_diagnosis_of_pods_that_do_not_run() -> None:
    unschedulable = pod("m", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/3 nodes are available: 3 node(s) were unschedulable."}])
    found = diagnose([unschedulable, pod("w", "Running")], "img:1")
    assert found.fatal is None and found.running == ["w"]
    assert "pod m cannot be scheduled: 0/3 nodes are available" in found.waiting[0]
    pull = diagnose([pod("w", waiting={"reason": "ImagePullBackOff", "message": 'Back-off pulling image "img:1"'})],
                    "img:1")
    assert pull.fatal and "cannot pull its image 'img:1'" in pull.fatal and "kubernetes.load_image" in pull.fatal
    crash = diagnose([pod("w", "Running", waiting={"reason": "CrashLoopBackOff", "message": "back-off 10s"})], "i")
    assert crash.fatal == "pod w does not run: CrashLoopBackOff: back-off 10s"
    assert "pod m failed" in (diagnose([pod("m", "Failed")], "i").fatal or "")
    assert diagnose([pod("w", "Running")], "i").fatal is None


def test_no_node_consolidation_may_evict_the_load_pods() -> None:
    for kind in ("Job", "Deployment"):
        annotations = by_kind(kind)["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"karpenter.sh/do-not-disrupt": "true",
                               "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
