"""Where users (and the load) reach the API on a cluster: the URL the load and the read-back use.

In order: `kubernetes.url`; inside the cluster, the Service's DNS name; else the Ingress, then a
LoadBalancer Service, from what their status reports.

For an Ingress two things decide the URL besides the load balancer's address:
- **the host rule**: with `kubernetes.ingress_host` set, the Ingress routes only requests whose
  `Host` header is that name (any other Host gets the default backend: a 404 from the ALB or
  ingress-nginx). The URL is then `<scheme>://<ingress_host>`, so every request (Locust's, the
  read-back's) carries that Host, and TLS the matching SNI name; that name must resolve to the load
  balancer (it is the name users reach). A wildcard host names no host: set `kubernetes.url`.
- **TLS**: `https` when the Ingress terminates TLS: `spec.tls` entries (any controller), or the AWS
  Load Balancer Controller's `certificate-arn` annotation or an HTTPS entry in `listen-ports`
  (kubernetes-sigs.github.io/aws-load-balancer-controller, guide/ingress/annotations, "TLS"); else
  `http`. Both listeners may exist: https is preferred, as users are sent there.
"""

from __future__ import annotations

import json
from typing import Any

from ...config import Settings
from ...errors import UserError
from .exposure import _ALB
from .manifests import APP_NAME, SERVICE_PORT


def ingress_scheme(ingress: Any) -> str:
    """'https' when the Ingress terminates TLS (spec.tls, or the ALB's certificate / HTTPS listener), else 'http'."""
    if ingress.spec is not None and ingress.spec.tls:
        return "https"
    annotations = (ingress.metadata.annotations if ingress.metadata else None) or {}
    if annotations.get(f"{_ALB}certificate-arn"):
        return "https"
    try:
        listeners = json.loads(annotations.get(f"{_ALB}listen-ports") or "[]")
    except ValueError:
        return "http"
    return "https" if any(isinstance(entry, dict) and "HTTPS" in entry for entry in listeners) else "http"


def ingress_url(settings: Settings, ingress: Any) -> str | None:
    """The URL through this Ingress, or None while its status reports no load balancer address."""
    addresses = [entry.hostname or entry.ip for entry in (_lb_entries(ingress)) if entry.hostname or entry.ip]
    if not addresses:
        return None
    scheme = ingress_scheme(ingress)
    host = settings.kubernetes.ingress_host
    if host is None:
        return f"{scheme}://{addresses[0]}"
    if host.startswith("*."):
        raise UserError(f"kubernetes.ingress_host is the wildcard {host!r}: the load must send one Host that the "
                        f"rule matches. Set kubernetes.url to the URL your users hit, e.g. {scheme}://"
                        f"meals{host[1:]}.")
    return f"{scheme}://{host}"


def service_url(service: Any) -> str | None:
    for entry in _lb_entries(service):
        address = entry.hostname or entry.ip
        if address:
            return f"http://{address}" + (f":{SERVICE_PORT}" if SERVICE_PORT != 80 else "")
    return None


def public_url(settings: Settings, api_client: Any, in_cluster: bool) -> str | None:
    """The URL as this module's docstring says, or None when nothing reports an address yet."""
    k8s = settings.kubernetes
    if k8s.url:
        return k8s.url.rstrip("/")
    if in_cluster:
        return f"http://{APP_NAME}.{k8s.namespace}.svc.cluster.local:{SERVICE_PORT}"
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    try:
        found = ingress_url(settings, client.NetworkingV1Api(api_client).read_namespaced_ingress(APP_NAME,
                                                                                                  k8s.namespace))
        if found:
            return found
    except ApiException as exc:
        if exc.status != 404:
            raise
    try:
        return service_url(client.CoreV1Api(api_client).read_namespaced_service(APP_NAME, k8s.namespace))
    except ApiException as exc:
        if exc.status != 404:
            raise
    return None


def _lb_entries(obj: Any) -> list[Any]:
    status = obj.status
    return list((status.load_balancer.ingress if status and status.load_balancer else None) or [])
