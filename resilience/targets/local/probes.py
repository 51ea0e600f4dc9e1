"""What each service says about itself: one question each, no state, no decisions.

Patroni's REST API (`/patroni`, `/cluster`, `/primary`), Redis `INFO replication`,
Sentinel's `get-master-addr-by-name`, etcd's `/health`. An answer that does not
come (refused, timed out, unreadable) is None. The readiness checks the process
table starts services with are built from the same questions. One request changes
something: Patroni's reinitialize (re-clone a member that cannot rejoin).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any, Callable

from redis.exceptions import RedisError

from .secrets import PATRONI_API_USER
from .services import REDIS_MASTER_NAME, StackLayout
from .topology import ETCD, HAPROXY, NETPROXY, POSTGRES, REDIS, SENTINEL, ComponentId

TIMEOUT_S = 0.4  # one health question; a frozen or cut-off member must not stall a look for long


def http_get(url: str, timeout: float = 0.5) -> tuple[int, bytes]:
    """(status, body); status 0 when unreachable."""
    return _http(url, timeout)


def http_post(url: str, body: Any, timeout: float = 2.0, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    """POST a JSON body (with HTTP basic auth when given): (status, response body); status 0 when unreachable."""
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return _http(urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers), timeout)


def _http(request: str | urllib.request.Request, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read() if exc.fp else b""
    except (OSError, ValueError):
        return 0, b""


def http_json(url: str, timeout: float = 0.5) -> Any:
    status, body = http_get(url, timeout)
    if status == 0 or not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


# A Redis or Sentinel that does not answer, refuses, or answers something unreadable: "no answer" to a probe.
REDIS_DOWN = (RedisError, OSError, ValueError)


def redis_client(address: str, password: str, timeout: float = 0.3) -> Any:
    import redis
    host, port = address.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), password=password, socket_timeout=timeout,
                       socket_connect_timeout=timeout)


def sentinel_address(answer: Any) -> str | None:
    """host:port from Sentinel's get-master-addr-by-name answer."""
    if not answer:
        return None
    host, port = (a.decode() if isinstance(a, bytes) else a for a in answer)
    return f"{host}:{port}"


class Probes:
    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout

    def patroni(self, c: ComponentId) -> dict[str, Any] | None:
        """The member's own `/patroni` answer (state, role, timeline, its replication)."""
        return http_json(f"{self.layout.patroni_api(c)}/patroni", TIMEOUT_S) or None

    def cluster(self, c: ComponentId) -> dict[str, Any] | None:
        """Patroni's `/cluster` as this member reads it from etcd (members, roles, the sync standby)."""
        return http_json(f"{self.layout.patroni_api(c)}/cluster", TIMEOUT_S) or None

    def redis_info(self, c: ComponentId) -> dict[str, Any] | None:
        try:
            return dict(self._client(c).info("replication"))
        except REDIS_DOWN:
            return None

    def sentinel_master(self, c: ComponentId) -> tuple[bool, str | None]:
        """(answered, the master address it names); a Sentinel that knows no master answers None."""
        try:
            return True, sentinel_address(self._client(c).execute_command("SENTINEL", "get-master-addr-by-name",
                                                                          REDIS_MASTER_NAME))
        except REDIS_DOWN:
            return False, None

    def etcd_healthy(self, c: ComponentId) -> bool:
        return (http_json(f"http://{self.layout.place(c).address}/health", 0.5) or {}).get("health") == "true"

    def reinitialize(self, c: ComponentId) -> bool:
        """Ask Patroni to re-clone the member from the primary (needs the REST API's password); True if accepted."""
        status, _ = http_post(f"{self.layout.patroni_api(c)}/reinitialize", {"force": True}, 5.0,
                              auth=(PATRONI_API_USER, self.layout.secrets.patroni_api))
        return status == 200

    def ready_check(self, c: ComponentId, postgres_role: str = "any") -> Callable[[], bool]:
        """When a started service counts as up; a PostgreSQL member as `primary`, `replica` (streaming) or `any`."""
        if c.kind == ETCD:
            return lambda: self.etcd_healthy(c)
        if c.kind in (REDIS, SENTINEL):
            return lambda: bool(self._client(c).ping())
        if c.kind == HAPROXY:
            return lambda: self.layout.haproxy_socket().exists()
        if c.kind == NETPROXY:
            return lambda: self.layout.netproxy_control().exists()
        if c.kind == POSTGRES:
            return lambda: self._patroni_role(c, postgres_role)
        raise ValueError(f"no readiness check for {c.name}")

    def _patroni_role(self, c: ComponentId, role: str) -> bool:
        base = self.layout.patroni_api(c)
        if role == "primary":
            return http_get(f"{base}/primary", 0.5)[0] == 200
        data = http_json(f"{base}/patroni", 0.5) or {}
        if role == "any":
            return data.get("state") == "running"
        return data.get("state") == "running" and data.get("role") == "replica" and \
            bool((data.get("replication_state") or "streaming") == "streaming")

    def _client(self, c: ComponentId) -> Any:
        return redis_client(self.layout.place(c).address, self.layout.secrets.redis)
