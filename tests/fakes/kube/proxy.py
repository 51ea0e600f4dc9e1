"""What the API server forwards rather than stores: the service proxy subresource
`/api/v1/namespaces/{ns}/services/[scheme:]{name}[:port]/proxy/{path}`, and pod logs
(`pods/{name}/log`, which the API server fetches from the node's kubelet: here the process kubelet's).

The API server forwards the request (method, path after `/proxy`, query
string, body) to one endpoint of the Service and answers with the endpoint's
status, headers and body. As the real one does:

- the port part is a port name or number of the Service; left out, the Service
  must have exactly one port;
- an endpoint is a pod the Service's selector matches that is Running with an
  IP and Ready and not being deleted; with `spec.publishNotReadyAddresses: true`
  pods that are not Ready, and pods being deleted, count too;
- no endpoint: 503 `no endpoints available for service "NAME"`; an endpoint that
  does not answer: 503 `error trying to reach service: ...`;
- an unknown Service 404, a port it does not have 404 (`no service port ...`).

Where an endpoint "listens" on this machine: `ProcessKubelet.service_address`
for pods it runs, else what a test registered with
`FakeKubeApi.serve_service(ns, name, port, ("127.0.0.1", p))`.

Docs followed:
- https://kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/#manually-constructing-apiserver-proxy-urls
  (`services/[https:]service_name[:port_name]/proxy`)
- https://kubernetes.io/docs/reference/kubernetes-api/service-resources/service-v1/ (publishNotReadyAddresses:
  "any agent which deals with endpoints for this Service should disregard any indications of ready/not-ready")
- https://kubernetes.io/docs/concepts/services-networking/service/ (selectors and endpoints)
"""

from __future__ import annotations

import http.client
import json
import re
from http.server import BaseHTTPRequestHandler
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

from .disruption import pod_ready, terminating
from .selectors import labels_of
from .store import ApiError, Obj

if TYPE_CHECKING:
    from .server import FakeKubeApi

LOG_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$")
PROXY_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<spec>[^/]+)/proxy(?P<rest>/.*)?$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate",
              "proxy-authorization", "content-length"}


@dataclass
class Forwarded:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def service_port(service: Obj, port_part: str | None) -> Obj:
    ports = (service.get("spec") or {}).get("ports") or []
    name = service["metadata"]["name"]
    if port_part is None:
        if len(ports) == 1:
            return dict(ports[0])
        raise ApiError(404, "NotFound", f'no service port specified for service "{name}" with {len(ports)} ports')
    for port in ports:
        if port_part in (port.get("name"), str(port.get("port"))):
            return dict(port)
    raise ApiError(404, "NotFound", f'no service port "{port_part}" found for service "{name}"')


def endpoints(api: "FakeKubeApi", namespace: str, service: Obj) -> list[Obj]:
    """The pods behind the Service now (the endpoints controller's rule)."""
    selector = (service.get("spec") or {}).get("selector") or {}
    everyone = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    if not selector:
        return []
    found = []
    for pod in api.store.values("pods", namespace):
        labels = labels_of(pod)
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP"):
            continue
        if everyone or (pod_ready(pod) and not terminating(pod)):
            found.append(pod)
    return found


def resolve(api: "FakeKubeApi", namespace: str, spec: str) -> tuple[str, int]:
    """(host, port) on this machine for `[scheme:]name[:port]`; ApiError as the API server answers."""
    parts = unquote(spec).split(":")
    if parts[0] in ("http", "https") and len(parts) > 1:
        parts = parts[1:]
    name, port_part = parts[0], (parts[1] if len(parts) > 1 else None)
    service = api.store.get(("api/v1", "services", namespace, name))
    if service is None:
        raise ApiError(404, "NotFound", f'services "{name}" not found', {"name": name, "kind": "services"})
    port = service_port(service, port_part)
    pods = endpoints(api, namespace, service)
    if not pods:
        raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
    address = api.service_address(namespace, name, int(port["port"]), pods[0])
    if address is None:
        raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: the fake knows no address "
                                                  f"for {namespace}/{name}:{port['port']}")
    return address


def forward(address: tuple[str, int], method: str, path: str, query: str, headers: dict[str, str],
            body: bytes) -> Forwarded:
    """One HTTP request to the endpoint; 503 as the API server words it when the endpoint does not answer."""
    target = (path or "/") + (f"?{query}" if query else "")
    connection = http.client.HTTPConnection(address[0], address[1], timeout=10)
    try:
        connection.request(method, target, body=body or None,
                           headers={k: v for k, v in headers.items() if k.lower() not in ("host", "authorization")})
        response = connection.getresponse()
        data = response.read()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        return Forwarded(response.status, kept, data)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: dial tcp "
                                                  f"{address[0]}:{address[1]}: connect: {reason.lower()}") from None
    finally:
        connection.close()


def serve_text(api: "FakeKubeApi", handler: BaseHTTPRequestHandler, path: str, query: str, raw: bytes) -> None:
    """Answers that are not API objects: a service's own answer, or a pod's log as text."""
    try:
        match = PROXY_PATH.match(path)
        if match:
            with api._lock:
                address = resolve(api, match.group("ns"), match.group("spec"))
            answer = forward(address, handler.command, match.group("rest") or "/", query,
                             dict(handler.headers.items()), raw)
            code, headers, data = answer.status, answer.headers, answer.body
        else:
            code, headers, data = pod_log(api, path, parse_qs(query))
    except ApiError as exc:
        code, headers, data = exc.code, [("Content-Type", "application/json")], json.dumps(exc.status()).encode()
    handler.send_response(code)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def pod_log(api: "FakeKubeApi", path: str, query: dict[str, list[str]]) -> tuple[int, list[tuple[str, str]], bytes]:
    """GET .../pods/NAME/log[?tailLines=N]: the container's output, if a kubelet here ran it."""
    match = LOG_PATH.match(path)
    assert match is not None
    ns, name = match.group("ns"), match.group("name")
    with api._lock:
        api.store.require(("api/v1", "pods", ns, name))
    tail = query.get("tailLines", [None])[0]
    text = api.process_kubelet.log(ns, name, int(tail) if tail else None) if api.process_kubelet else None
    if text is None:
        raise ApiError(400, "BadRequest", f'container of pod "{name}" has not run here: no log')
    return 200, [("Content-Type", "text/plain")], text.encode()
