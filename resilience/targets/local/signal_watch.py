"""The services' own failover signals, on the run's clock, for the length of a run.

The supervisor looks at the stack once a second; a failover's phases need finer and first-hand
times. Three watches, each a thread, started with the run and stopped with it (like the
alert receiver, `alert_receiver.py`):
- every Sentinel: a pub/sub subscription to its event channels (`+sdown`, `+odown`,
  `+try-failover`, `+elected-leader`, `+switch-master`, ...), the message as Sentinel wrote it;
- Patroni's leader key in etcd (`/service/<scope>/leader`): a watch (`POST /v3/watch` on
  etcd's HTTP gateway) on every member, deduplicated by revision: the key deleted (its lease
  expired: the dead leader is detected) and set to a new member (the promotion);
- HAProxy's servers: `show stat` on its admin socket every `LB_POLL_S` (a poll, said in the record),
  each change of a server's state.

Records of source "signal" (docs/alerts.md, "Service signals"), ops:
watching (what is watched, how) | sentinel | leader | lb_server | unreachable | stopped.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..base import PlatformEvent

SIGNAL = "signal"  # = history.SIGNAL (kept literal: targets do not import the harness's history)
LB_POLL_S = 0.1  # HAProxy's server states are read this often (HAProxy has no push on its socket)
RETRY_S = 0.5  # a watch that broke is opened again after this
# what Sentinel publishes about a failover (the rest, +slave/+sentinel/+reboot/..., is topology noise)
SENTINEL_EVENTS = frozenset({
    "+sdown", "-sdown", "+odown", "-odown", "+new-epoch", "+try-failover", "+vote-for-leader", "+elected-leader",
    "+failover-state-select-slave", "+selected-slave", "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion", "+promoted-slave", "+failover-state-reconf-slaves", "+failover-end",
    "+failover-end-for-timeout", "-failover-abort-not-elected", "-failover-abort-no-good-slave", "+switch-master"})


@dataclass(frozen=True)
class Watched:
    """What to watch: (name, host:port) of each Sentinel and etcd member, and where HAProxy's socket is."""

    sentinels: list[tuple[str, str]] = field(default_factory=list)
    sentinel_password: str | None = None
    etcd: list[tuple[str, str]] = field(default_factory=list)
    leader_key: str = "/service/rsl-meals/leader"
    haproxy_socket: Path | None = None


def sentinel_detail(sentinel: str, channel: str, text: str) -> dict[str, Any]:
    """One Sentinel event: `<instance-type> <name> <ip> <port> [@ <master-name> <master-ip> <master-port>]`,
    or for +switch-master `<master-name> <old-ip> <old-port> <new-ip> <new-port>`."""
    words = text.split()
    detail: dict[str, Any] = {"sentinel": sentinel, "event": channel, "text": text}
    if channel == "+switch-master" and len(words) >= 5:
        detail.update(instance="master", name=words[0], old=f"{words[1]}:{words[2]}", new=f"{words[3]}:{words[4]}")
    elif words and words[0] in ("master", "slave", "sentinel"):
        detail.update(instance=words[0], name=words[1] if len(words) > 1 else None)
        if len(words) >= 4:
            detail["address"] = f"{words[2]}:{words[3]}"
    return detail


def leader_events(result: dict[str, Any], key: str) -> list[tuple[int, str, str | None]]:
    """(revision, "set" | "deleted", value) of one watch response's events on `key`."""
    out = []
    for event in result.get("events") or []:
        kv = event.get("kv") or {}
        if base64.b64decode(kv.get("key") or "").decode(errors="replace") != key:
            continue
        deleted = event.get("type") == "DELETE"
        value = None if deleted else base64.b64decode(kv.get("value") or "").decode(errors="replace")
        out.append((int(kv.get("mod_revision") or 0), "deleted" if deleted else "set", value))
    return out


def server_changes(before: dict[str, tuple[str, str]], now: dict[str, tuple[str, str, str]]) -> list[dict[str, Any]]:
    """HAProxy servers whose state changed: `before` name -> (status, address), `now` name -> (status, address, check)."""
    out = []
    for name, (status, address, check) in sorted(now.items()):
        previous = before.get(name)
        if previous is None or previous[0] != status:
            out.append({"server": name, "address": address, "status": status,
                        "previous": previous[0] if previous else None, "check": check})
    return out


