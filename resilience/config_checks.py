"""The settings sections whose values need more than a type check (Kubernetes, the experiments'
allow-lists, the local stack's backups) with those checks, and the checks of URLs and keys.

`config.validate` calls these; each error names the file, the field and the fix. `config` re-exports
the sections, so `from resilience.config import KubernetesSettings` is the way to name them.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .monitoring_settings import KubeMonitoringSettings

EXPOSE_MODES = ("ingress", "loadbalancer", "cluster-ip")
LOAD_GENERATORS = ("local", "in-cluster")
# An image reference as the container runtime reads it: [registry[:port]/]path[:tag][@digest], no spaces.
_IMAGE_REFERENCE = re.compile(r"^[a-z0-9]+([._:/-]+[a-zA-Z0-9_]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                              r"(@sha256:[a-f0-9]{64})?$")
LOAD_BALANCER_SCHEMES = ("internal", "internet-facing")

IN_CLUSTER_CONTEXT = "in-cluster"  # `--context in-cluster`: the pod's service account instead of a kubeconfig


@dataclass(frozen=True)
class KubernetesSettings:
    allowed_contexts: tuple[str, ...] = ()  # kubeconfig contexts, or "in-cluster" for the CronJob's service account
    namespace: str = "school-meals"
    image: str = "ghcr.io/example/school-meals-api:latest"  # built from this repository's Dockerfile
    kubernetes_version: str = "1.29"
    allowed_namespaces: tuple[str, ...] = ()  # where faults may evict or kill pods; empty: `namespace` only
    max_cordoned_nodes: int = 10  # one run never cordons more nodes than this
    eviction_timeout_s: float = 120.0  # a zone loss retries evictions a PodDisruptionBudget refuses this long
    node_selector: str | None = None  # the nodes a zone loss may cordon (label selector, e.g. a node group); null: any
    database: str = "external"  # external (RDS) | cloudnativepg (an in-cluster CloudNativePG cluster)
    # database: external without AWS: the PostgreSQL and Redis hosts the API uses (both, or neither: then the
    # endpoints are read from the AWS account's RDS cluster and ElastiCache group).
    database_host: str | None = None  # PostgreSQL host (port 5432) the API uses; null: the RDS cluster's endpoint
    cache_host: str | None = None  # Redis host (port 6379) the API uses; null: the ElastiCache group's endpoint
    # The URL users (and Locust) reach the API at; None: what the Ingress / LoadBalancer Service status reports.
    url: str | None = None
    # How the API is exposed: an Ingress (ingress_class), a LoadBalancer Service, or only the ClusterIP Service.
    expose: str = "ingress"
    ingress_class: str = "alb"  # IngressClass name; "alb": the AWS Load Balancer Controller
    ingress_host: str | None = None  # host rule of the Ingress; None: any host
    ingress_controller_namespace: str = "ingress-nginx"  # where a non-ALB ingress controller's pods run
    load_balancer_scheme: str = "internal"  # ALB/NLB: internal (inside the VPC) or internet-facing
    # Where ALB/NLB traffic comes from (target type ip: the load balancer's own VPC addresses). Narrow these to
    # the VPC's (or the load balancer subnets') CIDRs.
    load_balancer_source_cidrs: tuple[str, ...] = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    harness_namespace: str = "school-meals-chaos"  # where the game-day CronJob and its ServiceAccount live
    # HPA behaviour on the cluster: None keeps the Kubernetes defaults (scale-down window 300 s, scale-up 0 s),
    # independent of stack.autoscaling (the local controller's, shortened for experiments).
    hpa_scale_down_stabilization_s: int | None = None
    hpa_scale_up_stabilization_s: int | None = None
    # Where Locust runs: "local" (one process on the harness host) or "in-cluster" (a master Job and worker
    # pods in `namespace`, reached through the API server's service proxy: docs/in-cluster-load.md).
    load_generator: str = "local"
    load_image: str | None = None  # image of the in-cluster Locust pods; None: `image` (the same Dockerfile)
    load_start_timeout_s: float = 300.0  # in-cluster: pods Ready and the master answering (image pulls included)
    # restore_database: keep the restored CloudNativePG Cluster (<cluster>-restored) after the rollback points the app
    # back (default: delete it)
    keep_restored: bool = False
    monitoring: KubeMonitoringSettings = field(default_factory=KubeMonitoringSettings)  # Prometheus/Alertmanager alerts

    def fault_namespaces(self) -> tuple[str, ...]:
        return self.allowed_namespaces or (self.namespace,)


@dataclass(frozen=True)
class ExperimentsSettings:
    """What experiment files may run. Experiment files are code: by default only our own extension runs.

    Chaos Toolkit python activities and controls may always use resilience.faults and
    resilience.control; anything else must be listed here by the operator.
    """

    # python modules (or package prefixes: 'mychaos' allows 'mychaos' and 'mychaos.*') whose functions
    # experiments may call as actions, probes, rollbacks, controls or dynamic configuration
    allowed_modules: tuple[str, ...] = ()
    # absolute paths of executables a `process` provider may run (exactly these; empty: none may run)
    allowed_executables: tuple[str, ...] = ()
    # hosts an `http` provider may call besides 127.0.0.0/8, ::1 and localhost: names or IP networks (CIDR)
    allowed_http_hosts: tuple[str, ...] = ()


_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def validate_experiments(e: ExperimentsSettings, where: str) -> None:
    """The allow-lists must say exactly what they allow: module names, absolute paths, hosts."""
    for module in e.allowed_modules:
        if not _MODULE_NAME.match(module):
            raise UserError(f"{where}: 'experiments.allowed_modules' entry {module!r} is not a python module name; "
                            f"list dotted names such as 'mychaos' or 'mychaos.actions'.")
    for exe in e.allowed_executables:
        if not exe.startswith("/") or "\0" in exe:
            raise UserError(f"{where}: 'experiments.allowed_executables' entry {exe!r} must be an absolute path "
                            f"(e.g. /usr/local/bin/my-fault); a bare name would be looked up on PATH.")
    for host in e.allowed_http_hosts:
        try:
            ipaddress.ip_network(host, strict=False)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", host):
                raise UserError(f"{where}: 'experiments.allowed_http_hosts' entry {host!r} is neither a host "
                                f"name nor an IP network; use e.g. 'staging.internal' or '10.0.0.0/8'.") from None


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def validate_service_url(url: str, where: str, setting: str) -> None:
    """An http(s) URL with a host and no credentials (it is printed, logged and stored in run directories)."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        credentials = parts.username is not None or parts.password is not None
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise UserError(f"{where}: '{setting}' is not a URL ({exc}); use e.g. https://meals.example.com.") from None
    if credentials:  # checked first, so that no message below repeats them
        raise UserError(f"{where}: '{setting}' must not contain credentials (user:password@); they would end up "
                        f"in logs and run directories. Give the URL without them.")
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise UserError(f"{where}: '{setting}' must be an http:// or https:// URL with a host, e.g. "
                        f"https://meals.example.com; got {url!r}.")


