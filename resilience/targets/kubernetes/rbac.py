"""Least-privilege RBAC for the harness running in the cluster (the game-day CronJob), generated from settings.

`python -m resilience.targets.kubernetes.rbac [--config FILE] [--fault-namespace NS ...] > deploy/rbac.yaml`
writes what `rbac_manifests()` returns; deploy/rbac.yaml is that output for the
default settings (a unit test keeps the two equal). An administrator applies it
once, before the first game-day: `kubectl apply --server-side -f deploy/rbac.yaml`.

What the harness is allowed, and why (docs/targets.md, "RBAC and the CronJob"):

- ServiceAccount `resilience-gameday` in `kubernetes.harness_namespace`: the
  CronJob's pods run as it; `--context in-cluster` makes the harness use its
  token instead of a kubeconfig.
- Role `resilience-harness` in the app namespace (`kubernetes.namespace`): deploy
  and remove the stack by server-side apply (which needs **patch**, and **create**
  for new objects: kubernetes.io/docs/reference/using-api/server-side-apply/,
  "Access control and permissions"), watch it, kill pods, evict them (the
  `pods/eviction` subresource: kubernetes.io/docs/concepts/scheduling-eviction/
  api-eviction/). No Secrets, ConfigMaps, exec, or anything else.
- Role `resilience-load` in the app namespace, only with `kubernetes.load_generator:
  in-cluster`: create and delete the load's ConfigMap, Job, Service,
  NetworkPolicy and worker Deployment, list its pods and read the master's
  log, delete the master pod (SIGTERM ends the stages early), and `services/proxy`
  get to read the master's rows, status and clock through the API server
  (kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/).
  No get or list on ConfigMaps: it never reads one.
- Role `resilience-faults` in each further namespace a fault may act in
  (`fault_namespaces`): read and evict pods there, nothing more.
- ClusterRole `resilience-harness-<namespace>`: nodes get/list/watch (zones) and
  patch (cordon/uncordon set `spec.unschedulable`); the app Namespace object
  itself get/patch, restricted by `resourceNames` (kubernetes.io/docs/reference/
  access-authn-authz/rbac/#referring-to-resources). No pods across namespaces:
  a zone drain lists and evicts pods namespace by namespace, in the allowed
  ones only, so it cannot touch other teams' workloads even by mistake.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import yaml

from ...config import IN_CLUSTER_CONTEXT, Settings, load_settings
from ...errors import UserError
from .alert_watch import ALERTS_ROLE, PROXY_RULES, RULE_RULES
from .exposure import namespace_labels
from .manifests import MANAGED_BY_LABEL, PART_OF, Manifest, namespace_manifest

HARNESS_SERVICE_ACCOUNT = "resilience-gameday"
HARNESS_ROLE = "resilience-harness"
FAULTS_ROLE = "resilience-faults"

_READ = ["get", "list", "watch"]
_MANAGE = ["get", "list", "watch", "create", "patch", "delete"]  # apply = create + patch; down = delete

# (API group, resources, verbs): what the harness does in the app namespace
APP_NAMESPACE_RULES: tuple[tuple[str, tuple[str, ...], list[str]], ...] = (
    ("", ("services",), _MANAGE),
    ("", ("pods",), ["get", "list", "watch", "delete"]),  # observe; kill_replicas deletes pods
    ("", ("pods/eviction",), ["create"]),  # drain: POST .../pods/NAME/eviction (refused with 429 under a PDB)
    ("", ("events",), _READ),
    ("apps", ("deployments",), _MANAGE),  # scale_replicas patches spec.replicas
    ("autoscaling", ("horizontalpodautoscalers",), _MANAGE),
    ("policy", ("poddisruptionbudgets",), _MANAGE),
    ("networking.k8s.io", ("networkpolicies", "ingresses"), _MANAGE),
    ("chaos-mesh.org", ("networkchaos",), ["create", "get", "list", "delete"]),  # network faults (chaosmesh.py)
)
# what in-cluster load does in the app namespace (kubernetes.load_generator: in-cluster; resilience/load/cluster.py):
# create its objects and delete them at the end, list its pods (why one does not run), delete the master pod (SIGTERM
# ends the stages early), read the master's log, and reach its HTTP port through the service proxy
LOAD_ROLE = "resilience-load"
LOAD_RULES: tuple[tuple[str, tuple[str, ...], list[str]], ...] = (
    ("", ("configmaps",), ["create", "delete"]),  # the locustfile and stages; never read: no get or list
    ("", ("services",), ["create", "delete"]),
    ("", ("services/proxy",), ["get", "create"]),  # GET .../proxy/rows|status|clock, POST .../proxy/stop
    ("", ("pods",), ["list", "delete"]),
    ("", ("pods/log",), ["get"]),
    ("batch", ("jobs",), ["create", "delete"]),
    ("apps", ("deployments",), ["create", "delete"]),
    ("networking.k8s.io", ("networkpolicies",), ["create", "delete"]),
)
# what a fault may do in another allowed namespace
FAULT_NAMESPACE_RULES: tuple[tuple[str, tuple[str, ...], list[str]], ...] = (
    ("", ("pods",), _READ),
    ("", ("pods/eviction",), ["create"]),
    ("", ("events",), _READ),
)


def cluster_role_name(settings: Settings) -> str:
    """Cluster-scoped names are global: one per app namespace, so two installations do not collide."""
    return f"{HARNESS_ROLE}-{settings.kubernetes.namespace}"


def _labels() -> dict[str, str]:
    # Not managed-by=resilience: `down()` removes what carries that label; RBAC belongs to the administrator.
    return {"app.kubernetes.io/name": "resilience", "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/component": "harness-rbac"}


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels()}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _rules(rules: Sequence[tuple[str, tuple[str, ...], list[str]]]) -> list[dict[str, Any]]:
    return [{"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
            for group, resources, verbs in rules]


def _subject(settings: Settings) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": HARNESS_SERVICE_ACCOUNT,
            "namespace": settings.kubernetes.harness_namespace}


def _role_ref(kind: str, name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}


def _role_and_binding(settings: Settings, name: str, namespace: str,
                      rules: Sequence[tuple[str, tuple[str, ...], list[str]]]) -> list[Manifest]:
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(name, namespace),
         "rules": _rules(rules)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(name, namespace),
         "subjects": [_subject(settings)], "roleRef": _role_ref("Role", name)},
    ]


def rbac_manifests(settings: Settings, fault_namespaces: Sequence[str] = ()) -> list[Manifest]:
    """Namespaces, ServiceAccount, Roles, ClusterRole and bindings, in apply order.

    The two namespaces are created here (a RoleBinding needs its namespace), so
    the harness never needs the right to create or delete namespaces. The
    harness namespace enforces the `restricted` Pod Security Standard; the
    CronJob's pod meets it.
    """
    k8s = settings.kubernetes
    app_ns, harness_ns = k8s.namespace, k8s.harness_namespace
    harness_namespace: Manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(harness_ns)}
    harness_namespace["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "restricted",
                                                    "pod-security.kubernetes.io/enforce-version": "latest"})
    manifests: list[Manifest] = [harness_namespace]
    if app_ns != harness_ns:
        # The labels `up()` applies, so neither apply conflicts with the other; but not managed-by=resilience:
        # the namespace is the administrator's, and `down()` must leave it (and these bindings) alone.
        app_namespace = namespace_manifest(app_ns, namespace_labels(settings))
        del app_namespace["metadata"]["labels"][MANAGED_BY_LABEL]
        manifests.append(app_namespace)
    manifests.append({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": _meta(HARNESS_SERVICE_ACCOUNT, harness_ns)})
    manifests += _role_and_binding(settings, HARNESS_ROLE, app_ns, APP_NAMESPACE_RULES)
    if k8s.load_generator == "in-cluster":
        manifests += _role_and_binding(settings, LOAD_ROLE, app_ns, LOAD_RULES)
    if k8s.monitoring.enabled:  # alerts (alert_watch.py): the PrometheusRule, Alertmanager/Prometheus via the proxy
        manifests += _role_and_binding(settings, ALERTS_ROLE, app_ns, RULE_RULES)
        manifests += _role_and_binding(settings, ALERTS_ROLE, k8s.monitoring.namespace, PROXY_RULES)
    for namespace in dict.fromkeys(fault_namespaces):
        if namespace != app_ns:
            manifests += _role_and_binding(settings, FAULTS_ROLE, namespace, FAULT_NAMESPACE_RULES)
    name = cluster_role_name(settings)
    manifests += [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(name), "rules": [
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
            # `up()` applies the Namespace object; resourceNames cannot limit create, so none is granted
            {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [app_ns], "verbs": ["get", "patch"]},
        ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(name),
         "subjects": [_subject(settings)], "roleRef": _role_ref("ClusterRole", name)},
    ]
    return manifests


HEADER = f"""\
# Least-privilege RBAC for the resilience harness running in the cluster (deploy/cronjob-gameday.yaml).
# Generated by `python -m resilience.targets.kubernetes.rbac` from the default settings: do not edit by hand;
# regenerate with your settings instead (--config resilience.yaml, --fault-namespace NS for each
# further namespace a fault may act in). Apply once as a cluster administrator:
#   kubectl apply --server-side -f deploy/rbac.yaml
# The harness then runs with `--context {IN_CLUSTER_CONTEXT}` (its ServiceAccount token, no kubeconfig).
# What each rule is for: resilience/targets/kubernetes/rbac.py and docs/targets.md ("RBAC and the CronJob").
"""


def rbac_yaml(settings: Settings, fault_namespaces: Sequence[str] = ()) -> str:
    return HEADER + yaml.safe_dump_all(rbac_manifests(settings, fault_namespaces), sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.targets.kubernetes.rbac",
                                     description="Print the harness's RBAC manifests (YAML) for kubectl apply.")
    parser.add_argument("--config", metavar="FILE", help="settings file (default: resilience.yaml here or "
                                                         "$RESILIENCE_CONFIG, as every resilience command; else the defaults)")
    parser.add_argument("--fault-namespace", action="append", default=[], metavar="NS",
                        help="a further namespace faults may act in (repeatable)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)  # like the CLI: ./resilience.yaml when there is one
    except UserError as exc:
        print(f"resilience.targets.kubernetes.rbac: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(rbac_yaml(settings, args.fault_namespace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
