"""The harness's reader of an in-cluster Locust master: its rows, status and clock, through the API server.

The master's HTTP port is a ClusterIP Service, not reachable from a harness
outside the cluster. The API server's service proxy subresource reaches it
with the credentials the harness already has (RBAC: `services/proxy` get):

    GET /api/v1/namespaces/{ns}/services/{name}:{port}/proxy/{path}

(kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/,
"Manually constructing apiserver proxy URLs"). The official client's
`connect_get_namespaced_service_proxy_with_path` builds this URL but cannot pass
our own query parameters (`?offset=N`) and returns no headers; so the same
request is made with the client's `param_serialize` / `call_api`, keeping its
authentication and TLS settings. The API server forwards the query string.

Clock: `clock_sample()` is one round trip to `/clock` stamped with our
monotonic clock before and after; the proxy hop is inside the round trip, so
the bound it gives is honest (clock_sync.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from .clock_sync import ClockSample

PROXY_PATH = "/api/v1/namespaces/{namespace}/services/{name}/proxy/{path}"
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ProxyAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")


class MasterUnreachable(Exception):
    """The API server could not be asked, or it could not reach the master (the message says which)."""


class MasterClient:
    """GET /rows, /status, /clock and POST /stop of the master Service `service` (port `port`) in `namespace`."""

    def __init__(self, api_client: Any, namespace: str, service: str, port: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.service = service
        self.port = port
        self.clock = clock

    def get(self, path: str, query: list[tuple[str, str]] | None = None,
            method: str = "GET", timeout_s: float = REQUEST_TIMEOUT_S) -> ProxyAnswer:
        """One proxied request; MasterUnreachable when no HTTP answer came back at all."""
        try:
            request = self.api_client.param_serialize(
                method=method, resource_path=PROXY_PATH,
                path_params={"namespace": self.namespace, "name": f"{self.service}:{self.port}", "path": path},
                query_params=list(query or []), header_params={"Accept": "*/*"}, auth_settings=["BearerToken"])
            response = self.api_client.call_api(*request, _request_timeout=timeout_s)
            body = response.read()
        except Exception as exc:  # noqa: BLE001 - urllib3, ssl and socket errors: all mean "no answer"
            raise MasterUnreachable(f"{method} {self.url(path)} got no answer: {type(exc).__name__}: "
                                    f"{str(exc)[:200]}") from None
        headers = {str(k).lower(): str(v) for k, v in (response.getheaders() or {}).items()}
        return ProxyAnswer(int(response.status), headers, bytes(body or b""))

    def url(self, path: str) -> str:
        return PROXY_PATH.format(namespace=self.namespace, name=f"{self.service}:{self.port}", path=path)

    def status(self) -> dict[str, Any] | None:
        """The master's status JSON; None while it has none (503 before the first stage) or cannot be reached."""
        try:
            answer = self.get("status")
        except MasterUnreachable:
            return None
        if answer.status != 200:
            return None
        try:
            data = json.loads(answer.body)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def rows(self, offset: int) -> tuple[list[list[Any]], int]:
        """Complete rows from byte `offset` of the master's rows file, and the offset after them."""
        answer = self.get("rows", [("offset", str(offset))])
        if answer.status != 200:
            raise MasterUnreachable(f"GET {self.url('rows')}?offset={offset} answered HTTP {answer.status}: "
                                    f"{answer.text()}")
        try:
            next_offset = int(answer.headers["x-next-offset"])
        except (KeyError, ValueError):
            raise MasterUnreachable(f"GET {self.url('rows')} answered without a valid X-Next-Offset header; "
                                    f"is the load image older than the harness?") from None
        end = answer.body.rfind(b"\n") + 1
        if offset + end != next_offset:  # the master promises complete lines up to X-Next-Offset
            raise MasterUnreachable(f"GET {self.url('rows')}?offset={offset}: {end} bytes of complete lines but "
                                    f"X-Next-Offset {next_offset}; refusing rows that may be cut")
        rows = [json.loads(line) for line in answer.body[:end].splitlines() if line.strip()]
        return rows, next_offset

    def finish(self) -> bool:
        """POST /stop: the master ends the stages, gathers its workers' last rows and keeps serving them.
        True if it said so (202); False if it could not be asked (then deleting its pod does the same)."""
        try:
            return self.get("stop", method="POST").status == 202
        except MasterUnreachable:
            return False

    def clock_sample(self) -> ClockSample | None:
        """One round trip to /clock; None if it did not answer with a reading."""
        sent = self.clock()
        try:
            answer = self.get("clock")
        except MasterUnreachable:
            return None
        received = self.clock()
        if answer.status != 200:
            return None
        try:
            remote = float(json.loads(answer.body)["monotonic"])
        except (ValueError, KeyError, TypeError):
            return None
        return ClockSample(sent=sent, remote=remote, received=received)
