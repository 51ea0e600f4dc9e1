"""The blast radius the operator allowed, checked before every cloud call (rollback included).

Kubernetes: faults evict or kill pods only in `kubernetes.allowed_namespaces` (default: the
platform's own namespace) and never cordon more than `kubernetes.max_cordoned_nodes` nodes.
AWS: every client is for an allowed region; every resource a fault or a rollback acts on
(DB cluster, replication group, VPC, subnet) is in `aws.allowed_resources`. Each check
returns the problem as a sentence (None: allowed), so a nemesis can refuse in a dry-run and
in a run with the same words.
"""

from __future__ import annotations

from typing import Iterable

from ..config import Settings


def namespace_problem(settings: Settings, namespace: str) -> str | None:
    allowed = settings.kubernetes.fault_namespaces()
    if namespace in allowed:
        return None
    return (f"namespace {namespace!r} is not in kubernetes.allowed_namespaces ({', '.join(allowed)}); faults touch "
            f"pods there only. Add it to the allow-list if it is meant for chaos experiments.")


def node_count_problem(settings: Settings, nodes: Iterable[str]) -> str | None:
    count, limit = len(list(nodes)), settings.kubernetes.max_cordoned_nodes
    if count <= limit:
        return None
    return (f"it would cordon {count} nodes, more than kubernetes.max_cordoned_nodes ({limit}). Raise the limit if "
            f"losing that many nodes at once is intended.")


def region_problem(settings: Settings) -> str | None:
    aws = settings.aws
    if aws.region in aws.allowed_regions:
        return None
    listed = ", ".join(aws.allowed_regions) or "nothing"
    return (f"{settings.source}: region {aws.region!r} (aws.region) is not in aws.allowed_regions (it allows "
            f"{listed}). Nothing was called. Add it if this region is meant for chaos experiments, e.g.\n"
            f"  aws:\n    allowed_regions: [{aws.region}]")


def resource_problem(settings: Settings, kind: str, identifier: str | None) -> str | None:
    if identifier and identifier in settings.aws.allowed_resources:
        return None
    return (f"{kind} {identifier!r} is not in aws.allowed_resources ({', '.join(settings.aws.allowed_resources) or 'empty'}); "
            f"a fault may act only on resources listed there. Add its identifier if it is meant for chaos experiments.")
