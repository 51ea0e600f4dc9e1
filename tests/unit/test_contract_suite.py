"""The contract suite (tests/contract) and its kind example (deploy/kind) cannot rot unseen here.

Without a cluster the contract tests are collected and skipped, quickly and with a reason naming the
variable that would run them; a syntax error, a broken import or a missing fixture fails here. The kind
files are checked for what can be checked without kind: the cluster shape, the manifests against the
Kubernetes schemas, the settings file, the script's syntax, the workflow's required keys.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "tests" / "contract"
KIND = ROOT / "deploy" / "kind"
MODULES = ("test_contract_aws.py", "test_contract_kubernetes.py", "test_contract_network_faults.py", "test_contract_restore.py",
           "test_contract_run.py", "test_contract_alerts.py", "test_contract_alarms.py")


def support() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contract_support_under_test", CONTRACT / "contract_support.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_in_subprocess(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESILIENCE_CONTRACT_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_without_a_context_every_contract_test_is_collected_and_skipped_quickly() -> None:
    collected = pytest_in_subprocess("--collect-only", "-q", "tests/contract")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    assert {line.split("::")[0].rsplit("/", 1)[-1] for line in ids} == set(MODULES)
    assert len(ids) >= 25

    started = time.monotonic()
    ran = pytest_in_subprocess("-q", "-rs", "tests/contract")
    elapsed = time.monotonic() - started
    assert ran.returncode == 0, ran.stdout + ran.stderr
    summary = ran.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"{len(ids)} skipped in [0-9.]+s", summary), summary
    reasons = [line for line in ran.stdout.splitlines() if line.startswith("SKIPPED")]
    assert reasons and all("RESILIENCE_CONTRACT_CONTEXT" in r or "RESILIENCE_CONTRACT_AWS" in r for r in reasons)
    assert elapsed < 60, f"skipping the contract suite took {elapsed:.1f} s"


def test_the_skip_decisions_follow_the_environment() -> None:
    cs = support()
    assert "RESILIENCE_CONTRACT_CONTEXT" in cs.cluster_skip_reason({})
    assert "RESILIENCE_CONTRACT_CONTEXT" in cs.cluster_skip_reason({"RESILIENCE_CONTRACT_CONTEXT": "  "})
    assert cs.cluster_skip_reason({"RESILIENCE_CONTRACT_CONTEXT": "kind-resilience"}) is None
    assert "RESILIENCE_CONTRACT_AWS=1" in cs.aws_skip_reason({"RESILIENCE_CONTRACT_AWS": "yes"})
    assert cs.aws_skip_reason({"RESILIENCE_CONTRACT_AWS": "1"}) is None


def test_every_contract_module_is_marked_to_skip_without_a_cluster_or_an_account() -> None:
    """A new module cannot run unguarded: each one's pytestmark carries the gate of what it needs."""
    sys.path.insert(0, str(CONTRACT))
    try:
        for name in MODULES:
            spec = importlib.util.spec_from_file_location(f"contract_{name[:-3]}", CONTRACT / name)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            gates = [m for m in module.pytestmark if m.name == "skipif"]
            reasons = " ".join(str(m.kwargs.get("reason")) for m in gates)
            assert gates, f"{name} has no skipif gate"
            assert "RESILIENCE_CONTRACT_" in reasons or all(m.args == (False,) for m in gates), name
    finally:
        sys.path.remove(str(CONTRACT))


# -- the kind example ----------------------------------------------------------------------------------
def kind_config() -> dict[str, Any]:
    return yaml.safe_load((KIND / "kind-config.yaml").read_text())


