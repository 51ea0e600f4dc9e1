"""Watches: `?watch=1&resourceVersion=N` streamed as chunked JSON lines (ADDED / MODIFIED / DELETED, BOOKMARK,
ERROR 410 Gone for a resourceVersion older than the history kept); moved out of server.py unchanged.

Docs followed:
- https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
- https://kubernetes.io/docs/reference/using-api/api-concepts/#watch-bookmarks
"""

from __future__ import annotations

import copy
import json
import select
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Callable

from .selectors import selected
from .store import KIND_OF, ApiError, Change, Expired, Key, Obj

if TYPE_CHECKING:
    from .server import FakeKubeApi

TRUE = ("1", "true", "True")


def serve_watch(api: "FakeKubeApi", handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
    """Stream watch events as chunked JSON lines until timeoutSeconds, the client leaving, or stop()."""
    try:
        with api._lock:
            prefix, ns, plural, name, _ = api._route(path)
            if name is not None:
                raise ApiError(405, "MethodNotAllowed", "watch a single object with a fieldSelector "
                                                        "metadata.name=NAME on its list")
    except ApiError as exc:
        data = json.dumps(exc.status()).encode()
        handler.send_response(exc.code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        return
    labels = query.get("labelSelector", [""])[0]
    fields = query.get("fieldSelector", [""])[0]
    timeout_text = query.get("timeoutSeconds", [""])[0]
    deadline = time.monotonic() + float(timeout_text) if timeout_text else None
    bookmarks = query.get("allowWatchBookmarks", [""])[0] in TRUE
    requested = query.get("resourceVersion", [""])[0]

    def wanted(key: Key) -> bool:
        return key[0] == prefix and key[1] == plural and (ns is None or key[2] == ns)

    handler.protocol_version = "HTTP/1.1"  # chunked transfer: the client reads each event as it comes
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()  # no "Connection: close": the client must keep the socket to be able to stop
    handler.close_connection = True

    def send(event_type: str, obj: Obj) -> bool:
        data = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
        try:
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()
            return True
        except OSError:
            return False

    with api._lock:
        last = api.store.rv
        if requested in ("", "0"):
            backlog = [("ADDED", copy.deepcopy(o)) for k, o in api.store.objects.items()
                       if wanted(k) and selected(o, labels, fields)]
        else:
            try:
                backlog = _translate(api.store.changes_after(int(requested)), wanted, labels, fields)
            except Expired as exc:
                backlog = [("ERROR", ApiError(410, "Expired", str(exc)).status())]
    ok = all(send(t, o) for t, o in backlog)
    expired = any(t == "ERROR" for t, _ in backlog)
    while ok and not expired:
        with api._lock:
            if api.store.rv == last and not api._closing:
                api.store.changed.wait(0.2)
            if api._closing:
                break
            timed_out = deadline is not None and time.monotonic() >= deadline
            try:
                changes = api.store.changes_after(last)
            except Expired as exc:
                changes, expired = [], True
                events = [("ERROR", ApiError(410, "Expired", str(exc)).status())]
            else:
                events = _translate(changes, wanted, labels, fields)
            last = api.store.rv
            if timed_out and bookmarks and not expired:
                events.append(("BOOKMARK", {"kind": KIND_OF[plural], "apiVersion": _api_version(prefix),
                                            "metadata": {"resourceVersion": str(last)}}))
        ok = all(send(t, o) for t, o in events)
        if timed_out or expired or _client_gone(handler):
            break
    if ok:
        try:
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except OSError:
            pass


def _api_version(prefix: str) -> str:
    return prefix[len("apis/"):] if prefix.startswith("apis/") else "v1"


def _translate(changes: list[Change], wanted: Callable[[Key], bool], labels: str,
               fields: str) -> list[tuple[str, Obj]]:
    """Changes as a filtered watch reports them: an object entering the selection is ADDED, leaving it DELETED."""
    events = []
    for change in changes:
        if not wanted(change.key):
            continue
        now_in = change.type != "DELETED" and selected(change.obj, labels, fields)
        was_in = selected(change.previous, labels, fields) if change.type == "MODIFIED" else \
            (change.type == "DELETED" and selected(change.obj, labels, fields))
        if change.type == "ADDED" and now_in:
            events.append(("ADDED", copy.deepcopy(change.obj)))
        elif change.type == "MODIFIED" and now_in:
            events.append(("MODIFIED" if was_in else "ADDED", copy.deepcopy(change.obj)))
        elif change.type == "MODIFIED" and was_in:
            events.append(("DELETED", copy.deepcopy(change.obj)))
        elif change.type == "DELETED" and was_in:
            events.append(("DELETED", copy.deepcopy(change.obj)))
    return events


def _client_gone(handler: BaseHTTPRequestHandler) -> bool:
    """True once the client closed its end (readable with nothing to read)."""
    sock = handler.connection
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True
