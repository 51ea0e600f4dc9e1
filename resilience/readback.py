"""Reading back every acknowledged order after recovery: what RPO and lost writes are measured from.

Used by a finishing run (`Run.finish`), also after an abort (the rollback
restored the stack), and by `resilience rollback` when it seals a killed run.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from .history import CHECK, FAIL, LOAD, OK, UNKNOWN, History, Record


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

    A batch that gets no answer after its retries marks the remaining batches
    unknown without trying them: the platform is not answering, and retrying
    every batch would keep a finished (or salvaged) run waiting for minutes.
    """
    import httpx
    acked = {r.key: r for r in records if r.source == LOAD and r.op == "POST /orders" and r.status == OK
             and r.key and r.detail and r.detail.get("order_id")}
    keys = list(acked)
    out: list[Record] = []
    answered = True
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for i in range(0, len(keys), batch):
            chunk = keys[i:i + batch]
            found: dict[str, Any] | None = None
            for attempt in range(10 if answered else 0):
                try:
                    resp = client.post("/orders/lookup", json={"keys": chunk})
                    if resp.status_code == 200:
                        found = resp.json().get("found", {})
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5 * (attempt + 1))
            answered = found is not None
            t = now()
            for key in chunk:
                ack = acked[key]
                detail = {"order_id": ack.detail.get("order_id") if ack.detail else None,
                          "ack_t": round(ack.t + (ack.latency or 0.0), 6)}
                status = UNKNOWN if found is None else (OK if key in found else FAIL)
                out.append(Record(t, CHECK, "readback", status, None, key, detail))
    return out