def test_the_kind_cluster_has_a_control_plane_and_three_workers_in_three_zones() -> None:
    config = kind_config()
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [n["role"] for n in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker", "worker"]
    zones = [n.get("labels", {}).get("topology.kubernetes.io/zone") for n in config["nodes"]]
    assert zones == [None, "zone-a", "zone-b", "zone-c"]  # the control plane is in no zone: never lost
    control = config["nodes"][0]
    assert control["labels"]["ingress-ready"] == "true"
    assert {"containerPort": 80, "hostPort": 80, "protocol": "TCP"} in control["extraPortMappings"]


@pytest.mark.parametrize("version", ["1.29", "1.33"])
def test_the_kind_manifests_validate_strictly(version: str) -> None:
    manifests = list(yaml.safe_load_all((KIND / "backends.yaml").read_text()))
    assert {m["kind"] for m in manifests} == {"Namespace", "Deployment", "Service"}
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_kind_pieces_agree_with_each_other_and_with_the_platform() -> None:
    from resilience.config import load_settings
    from resilience.targets.kubernetes.exposure import api_ingress_sources, exposure_manifests
    from resilience.targets.kubernetes.manifests import DB_CREDENTIALS_SECRET, stack_manifests
    script = (KIND / "run-contract.sh").read_text()
    cluster = re.search(r"^CLUSTER=(\S+)", script, re.M)
    image = re.search(r"^API_IMAGE=(\S+)", script, re.M)
    namespace = re.search(r"^NAMESPACE=(\S+)", script, re.M)
    assert cluster and image and namespace
    settings_text = (KIND / "resilience-kind.yaml").read_text() + "evidence:\n  reports_dir: /tmp/x/reports\n"
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"resilience-kind-{os.getpid()}.yaml"
    path.write_text(settings_text)  # what the script writes, read as `resilience` reads it (validated)
    try:
        settings = load_settings(path)
    finally:
        path.unlink()
    k8s = settings.kubernetes
    assert k8s.allowed_contexts == (f"kind-{cluster.group(1)}",)
    assert k8s.image == image.group(1) and not image.group(1).endswith(":latest")  # pulled IfNotPresent: loaded
    assert k8s.namespace == namespace.group(1) and k8s.fault_namespaces() == (k8s.namespace,)
    # the load reaches the API through ingress-nginx: an Ingress of its class, admitted by the NetworkPolicy
    ingress = next(m for m in exposure_manifests(settings) if m["kind"] == "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx" and "annotations" not in ingress["metadata"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} \
        in api_ingress_sources(settings)
    assert "ingress-nginx/${INGRESS_NGINX_VERSION}/deploy/static/provider/kind/deploy.yaml" in script
    # the stand-in Redis has no TLS; the API is pointed at the in-cluster services through ExternalName
    from resilience.targets.kubernetes.manifests import BackendEndpoints
    env = {e["name"]: e.get("value") for m in stack_manifests(settings, "external", BackendEndpoints("pg", "redis"))
           if m["kind"] == "Deployment" for e in m["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RSL_REDIS_URL"].startswith("redis://")
    assert f'secret "$NAMESPACE" {DB_CREDENTIALS_SECRET}' in script
    assert "--kubelet-insecure-tls" in script and "docker build -t" in script and "kind load docker-image" in script
    assert script.rstrip().endswith("bash scripts/test.sh tests/contract")
    assert 'export RESILIENCE_CONTRACT_CONTEXT="$CONTEXT"' in script


def test_the_kind_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(KIND / "run-contract.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (KIND / "run-contract.sh").read_text().startswith("#!/usr/bin/env bash\n")


def test_the_contract_workflow_has_what_github_requires_and_runs_the_script() -> None:
    text = (KIND / "github-workflow-contract.yml").read_text()
    workflow = yaml.load(text, Loader=yaml.BaseLoader)  # BaseLoader: the key 'on' stays 'on', not True
    assert workflow["name"] and "on" in workflow and workflow["jobs"]
    for job_id, job in workflow["jobs"].items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", job_id)
        assert job["runs-on"] and job["steps"]
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step  # exactly one of them
    steps = workflow["jobs"]["kind"]["steps"]
    kind_action = next(s for s in steps if s.get("uses", "").startswith("helm/kind-action@"))
    assert kind_action["with"]["install_only"] == "true"
    assert any(s.get("run") == "bash deploy/kind/run-contract.sh" for s in steps)
    assert (ROOT / "deploy" / "kind" / "run-contract.sh").is_file()