def validate_kubernetes(k: KubernetesSettings, where: str) -> None:
    if k.database not in ("external", "cloudnativepg"):
        raise UserError(f"{where}: 'kubernetes.database' must be external (RDS) or cloudnativepg; got {k.database!r}.")
    if k.url is not None:
        validate_service_url(k.url, where, "kubernetes.url")
    check_kubernetes_nodes_and_backends(k, where)
    if not 1 <= k.max_cordoned_nodes <= 1000:
        raise UserError(f"{where}: 'kubernetes.max_cordoned_nodes' must be 1..1000; got {k.max_cordoned_nodes}.")
    if not 0 < k.eviction_timeout_s <= 3600 or not math.isfinite(k.eviction_timeout_s):
        raise UserError(f"{where}: 'kubernetes.eviction_timeout_s' must be 0 < s <= 3600; got {k.eviction_timeout_s}.")
    if any(ns in ("kube-system", "kube-public", "kube-node-lease") for ns in k.allowed_namespaces):
        raise UserError(f"{where}: 'kubernetes.allowed_namespaces' lists a system namespace ({list(k.allowed_namespaces)}); "
                        f"faults must never evict cluster components. List only application namespaces.")
    if k.expose not in EXPOSE_MODES:
        raise UserError(f"{where}: 'kubernetes.expose' must be one of {', '.join(EXPOSE_MODES)}; got {k.expose!r}.")
    if k.load_balancer_scheme not in LOAD_BALANCER_SCHEMES:
        raise UserError(f"{where}: 'kubernetes.load_balancer_scheme' must be internal or internet-facing; "
                        f"got {k.load_balancer_scheme!r}.")
    for name in ("harness_namespace", "ingress_controller_namespace"):
        value = getattr(k, name)
        if not _DNS_LABEL.match(value):
            raise UserError(f"{where}: 'kubernetes.{name}' must be a Kubernetes namespace name (lower-case letters, "
                            f"digits, '-', at most 63); got {value!r}.")
    if not _DNS_SUBDOMAIN.match(k.ingress_class) or len(k.ingress_class) > 253:
        raise UserError(f"{where}: 'kubernetes.ingress_class' must be an IngressClass name such as alb or nginx; "
                        f"got {k.ingress_class!r}.")
    if k.ingress_host is not None and not _DNS_SUBDOMAIN.match(k.ingress_host.removeprefix("*.")):
        raise UserError(f"{where}: 'kubernetes.ingress_host' must be a DNS name such as meals.example.com; "
                        f"got {k.ingress_host!r}.")
    for cidr in k.load_balancer_source_cidrs:
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            raise UserError(f"{where}: 'kubernetes.load_balancer_source_cidrs' entry {cidr!r} is not a network in "
                            f"CIDR form with no host bits set, e.g. 10.0.0.0/16.") from None
    if not k.load_balancer_source_cidrs and (k.expose == "loadbalancer" or
                                             (k.expose == "ingress" and k.ingress_class == "alb")):
        raise UserError(f"{where}: 'kubernetes.load_balancer_source_cidrs' is empty, so the NetworkPolicy would "
                        f"block the load balancer from the API pods; list the VPC's CIDRs, e.g. [10.0.0.0/16].")
    if k.load_generator not in LOAD_GENERATORS:
        raise UserError(f"{where}: 'kubernetes.load_generator' must be local (Locust on this machine) or in-cluster "
                        f"(Locust pods in kubernetes.namespace); got {k.load_generator!r}.")
    if k.load_image is not None and (len(k.load_image) > 512 or not _IMAGE_REFERENCE.match(k.load_image)):
        raise UserError(f"{where}: 'kubernetes.load_image' must be a container image reference such as "
                        f"ghcr.io/example/school-meals-api:1.4 (built from this repository's Dockerfile), or unset "
                        f"to use kubernetes.image; got {k.load_image!r}.")
    if not 10 <= k.load_start_timeout_s <= 3600 or not math.isfinite(k.load_start_timeout_s):
        raise UserError(f"{where}: 'kubernetes.load_start_timeout_s' must be 10..3600 seconds (pulling the image "
                        f"counts); got {k.load_start_timeout_s}.")
    for name in ("hpa_scale_down_stabilization_s", "hpa_scale_up_stabilization_s"):
        value = getattr(k, name)
        if value is not None and not 0 <= value <= 3600:  # the API's bounds (HPAScalingRules)
            raise UserError(f"{where}: 'kubernetes.{name}' is seconds, 0..3600 (or unset for the Kubernetes "
                            f"default); got {value}.")


