"""The master's book of its workers (resilience.load.fleet), fed hand-made messages."""

from __future__ import annotations

from typing import Any

from resilience.load.clock_sync import shared
from resilience.load.fleet import FleetLedger


def batch(seq: int, count: int, requests: int, final: bool = False, **extra: Any) -> dict[str, Any]:
    rows = "".join(f'[{seq}.{i},"load","GET /menu","ok",0.01,null,null]\n' for i in range(count))
    return {"seq": seq, "rows": rows, "count": count, "requests": requests, "final": final, **extra}


def ledger_with(*workers: str) -> FleetLedger:
    ledger = FleetLedger(expected=len(workers))
    for worker in workers:
        ledger.hello(f"client-{worker}", {"worker": worker, "clock": shared().to_json()})
    return ledger


def test_rows_pass_through_and_are_counted_against_the_workers_own_count() -> None:
    ledger = ledger_with("w1", "w2")
    assert ledger.receive("client-w1", batch(0, 3, 3), t=1.0).count("\n") == 3
    assert ledger.receive("client-w2", batch(0, 2, 2)).count("\n") == 2
    assert ledger.receive("client-w1", batch(1, 1, 4, final=True)).count("\n") == 1
    assert ledger.requests() == 6 and ledger.dropped() == 0
    assert not ledger.all_final()
    ledger.receive("client-w2", batch(1, 0, 2, final=True))
    assert ledger.all_final()
    status = ledger.to_json()
    assert status["reported"] == 6 and status["workers_live"] == 2 and status["workers_lost"] == []


def test_a_missing_batch_shows_as_dropped_rows_and_a_repeated_one_is_not_written_twice() -> None:
    ledger = ledger_with("w1")
    ledger.receive("client-w1", batch(0, 5, 5))
    ledger.receive("client-w1", batch(2, 5, 15))  # batch 1 (5 rows) never arrived
    assert ledger.receive("client-w1", batch(2, 5, 15)) == ""  # the same batch again
    book = ledger.books["client-w1"]
    assert (book.missing_batches, book.repeated_batches, book.rows, book.dropped) == (1, 1, 10, 5)
    assert ledger.dropped() == 5


def test_a_worker_is_lost_once_and_not_after_its_final_batch() -> None:
    ledger = ledger_with("w1", "w2")
    ledger.receive("client-w1", batch(0, 1, 1, final=True))
    assert ledger.lose("client-w1", 5.0, "gone") is None  # it finished: leaving is not being lost
    lost = ledger.lose("client-w2", 6.0, "no heartbeat")
    assert lost is not None and lost.lost_t == 6.0
    assert ledger.lose("client-w2", 7.0, "again") is None
    assert ledger.to_json()["workers_lost"] == ["w2"] and ledger.ready == 1
    assert ledger.all_final()  # only the live ones are waited for


def test_fleet_figures_add_rates_and_take_the_worst_worker() -> None:
    ledger = ledger_with("w1", "w2")
    ledger.receive("client-w1", batch(0, 0, 0, window={"rps": 100.0, "error_pct": 0.0, "p99_ms": 20.0},
                                      health={"cpu_pct": 40.0, "lag_ms": 2.0}))
    ledger.receive("client-w2", batch(0, 0, 0, window={"rps": 50.0, "error_pct": 6.0, "p99_ms": 90.0},
                                      health={"cpu_pct": 95.0, "lag_ms": 3.0}))
    assert ledger.window() == {"rps": 150.0, "error_pct": 2.0, "p99_ms": 90.0}
    health = ledger.health({"cpu_pct": 5.0, "lag_ms": 1.0})
    assert health["cpu_pct"] == 95.0 and health["saturated"] is True and health["workers_live"] == 2
    assert ledger.health({"cpu_pct": 5.0, "lag_ms": 1.0})["workers"]["w1"]["cpu_pct"] == 40.0


def test_an_unknown_client_sends_nothing_into_the_rows() -> None:
    ledger = ledger_with("w1")
    assert ledger.receive("stranger", batch(0, 4, 4)) == ""
    assert ledger.requests() == 0
