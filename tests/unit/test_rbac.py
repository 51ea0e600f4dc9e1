"""The harness's RBAC: valid, least privilege, covering what the stack applies, and deploy/rbac.yaml in step."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from resilience.config import KubernetesSettings, Settings
from resilience.targets.kubernetes import manifests as m
from resilience.targets.kubernetes import rbac

ROOT = Path(__file__).resolve().parents[2]
RBAC_FILE = ROOT / "deploy" / "rbac.yaml"
SETTINGS = Settings()


def rules_of(manifests: list[m.Manifest], kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
    found = [x for x in manifests if x["kind"] == kind and x["metadata"].get("namespace") == namespace]
    assert len(found) == 1, (kind, namespace, found)
    return list(found[0]["rules"])


def allowed(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def resource_of(manifest: m.Manifest) -> tuple[str, str]:
    """(API group, plural resource) of a manifest: what an RBAC rule names."""
    group = manifest["apiVersion"].rpartition("/")[0]
    kind = manifest["kind"].lower()
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "es" if kind.endswith("s") else kind + "s"
    return group, plural


def test_deploy_rbac_yaml_is_the_generated_output() -> None:
    assert RBAC_FILE.read_text() == rbac.rbac_yaml(SETTINGS), \
        "deploy/rbac.yaml is stale: regenerate it with `python -m resilience.targets.kubernetes.rbac > deploy/rbac.yaml`"


@pytest.mark.parametrize("version", ["1.29", "1.33"])
def test_every_rbac_manifest_validates_strictly(version: str) -> None:
    documents = [d for d in yaml.safe_load_all(RBAC_FILE.read_text()) if d]
    assert documents == rbac.rbac_manifests(SETTINGS)
    for manifest in rbac.rbac_manifests(SETTINGS, fault_namespaces=["payments", "kitchen"]):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_role_covers_every_kind_the_stack_applies_in_its_namespace() -> None:
    rules = rules_of(rbac.rbac_manifests(SETTINGS), "Role", SETTINGS.kubernetes.namespace)
    for exposed in ("ingress", "loadbalancer"):
        settings = dataclasses.replace(SETTINGS, kubernetes=KubernetesSettings(expose=exposed))
        for manifest in m.stack_manifests(settings, "external"):
            if manifest["kind"] == "Namespace":
                continue
            group, resource = resource_of(manifest)
            # server-side apply: patch, and create for new objects; down(): list + delete; observe: get/watch
            assert {"get", "list", "watch", "create", "patch", "delete"} <= allowed(rules, group, resource), resource


def test_least_privilege() -> None:
    manifests = rbac.rbac_manifests(SETTINGS)
    role = rules_of(manifests, "Role", "school-meals")
    assert allowed(role, "", "pods") == {"get", "list", "watch", "delete"}
    assert allowed(role, "", "pods/eviction") == {"create"}
    assert allowed(role, "", "events") == {"get", "list", "watch"}
    for rules in (role, rules_of(manifests, "ClusterRole")):
        for rule in rules:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
            assert not {"secrets", "configmaps", "pods/exec", "pods/attach", "serviceaccounts", "roles",
                        "rolebindings", "clusterroles", "clusterrolebindings"} & set(rule["resources"])
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
    cluster = rules_of(manifests, "ClusterRole")
    assert allowed(cluster, "", "nodes") == {"get", "list", "watch", "patch"}  # cordon/uncordon
    assert allowed(cluster, "", "pods") == set()  # no pods across namespaces: a drain evicts per allowed namespace
    namespaces = [r for r in cluster if "namespaces" in r["resources"]]
    assert namespaces == [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["school-meals"],
                           "verbs": ["get", "patch"]}]


def test_bindings_name_the_cronjob_service_account() -> None:
    manifests = rbac.rbac_manifests(SETTINGS, fault_namespaces=["kitchen", "kitchen", "school-meals"])
    subject = {"kind": "ServiceAccount", "name": "resilience-gameday", "namespace": "school-meals-chaos"}
    bindings = [x for x in manifests if x["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert len(bindings) == 3  # the app namespace, kitchen (once), the cluster
    for binding in bindings:
        assert binding["subjects"] == [subject]
        role = [x for x in manifests if x["kind"] == binding["roleRef"]["kind"]
                and x["metadata"]["name"] == binding["roleRef"]["name"]
                and x["metadata"].get("namespace") == binding["metadata"].get("namespace")]
        assert len(role) == 1
    faults = rules_of(manifests, "Role", "kitchen")
    assert allowed(faults, "", "pods") == {"get", "list", "watch"}  # other teams' pods: evict, never delete
    assert allowed(faults, "", "pods/eviction") == {"create"}
    assert allowed(faults, "apps", "deployments") == set()
    account = [x for x in manifests if x["kind"] == "ServiceAccount"]
    assert [(a["metadata"]["name"], a["metadata"]["namespace"]) for a in account] == \
        [("resilience-gameday", "school-meals-chaos")]


def test_namespaces_are_created_for_the_bindings_but_are_not_the_harness_to_delete() -> None:
    namespaces = {x["metadata"]["name"]: x for x in rbac.rbac_manifests(SETTINGS) if x["kind"] == "Namespace"}
    assert set(namespaces) == {"school-meals", "school-meals-chaos"}
    harness = namespaces["school-meals-chaos"]["metadata"]["labels"]
    assert harness["pod-security.kubernetes.io/enforce"] == "restricted"
    app = namespaces["school-meals"]["metadata"]["labels"]
    assert m.MANAGED_BY_LABEL not in app  # down() deletes by that label
    # the labels up() applies, with the same values, so that neither apply conflicts with the other
    ours = m.stack_manifests(SETTINGS, "external")[0]["metadata"]["labels"]
    assert app == {k: v for k, v in ours.items() if k != m.MANAGED_BY_LABEL}
    other = dataclasses.replace(SETTINGS, kubernetes=KubernetesSettings(namespace="meals-staging"))
    assert rbac.cluster_role_name(other) != rbac.cluster_role_name(SETTINGS)


def test_the_generator_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "resilience.yaml"
    config.write_text("kubernetes:\n  namespace: meals-staging\n  harness_namespace: meals-chaos\n")
    assert rbac.main(["--config", str(config), "--fault-namespace", "kitchen"]) == 0
    documents = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert {(d["kind"], d["metadata"].get("namespace")) for d in documents if d["kind"] == "Role"} == \
        {("Role", "meals-staging"), ("Role", "kitchen")}
    config.write_text("kubernetes:\n  harness_namespace: Not_A_Namespace\n")
    assert rbac.main(["--config", str(config)]) == 2
    assert "kubernetes.harness_namespace" in capsys.readouterr().err