_SELECTOR_TERM = re.compile(r"^!?[A-Za-z0-9][-A-Za-z0-9_./]*(!?=[-A-Za-z0-9_.]*)?$")


def check_kubernetes_nodes_and_backends(k: KubernetesSettings, where: str) -> None:
    """kubernetes.node_selector (equality terms only) and the database/cache hosts used without AWS."""
    if k.node_selector is not None and not all(_SELECTOR_TERM.match(t.strip()) for t in k.node_selector.split(",")):
        raise UserError(f"{where}: 'kubernetes.node_selector' must be a label selector of equality terms, e.g. "
                        f"eks.amazonaws.com/nodegroup=app,chaos=allowed; got {k.node_selector!r}.")
    if (k.database_host is None) != (k.cache_host is None):
        raise UserError(f"{where}: give both 'kubernetes.database_host' and 'kubernetes.cache_host' (the PostgreSQL "
                        f"and Redis hosts), or neither (the aws target then reads the endpoints from the account).")
    for name in ("database_host", "cache_host"):
        value = getattr(k, name)
        if value is not None and (len(value) > 253 or not _DNS_SUBDOMAIN.match(value.lower())):
            raise UserError(f"{where}: 'kubernetes.{name}' must be a host name or IPv4 address such as "
                            f"db.internal.example.org (no scheme, no port); got {value!r}.")


