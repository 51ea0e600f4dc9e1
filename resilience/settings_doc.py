"""`resilience config --defaults`: a complete settings file with every key explained in a comment.

The explanations are the comments beside each field in config.py (so they stay
where the field is defined), and, for the fields without one, the lines in
EXPLAINED below. A unit test checks that every key has one.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from typing import Any

import yaml

from . import config, config_checks, monitoring_settings
from .config import Settings

SECTIONS = {
    "stack": "the local stack (target local): zones, replicas, CPU limits, replication, ports, state directory",
    "targets": "the platform's stated objectives every run is judged against (experiments and --set-target "
               "override them)",
    "experiments": "what experiment files may run (experiment files are code: by default only our own extension)",
    "load": "where Locust scenarios may come from (a locustfile is code the load process runs)",
    "kubernetes": "the kubernetes and aws targets' cluster: what may be touched, how the API is deployed and exposed",
    "aws": "the aws target's account, region and managed services (RDS, ElastiCache), and what faults may touch",
    "evidence": "where run directories go, signing and verifying them",
    "stack.autoscaling": "the local replica controller: the Kubernetes HPA algorithm (autoscaling/v2)",
    "stack.backup": "pgBackRest: WAL archiving and scheduled backups into repo1 (in region) and repo2 (second region)",
    "stack.ports": "every TCP port the local stack uses (on 127.0.0.1 or inside its zone namespaces)",
}

EXPLAINED = {
    "stack.ports.api_base": "API replica i (1-based) listens on api_base + i",
    "stack.autoscaling.min_replicas": "never fewer API replicas than this",
    "stack.autoscaling.max_replicas": "never more API replicas than this (at most 50 on the local target)",
    "stack.autoscaling.tolerance": "HPA tolerance: no scaling while usage/target is within 1 +- this",
    "stack.autoscaling.scale_up_stabilization_s": "HPA scale-up stabilization window, seconds",
    "stack.autoscaling.scale_up_period_s": "the period scale_up_percent and scale_up_pods apply to, seconds",
    "stack.autoscaling.scale_down_percent": "at most this percentage of replicas removed per scale_down_period_s",
    "stack.autoscaling.scale_down_period_s": "the period scale_down_percent applies to, seconds",
    "stack.zones": "exactly three zone names (one etcd member and one Sentinel per zone)",
    "stack.synchronous_replication": "PostgreSQL commits wait for the standby: no acknowledged write is lost",
    "stack.patroni_loop_wait_s": "Patroni's loop_wait (loop_wait + 2 * retry_timeout <= ttl)",
    "stack.patroni_retry_timeout_s": "Patroni's retry_timeout for etcd and PostgreSQL operations",
    "stack.redis_down_after_ms": "Sentinel's down-after-milliseconds: a silent master is down after this",
    "stack.redis_failover_timeout_ms": "Sentinel's failover-timeout",
    "stack.startup_timeout_s": "`up` waits this long for every component to be healthy",
    "targets.rto_s": "RTO: fault injection until the service stays healthy, seconds",
    "targets.rpo_s": "RPO: fault time minus the acknowledgement of the earliest lost write, seconds",
    "targets.p99_ms": "P99 latency of load requests outside the fault phase, milliseconds",
    "targets.autoscale_s": "load step until the replicas the autoscaler settles on are ready, seconds",
    "kubernetes.namespace": "where `up` deploys the platform and faults act by default",
    "kubernetes.kubernetes_version": "the API version the manifests are checked against",
    "kubernetes.hpa_scale_up_stabilization_s": "the HPA's scale-up window on the cluster (null: Kubernetes' 0 s)",
    "aws.allowed_accounts": "AWS account ids (12 digits, quoted) a run may use; empty: none, not even a dry run",
    "aws.region": "the region of RDS and ElastiCache (must be in allowed_regions)",
    "aws.rds_cluster": "the RDS DB cluster identifier (PostgreSQL); list it in allowed_resources to fail it over",
    "aws.elasticache_group": "the ElastiCache replication group id (Redis); list it in allowed_resources",
    "evidence.reports_dir": "where run directories and ledger.jsonl go (relative: to the working directory)",
    "evidence.frameworks_in_scope": "named in the compliance report's scope section",
}


def field_comments() -> dict[str, str]:
    """Class name.field -> the comment beside it (or on the lines just above it) where the settings are defined."""
    out: dict[str, str] = {}
    for module in (config, config_checks, monitoring_settings):  # config_checks: kubernetes, experiments; alerts
        out.update(_comments_in(inspect.getsource(module)))
    return out


def _comments_in(source: str) -> dict[str, str]:
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            line = lines[statement.lineno - 1]
            comment = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            above: list[str] = []
            number = statement.lineno - 2
            while number >= 0 and lines[number].strip().startswith("#"):
                above.insert(0, lines[number].strip().lstrip("# ").strip())
                number -= 1
            out[f"{node.name}.{statement.target.id}"] = comment or " ".join(above)
    return out


def _explanation(path: str, owner: type, name: str, comments: dict[str, str]) -> str:
    return EXPLAINED.get(path) or comments.get(f"{owner.__name__}.{name}", "")


def commented_defaults() -> str:
    """Every setting with its default and a comment; valid YAML that `--config` reads back unchanged."""
    comments = field_comments()
    lines = ["# resilience settings: every key with its default. Save as resilience.yaml in the working directory",
             "# (or pass --config FILE), keep only what you change, and check it with `resilience config`."]
    _section(Settings(), "", 0, lines, comments)
    return "\n".join(lines) + "\n"


def _section(obj: Any, prefix: str, depth: int, lines: list[str], comments: dict[str, str]) -> None:
    indent = "  " * depth
    for f in dataclasses.fields(obj):
        if f.name == "source":
            continue
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            if depth == 0:
                lines.append("")
            lines.append(f"{indent}{f.name}:  # {SECTIONS.get(path) or _explanation(path, type(obj), f.name, comments)}")
            _section(value, f"{path}.", depth + 1, lines, comments)
            continue
        plain = list(value) if isinstance(value, tuple) else value
        text = yaml.safe_dump({f.name: plain}, default_flow_style=True, width=10_000).strip()[1:-1]
        explanation = _explanation(path, type(obj), f.name, comments)
        lines.append(f"{indent}{text}" + (f"  # {explanation}" if explanation else ""))
