"""API discovery: whether the API server serves a custom resource (its CRD is installed).

Chaos Mesh, CloudNativePG and kube-prometheus-stack are optional on a cluster; a fault or a rule
that needs one is refused (or left out of the status) with the reason when the API does not serve it.
"""

from __future__ import annotations

from typing import Any


def serves(api_client: Any, group: str, version: str, plural: str) -> bool:
    """`GET /apis/<group>/<version>` lists `plural`; a 404 (the group is unknown) is False, other errors raise."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    try:
        found = client.CustomObjectsApi(api_client).get_api_resources(group, version)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return any(r.name == plural for r in (found.resources or []))