def validate_trusted_keys(paths: tuple[str, ...], where: str) -> None:
    """Each trusted key must load now: a typo would otherwise surface only when an auditor runs `verify`."""
    if not paths:
        return
    from .evidence import load_public_key  # cryptography is loaded only when keys are configured
    for path in paths:
        if not path.strip():
            raise UserError(f"{where}: 'evidence.trusted_public_keys' has an empty entry; list paths to Ed25519 "
                            f"public keys (the .pub files `resilience keygen` writes).")
        try:
            load_public_key(Path(path))
        except UserError as exc:
            raise UserError(f"{where}: 'evidence.trusted_public_keys' entry {path!r}: {exc}") from None


@dataclass(frozen=True)
class BackupSettings:
    """pgBackRest in the local stack. The platform's schedule (full daily at 02:00 IST, incremental every
    4 h, 30 days kept) compressed 60x, as the other local timings are: 1 hour of the platform is 1 minute here."""

    enabled: bool = True  # archive WAL and take backups (false: no archiving, schedule or posture)
    archive_timeout_s: int = 10  # PostgreSQL archive_timeout: bounds how old the newest archived WAL is (the RPO)
    full_every_s: float = 1440.0  # a full backup every 24 min (the platform: daily)
    incremental_every_s: float = 240.0  # an incremental every 4 min (the platform: every 4 h)
    retention_full: int = 30  # full backups kept per repository (the platform: 30 days of dailies)
    # repo2, standing for the second region: a path outside state_dir (None: "<state_dir>-region2")
    region2_path: str | None = None



def validate_backup(b: BackupSettings, state_dir: Path, region2: Path, where: str) -> None:
    """The backup schedule and the second-region repository: a loss of state_dir must not reach repo2."""
    if not 1 <= b.archive_timeout_s <= 3600:
        raise UserError(f"{where}: 'stack.backup.archive_timeout_s' bounds the RPO of a restore; give 1..3600 s, "
                        f"got {b.archive_timeout_s}.")
    if not 0 < b.incremental_every_s <= b.full_every_s:
        raise UserError(f"{where}: need 0 < 'stack.backup.incremental_every_s' <= 'stack.backup.full_every_s'; got "
                        f"{b.incremental_every_s} and {b.full_every_s}.")
    if not 1 <= b.retention_full <= 9999999:
        raise UserError(f"{where}: 'stack.backup.retention_full' is how many full backups to keep (>= 1); "
                        f"got {b.retention_full}.")
    if b.region2_path is not None and not b.region2_path.startswith("/"):
        raise UserError(f"{where}: 'stack.backup.region2_path' must be an absolute path; got {b.region2_path!r}.")
    r2, sd = region2.resolve(), state_dir.resolve()
    if r2 == sd or sd in r2.parents or r2 in sd.parents:
        raise UserError(f"{where}: 'stack.backup.region2_path' ({region2}) stands for another region: it must lie "
                        f"outside 'stack.state_dir' ({state_dir}) and not contain it. Choose e.g. {sd}-region2.")
