"""Patroni's leader lock in etcd, read and released by the heal when a member holds it but cannot lead.

Patroni 3.0.2 (Debian 12's) renews its leader key with an unconditional put when its session expired
(`etcd3._update_leader`). A primary cut off from etcd (the partition fault) comes back with its cached
view, in which it still leads, and overwrites the key the new primary took meanwhile; its own PostgreSQL,
on the old timeline, then cannot start ("requested timeline N is not a child of this server's history", or
"could not locate a valid checkpoint record" after restoring the new timeline's WAL from the archive),
and the cluster is left with no primary, for good. Fixed upstream in Patroni 3.0.3 (patroni/patroni#2689:
"make sure the leader key isn't unconditionally overwritten"). The heal repairs it as an operator would:
stop that member, delete the key only while it still names that member (an etcd transaction that compares
the value), let the other member take the lock, start the stopped one again so that it follows.
"""

from __future__ import annotations

import base64
import json
from typing import Sequence

from .probes import http_post
from .services import PATRONI_SCOPE

LEADER_KEY = f"/service/{PATRONI_SCOPE}/leader"
DIVERGED = "is not a child of this server's history"  # PostgreSQL refusing to start on a forked-off timeline
STARTUP_FAILED = "due to startup process failure"  # the postmaster giving up: "aborting/shutting down due to ..."


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def holder(etcd: Sequence[str]) -> str | None:
    """The member named by the leader key (None: no key, or no etcd member answered)."""
    for address in etcd:
        status, reply = http_post(f"http://{address}/v3/kv/range", {"key": _b64(LEADER_KEY)}, timeout=2.0)
        if status == 200:
            kvs = json.loads(reply or b"{}").get("kvs") or []
            return base64.b64decode(kvs[0]["value"]).decode() if kvs else None
    return None


def release(etcd: Sequence[str], member: str) -> bool:
    """Delete the leader key if (and only if) it still names `member`; True when it was deleted."""
    body = {"compare": [{"key": _b64(LEADER_KEY), "target": "VALUE", "result": "EQUAL", "value": _b64(member)}],
            "success": [{"request_delete_range": {"key": _b64(LEADER_KEY)}}]}
    for address in etcd:
        status, reply = http_post(f"http://{address}/v3/kv/txn", body, timeout=2.0)
        if status == 200:
            return bool(json.loads(reply or b"{}").get("succeeded"))
    return False


def cannot_lead(log: str) -> int:
    """How many times PostgreSQL failed to start in this log (0: never).

    On the old timeline it refuses outright (DIVERGED, a FATAL). It may also first restore the new timeline's
    WAL from the archive and find no valid checkpoint in it ("PANIC: could not locate a valid checkpoint
    record", seen in CI): either way the postmaster then gives up "due to startup process failure". Counted
    both ways (the larger), so a log that has only one of the two lines still counts each attempt once."""
    return max(log.count(DIVERGED), log.count(STARTUP_FAILED))
