"""Lunch rush: students browse the menu, order, sometimes check the order, and pay.

A Locust locustfile. It runs under `resilience.load.worker` (which records every
request into the run's history) and also under plain Locust, naming the user class
as the harness does (without one, Locust would run all three classes at once):

    locust -f scenarios/lunch_rush.py LunchRushUser --host http://127.0.0.1:8080

Orders carry sequence-numbered idempotency keys `{run_id}-{worker}{user_no}-{n}`,
n counting up per user (`worker` names the Locust worker, empty with one process), so the durability (RPO) check can tell exactly which
acknowledged writes must still exist after a fault. A failed or timed-out
order is not retried: the next order gets the next key.

Request names are the history ops ("GET /menu", "POST /orders",
"GET /orders/{id}", "POST /payments"). Settings come from the environment
(the worker sets them from its command line):

    RESILIENCE_RUN_ID          prefix of every idempotency key (default: random)
    RESILIENCE_WORKER_ID       this Locust worker's id, so keys differ across workers (default: none)
    RESILIENCE_LOAD_TIMEOUT_S  client timeout per request, seconds (default 2)
    RESILIENCE_LOAD_WAIT_MIN_S / RESILIENCE_LOAD_WAIT_MAX_S  pause between tasks (default: each
                               class's own think time, below)

Two paces. `LunchRushUser` (and `WriteHeavyUser`) think 0.5-1.5 s between
tasks: an impatient crowd, dense enough that a few dozen users measure an RTO
to the second. `LunchBreakStudent` is a student's real pace over a 30-minute
break: a look at the menu every half minute or so (10-50 s think time), two or
three orders in the break, most of them paid. About 0.035 requests per second
each, so `--users 10000 --user-class LunchBreakStudent` is 10,000 students
online at once making about 350 requests per second (benchmarks/load_fleet.py).
"""

from __future__ import annotations

import itertools
import os
import random
import uuid
from typing import Any

from locust import HttpUser, between

RUN_ID = os.environ.get("RESILIENCE_RUN_ID") or uuid.uuid4().hex[:8]
WORKER_ID = os.environ.get("RESILIENCE_WORKER_ID", "")
TIMEOUT_S = float(os.environ.get("RESILIENCE_LOAD_TIMEOUT_S", "2"))


def think_time(own_min_s: float, own_max_s: float) -> Any:
    """The harness's think time when it sets one, else the class's own (seconds between a user's tasks)."""
    if "RESILIENCE_LOAD_WAIT_MIN_S" in os.environ and "RESILIENCE_LOAD_WAIT_MAX_S" in os.environ:
        return between(float(os.environ["RESILIENCE_LOAD_WAIT_MIN_S"]), float(os.environ["RESILIENCE_LOAD_WAIT_MAX_S"]))
    return between(own_min_s, own_max_s)


PAYMENT_METHODS = ("upi", "card", "wallet")
FALLBACK_ITEMS = [{"item_id": 1, "price": 40.0}]  # used until a menu has been read

_user_numbers = itertools.count(1)  # unique per Locust process; WORKER_ID tells the processes apart


class Student(HttpUser):
    """What a student does; the user classes below only weigh the tasks differently."""

    abstract = True  # not run by itself
    wait_time = think_time(0.5, 1.5)
    read_back_share = 0.3  # fraction of orders read back right after placing them
    pay_share = 0.6  # fraction of orders paid for

    def on_start(self) -> None:
        self.user_no = f"{WORKER_ID}u{next(_user_numbers)}" if WORKER_ID else str(next(_user_numbers))
        self.orders_placed = 0
        self.menu: list[dict[str, Any]] = []
        self.browse_menu()

    def browse_menu(self) -> None:
        response = self.client.get("/menu", name="GET /menu", timeout=TIMEOUT_S)
        if _succeeded(response):
            try:
                items = response.json()
            except ValueError:
                return
            if isinstance(items, list) and items:
                self.menu = items

    def order_lunch(self) -> None:
        order = self.place_order()
        if order is None:
            return
        if random.random() < self.read_back_share:
            self.read_order(order)
        if random.random() < self.pay_share:
            self.pay(order)

    def next_key(self) -> str:
        self.orders_placed += 1
        return f"{RUN_ID}-{self.user_no}-{self.orders_placed}"

    def place_order(self) -> dict[str, Any] | None:
        """POST /orders with the next key; the created order (with its key), or None."""
        key = self.next_key()
        items = self.menu or FALLBACK_ITEMS
        chosen = random.sample(items, k=min(len(items), random.randint(1, 3)))
        body = {"idempotency_key": key, "student_id": f"student-{self.user_no}",
                "items": [{"item_id": item["item_id"], "qty": random.randint(1, 2)} for item in chosen]}
        response = self.client.post("/orders", json=body, name="POST /orders", timeout=TIMEOUT_S,
                                    context={"key": key})
        if not _succeeded(response):
            return None
        try:
            order = response.json()
        except ValueError:
            return None
        if not isinstance(order, dict) or "order_id" not in order:
            return None
        order["idempotency_key"] = key
        return order

    def read_order(self, order: dict[str, Any]) -> None:
        self.client.get(f"/orders/{order['order_id']}", name="GET /orders/{id}", timeout=TIMEOUT_S,
                        context={"key": order["idempotency_key"]})

    def pay(self, order: dict[str, Any]) -> None:
        if not order.get("total"):
            return  # nothing to pay (the platform refuses amounts <= 0)
        body = {"order_id": order["order_id"], "amount": order["total"], "method": random.choice(PAYMENT_METHODS)}
        self.client.post("/payments", json=body, name="POST /payments", timeout=TIMEOUT_S,
                         context={"key": order["idempotency_key"]})


def _succeeded(response: Any) -> bool:
    """2xx. (Not `response.ok`: on a connection error Locust's response re-raises the error there.)"""
    return 200 <= response.status_code < 300


class LunchRushUser(Student):
    """A student at lunch time: browsing a lot, ordering, paying for most orders."""

    # task: weight (Locust takes a dict; its annotation says list)
    tasks = {Student.browse_menu: 3, Student.order_lunch: 4}  # type: ignore[assignment]


class WriteHeavyUser(Student):
    """Mostly orders (for database-failover experiments): many acknowledged writes to check."""

    tasks = {Student.browse_menu: 1, Student.order_lunch: 9}  # type: ignore[assignment]
    read_back_share = 0.1
    pay_share = 0.2


class LunchBreakStudent(Student):
    """A student's real pace over a 30-minute lunch break: 60 or so looks at the menu, two or three orders."""

    wait_time = think_time(10.0, 50.0)
    # per task: 19 in 20 browse, 1 in 20 orders (about 3 orders in 60 tasks)
    tasks = {Student.browse_menu: 19, Student.order_lunch: 1}  # type: ignore[assignment]
    read_back_share = 0.5
    pay_share = 0.8