class SignalWatch:
    """Started by `LocalPlatform.start_observing`, stopped by `stop_observing`; `events` is what it saw."""

    def __init__(self, watched: Watched) -> None:
        self.watched = watched
        self.events: list[PlatformEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closers: dict[str, Callable[[], None]] = {}  # how to unblock each thread's open connection
        self._revisions: set[int] = set()  # leader-key revisions already recorded (every etcd member reports them)
        self._next_revision = 0  # a watch opened again resumes here, so no change is lost in between
        self._leader: str | None = None
        self._failing: set[str] = set()  # watches whose failure is already recorded

    def add(self, op: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(PlatformEvent(time.monotonic(), SIGNAL, op, detail))

    def since(self, monotonic: float) -> list[PlatformEvent]:
        with self._lock:
            return [e for e in self.events if e.monotonic >= monotonic]

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        w = self.watched
        self._leader, revision = self._read_leader()
        self._next_revision = revision + 1 if revision else 0
        self.add("watching", {"sentinels": [n for n, _ in w.sentinels], "etcd": [n for n, _ in w.etcd],
                              "leader_key": w.leader_key, "leader": self._leader,
                              "haproxy": str(w.haproxy_socket) if w.haproxy_socket else None,
                              "how": {"sentinel": "pub/sub", "leader": "etcd watch", "lb_server": f"poll {LB_POLL_S} s"}})
        targets: list[tuple[str, Callable[[], None]]] = [
            *((f"sentinel-{n}", functools.partial(self._sentinel, n, a)) for n, a in w.sentinels),
            *((f"etcd-{n}", functools.partial(self._etcd, n, a)) for n, a in w.etcd)]
        if w.haproxy_socket is not None:
            targets.append(("haproxy", self._haproxy))
        self._threads = [threading.Thread(target=run, name=f"signal-{name}", daemon=True) for name, run in targets]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        if self._stop.is_set() or not self._threads:
            return
        self._stop.set()
        with self._lock:
            closers = list(self._closers.values())
        for close in closers:
            try:
                close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=3)
        self.add("stopped", {"alive": [t.name for t in self._threads if t.is_alive()]})

    def _failed(self, what: str, error: str) -> None:
        if what not in self._failing:
            self._failing.add(what)
            self.add("unreachable", {"what": what, "error": error})

    # -- Sentinel ---------------------------------------------------------------------
    def _sentinel(self, name: str, address: str) -> None:
        import redis  # the API's client library; imported here so the harness loads without it

        host, port = address.rsplit(":", 1)
        while not self._stop.is_set():
            client = redis.Redis(host=host, port=int(port), password=self.watched.sentinel_password,
                                 socket_timeout=2.0, socket_connect_timeout=1.0, decode_responses=True)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe("*")
                self._failing.discard(f"sentinel:{name}")
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.2)
                    if message and message.get("channel") in SENTINEL_EVENTS:
                        self.add("sentinel", sentinel_detail(name, str(message["channel"]), str(message["data"])))
            except (redis.RedisError, OSError) as exc:
                self._failed(f"sentinel:{name}", f"{address}: {exc}")
            finally:
                pubsub.close()
                client.close()
            self._stop.wait(RETRY_S)

    # -- Patroni's leader key ---------------------------------------------------------
    def _read_leader(self) -> tuple[str | None, int]:
        """The leader key's value now and the store's revision, from the first member that answers."""
        key = base64.b64encode(self.watched.leader_key.encode()).decode()
        for _, address in self.watched.etcd:
            host, port = address.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=1.0)
            try:
                conn.request("POST", "/v3/kv/range", json.dumps({"key": key}), {"Content-Type": "application/json"})
                body = json.loads(conn.getresponse().read())
                kvs = body.get("kvs") or []
                value = base64.b64decode(kvs[0]["value"]).decode(errors="replace") if kvs else None
                return value, int((body.get("header") or {}).get("revision") or 0)
            except (OSError, ValueError, KeyError, http.client.HTTPException):
                continue
            finally:
                conn.close()
        return None, 0

    def _etcd(self, name: str, address: str) -> None:
        host, port = address.rsplit(":", 1)
        key = self.watched.leader_key
        while not self._stop.is_set():
            conn = http.client.HTTPConnection(host, int(port), timeout=1.0)
            try:
                create: dict[str, Any] = {"key": base64.b64encode(key.encode()).decode()}
                if self._next_revision:
                    create["start_revision"] = str(self._next_revision)
                conn.request("POST", "/v3/watch", json.dumps({"create_request": create}),
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                if response.status != 200:
                    raise OSError(f"/v3/watch answered {response.status}")
                if conn.sock is not None:
                    conn.sock.settimeout(None)  # a watch is quiet for long stretches; stop() shuts the socket
                    sock = conn.sock
                    with self._lock:
                        self._closers[name] = lambda: sock.shutdown(socket.SHUT_RDWR)
                self._failing.discard(f"etcd:{name}")
                while not self._stop.is_set():
                    line = response.readline()
                    if not line:
                        raise OSError("the watch stream ended")
                    self._leader_result(name, json.loads(line).get("result") or {})
            except (OSError, ValueError, http.client.HTTPException) as exc:
                if not self._stop.is_set():
                    self._failed(f"etcd:{name}", f"{address}: {exc}")
            finally:
                with self._lock:
                    self._closers.pop(name, None)
                conn.close()
            self._stop.wait(RETRY_S)

    def _leader_result(self, member: str, result: dict[str, Any]) -> None:
        for revision, event, value in leader_events(result, self.watched.leader_key):
            with self._lock:
                if revision in self._revisions:
                    continue
                self._revisions.add(revision)
                self._next_revision = max(self._next_revision, revision + 1)
                changed = event == "deleted" or value != self._leader
                self._leader = value
            if changed:  # Patroni rewrites the same value now and then: only changes are signals
                self.add("leader", {"event": event, "value": value, "revision": revision, "member": member,
                                    "how": "etcd watch"})

    # -- HAProxy ----------------------------------------------------------------------
    def _haproxy(self) -> None:
        from .haproxy import HAProxyAdmin

        admin = HAProxyAdmin(str(self.watched.haproxy_socket), connect_timeout_s=0.2)
        before: dict[str, tuple[str, str]] = {}
        first = True
        while not self._stop.is_set():
            try:
                states = admin.server_states()
            except Exception as exc:  # noqa: BLE001 (HarnessError, OSError: the socket is gone for a moment)
                self._failed("haproxy", str(exc))
                self._stop.wait(RETRY_S)
                continue
            self._failing.discard("haproxy")
            now = {s.name: (s.status, s.address, s.check_status) for s in states.values()}
            if first:  # the state at the start is in one record, not one per server
                self.add("lb_servers", {"servers": {n: v[0] for n, v in now.items() if v[0] != "MAINT"},
                                        "how": f"poll {LB_POLL_S} s"})
                first = False
            else:
                for change in server_changes(before, now):
                    self.add("lb_server", {**change, "how": f"poll {LB_POLL_S} s"})
            before = {n: (v[0], v[1]) for n, v in now.items()}
            self._stop.wait(LB_POLL_S)


def watched_from_state(root: Path, leader_key: str) -> Watched:
    """What to watch, from the supervisor's state.json (addresses) and the stack's secrets (Sentinel's password)."""
    try:
        state = json.loads((root / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    try:
        password = json.loads((root / "secrets.json").read_text()).get("redis")
    except (OSError, ValueError):
        password = None
    rows = state.get("components") or []
    kind = lambda k: [(str(r["name"]), str(r["address"])) for r in rows if r.get("kind") == k]  # noqa: E731
    socket_path = root / "haproxy" / "admin.sock"
    return Watched(sentinels=kind("sentinel"), sentinel_password=password, etcd=kind("etcd"), leader_key=leader_key,
                   haproxy_socket=socket_path if socket_path.exists() else None)
