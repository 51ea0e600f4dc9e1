"""Reading back every acknowledged order after recovery: what RPO and lost writes are measured from.

Used by a finishing run (`Run.finish`), also after an abort (the rollback
restored the stack), and by `resilience rollback` when it seals a killed run.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from .history import CHECK, FAIL, LOAD, OK, UNKNOWN, History, Record

READBACK_OP = "readback"  # an acknowledged order read back
READBACK_SENT_OP = "readback-sent"  # an order sent without an acknowledgement, looked up


def read_back_orders(history: History, url: str, now: Callable[[], float], say: Callable[[str], None]) -> None:
    """Add a check/readback record per acknowledged order to `history`; when the platform at `url` does not
    answer, none (the orders stay unverified, and `say` says so)."""
    if not stack_answers(url):
        say(f"acknowledged orders stay unverified: the platform at {url} does not answer")
        return
    say(f"reading back every acknowledged order through {url} ...")
    history.extend(readback(url, history.records, now))


def stack_answers(url: str, timeout_s: float = 3.0) -> bool:
    """Whether the platform answers at `url` at all (any HTTP answer from /health/ready), within `timeout_s`."""
    import httpx
    try:
        httpx.get(url.rstrip("/") + "/health/ready", timeout=timeout_s)
        return True
    except httpx.HTTPError:
        return False


def readback(url: str, records: list[Record], now: Callable[[], float], batch: int = 2000) -> list[Record]:
    """Read back every acknowledged order; one check record per order (ok found, fail missing, unknown).

    A found order's record carries what was read (`detail.read`: order_id, items, total_paise) so the
    restore checker can compare it with what was acknowledged. Every order the load sent without an
    acknowledgement (a failed or timed-out POST /orders) is looked up too (`check`/`readback-sent`): one
    present after recovery was kept although never acknowledged.

    A batch that gets no answer after its retries marks the remaining batches
    unknown without trying them: the platform is not answering, and retrying
    every batch would keep a finished (or salvaged) run waiting for minutes.
    """
    import httpx
    acked = {r.key: r for r in records if r.source == LOAD and r.op == "POST /orders" and r.status == OK
             and r.key and r.detail and r.detail.get("order_id")}
    sent = {r.key: r for r in records if r.source == LOAD and r.op == "POST /orders" and r.status in (FAIL, UNKNOWN)
            and r.key and r.key not in acked}
    out: list[Record] = []
    answered = True
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for op, orders in ((READBACK_OP, acked), (READBACK_SENT_OP, sent)):
            keys = list(orders)
            for i in range(0, len(keys), batch):
                chunk = keys[i:i + batch]
                found = _lookup(client, chunk, attempts=10 if answered else 0)
                answered = found is not None
                t = now()
                for key in chunk:
                    request = orders[key]
                    detail: dict[str, Any] = {"order_id": request.detail.get("order_id") if request.detail else None,
                                              "ack_t": round(request.t + (request.latency or 0.0), 6)}
                    if op == READBACK_SENT_OP:
                        detail = {"sent_status": request.status}
                    status = UNKNOWN if found is None else (OK if key in found else FAIL)
                    if found is not None and key in found:
                        detail["read"] = _what_was_read(found[key])
                    out.append(Record(t, CHECK, op, status, None, key, detail))
    return out


def _lookup(client: Any, keys: list[str], attempts: int) -> dict[str, Any] | None:
    """{key: order} of the keys that exist (POST /orders/lookup), or None if the platform never answered."""
    import httpx
    for attempt in range(attempts):
        try:
            resp = client.post("/orders/lookup", json={"keys": keys})
            if resp.status_code == 200:
                found = resp.json().get("found", {})
                return found if isinstance(found, dict) else {}
        except httpx.HTTPError:
            pass
        time.sleep(0.5 * (attempt + 1))
    return None


def _what_was_read(order: Any) -> dict[str, Any]:
    """The fields of a looked-up order the restore checker compares (an older platform sends only order_id)."""
    order = order if isinstance(order, dict) else {}
    return {name: order[name] for name in ("order_id", "items", "total_paise") if name in order}
