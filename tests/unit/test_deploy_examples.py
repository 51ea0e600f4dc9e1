"""deploy/cronjob-gameday.yaml and the Dockerfile: valid, and consistent with the code they run.

Neither can run here (no cluster, no Docker): these tests check what can be
checked offline: the schemas, every cross-reference (ServiceAccount, namespace,
ConfigMap, PVC, mount paths, user id, working directory, entry point), that the
settings in the ConfigMap load, and that the shipped NetworkPolicies admit the
CronJob's namespace.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from resilience.config import IN_CLUSTER_CONTEXT, Settings, load_settings
from resilience.platform.__main__ import parse_args
from resilience.targets.kubernetes import manifests as m
from resilience.targets.kubernetes import rbac

ROOT = Path(__file__).resolve().parents[2]
CRONJOB_FILE = ROOT / "deploy" / "cronjob-gameday.yaml"
DOCKERFILE = ROOT / "Dockerfile"


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(CRONJOB_FILE.read_text()) if d]


def one(kind: str) -> dict[str, Any]:
    found = [d for d in documents() if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def pod_spec() -> dict[str, Any]:
    return dict(one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"])


def container() -> dict[str, Any]:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def mount_of(volume_kind: str) -> str:
    """The mount path of the (only) volume of this kind (persistentVolumeClaim, configMap, secret, emptyDir)."""
    names = [v["name"] for v in pod_spec()["volumes"] if volume_kind in v]
    assert len(names) == 1, volume_kind
    return next(str(vm["mountPath"]) for vm in container()["volumeMounts"] if vm["name"] == names[0])


def config_settings(tmp_path: Path) -> Any:
    path = tmp_path / "resilience.yaml"
    path.write_text(one("ConfigMap")["data"]["resilience.yaml"])
    return load_settings(path)


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def instruction(name: str) -> list[str]:
    return [args for instr, args in dockerfile() if instr == name]


@pytest.mark.parametrize("version", ["1.29", "1.33"])
def test_every_document_validates_strictly(version: str) -> None:
    assert [d["kind"] for d in documents()] == ["ConfigMap", "PersistentVolumeClaim", "CronJob"]
    for document in documents():
        kubernetes_validate.validate(document, version, strict=True)


def test_the_cronjob_runs_as_the_rbac_service_account_in_the_harness_namespace(tmp_path: Path) -> None:
    settings = config_settings(tmp_path)
    assert {d["metadata"]["namespace"] for d in documents()} == {settings.kubernetes.harness_namespace}
    assert pod_spec()["serviceAccountName"] == rbac.HARNESS_SERVICE_ACCOUNT
    accounts = [x for x in rbac.rbac_manifests(settings) if x["kind"] == "ServiceAccount"]
    assert accounts[0]["metadata"]["namespace"] == settings.kubernetes.harness_namespace


def test_in_cluster_context_yes_and_the_settings_from_the_configmap(tmp_path: Path) -> None:
    command = container()["command"]
    assert command[:2] == ["resilience", "gameday"]
    assert command[command.index("--context") + 1] == IN_CLUSTER_CONTEXT == "in-cluster"
    assert "--yes" in command  # no terminal to confirm on
    settings = config_settings(tmp_path)
    assert settings.kubernetes.allowed_contexts == (IN_CLUSTER_CONTEXT,)
    assert settings.aws.allowed_accounts
    config_path = PurePosixPath(command[command.index("--config") + 1])
    assert config_path == PurePosixPath(mount_of("configMap")) / "resilience.yaml"
    assert one("ConfigMap")["metadata"]["name"] == \
        next(v["configMap"]["name"] for v in pod_spec()["volumes"] if "configMap" in v)
    # chaostoolkit-kubernetes loads the in-cluster config only with CHAOSTOOLKIT_IN_POD=true and no
    # kubeconfig file in the way ($KUBECONFIG unset, $HOME an empty directory)
    env = {e["name"]: e.get("value") for e in container()["env"]}
    assert env["CHAOSTOOLKIT_IN_POD"] == "true" and "KUBECONFIG" not in env
    assert env["HOME"] == mount_of("emptyDir")
    assert container()["image"] == settings.kubernetes.image


def test_evidence_goes_to_the_persistent_volume_claim(tmp_path: Path) -> None:
    settings = config_settings(tmp_path)
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in pod_spec()["volumes"] if "persistentVolumeClaim" in v)
    assert claim == one("PersistentVolumeClaim")["metadata"]["name"]
    evidence = PurePosixPath(mount_of("persistentVolumeClaim"))
    for path in (settings.evidence.reports_dir, settings.stack.state_dir):
        assert PurePosixPath(path).is_relative_to(evidence), path
    assert PurePosixPath(str(settings.evidence.signing_key)).parent == PurePosixPath(mount_of("secret"))


def test_the_pod_meets_the_restricted_standard_and_matches_the_image() -> None:
    pod, box = pod_spec()["securityContext"], container()["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert box == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                   "capabilities": {"drop": ["ALL"]}}
    user, _, group = instruction("USER")[0].partition(":")
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (int(user), int(group), int(group))
    assert container()["workingDir"] == instruction("WORKDIR")[0]


def test_the_shipped_network_policies_admit_the_cronjob(tmp_path: Path) -> None:
    settings = config_settings(tmp_path)
    harness_namespace = one("CronJob")["metadata"]["namespace"]
    policies = [x for x in m.stack_manifests(settings, "external") if x["kind"] == "NetworkPolicy"]
    assert {p["metadata"]["namespace"] for p in policies} == {settings.kubernetes.namespace} != {harness_namespace}
    api_pod_labels = m.labels()
    admitted = False
    for policy in policies:
        spec = policy["spec"]
        selects_api = all(api_pod_labels.get(k) == v for k, v in spec["podSelector"].get("matchLabels", {}).items())
        for rule in spec.get("ingress", []) if selects_api else []:
            peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": harness_namespace}}}
            if peer in rule["from"] and {"protocol": "TCP", "port": m.API_PORT} in rule["ports"]:
                admitted = True
    assert admitted


def test_dockerfile_builds_the_api_image_from_this_repository() -> None:
    assert instruction("FROM") == ["python:3.11-slim"]
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.11"
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for args in instruction("COPY"):
        *sources, _destination = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source not in ignored, source
    copied = {s for args in instruction("COPY") for s in args.split()[:-1]}
    assert {"resilience", "experiments", "scenarios", "pyproject.toml", "README.md"} <= copied
    assert (ROOT / "experiments" / "suites.yaml").is_file()  # the game-day's suites, found from WORKDIR
    assert any("pip install --editable ." in args for args in instruction("RUN"))


def test_dockerfile_runs_the_platform_entry_point_as_a_non_root_user() -> None:
    command = json.loads(instruction("CMD")[0])
    assert command == list(m.API_COMMAND)  # the Deployment states the same command
    assert command[:3] == ["python", "-m", "resilience.platform"]
    assert (ROOT / "resilience" / "platform" / "__main__.py").is_file()
    args = parse_args(command[3:])
    assert (args.host, args.port) == ("0.0.0.0", m.API_PORT)
    assert instruction("EXPOSE") == [str(m.API_PORT)]
    user, _, group = instruction("USER")[0].partition(":")
    assert user.isdigit() and int(user) > 0 and group.isdigit()  # numeric: the kubelet checks runAsNonRoot
    deployment = m.deployment_manifest(Settings())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] is True


def test_no_node_consolidation_may_evict_the_harness_pod() -> None:
    """Karpenter's do-not-disrupt and Cluster Autoscaler's safe-to-evict: a game-day is not cut short (issue 18)."""
    annotations = one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["karpenter.sh/do-not-disrupt"] == "true"
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
