"""PostgreSQL access for the platform: connecting to the current primary, schema, queries.

Why our own host loop instead of asyncpg's multi-host DSN handling: asyncpg
applies its connect timeout to the whole host list, so one black-holed host
(a partitioned old primary) eats the entire budget; and a host answering "the
database system is starting up" aborts the search instead of moving on. Here
every host gets its own timeout, any error moves on to the next host, and the
host that last worked is tried first.

Every query runs under one time budget. Any failure (timeout, lost connection,
read-only server after a failover) terminates the connection, so the pool
builds a fresh one against the current primary, and surfaces as
`DatabaseUnavailable`, which the app answers with 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Sequence, TypeVar

import asyncpg

from .settings import PlatformSettings

log = logging.getLogger("resilience.platform")

T = TypeVar("T")

# Any number will do, as long as every replica uses the same one.
SCHEMA_LOCK_ID = 720_150_001

SCHEMA_SQL = """
CREATE SEQUENCE IF NOT EXISTS order_seq;
CREATE TABLE IF NOT EXISTS menu_items (
    item_id      integer PRIMARY KEY,
    name         text    NOT NULL,
    description  text    NOT NULL,
    price_paise  integer NOT NULL CHECK (price_paise > 0),
    vegetarian   boolean NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id        uuid        PRIMARY KEY,
    seq             bigint      NOT NULL UNIQUE DEFAULT nextval('order_seq'),
    idempotency_key text        NOT NULL UNIQUE,
    student_id      text        NOT NULL,
    items           jsonb       NOT NULL,
    total_paise     bigint      NOT NULL,
    served_by       text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS payments (
    order_id     uuid        PRIMARY KEY REFERENCES orders (order_id),
    amount_paise bigint      NOT NULL,
    method       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
"""

# (item_id, name, description, price in paise, vegetarian): a Bangalore school lunch menu.
MENU_SEED: tuple[tuple[int, str, str, int, bool], ...] = (
    (1, "Bisi Bele Bath", "Spiced rice and lentils with vegetables, with boondi", 4500, True),
    (2, "Lemon Rice", "Rice tempered with lemon, peanuts and curry leaves", 3000, True),
    (3, "Curd Rice", "Rice with curd, tempered with mustard; pickle on the side", 3000, True),
    (4, "Idli Vada", "Two idlis and one medu vada with sambar and chutney", 3500, True),
    (5, "Masala Dosa", "Crisp dosa with potato palya, chutney and sambar", 5000, True),
    (6, "Ragi Mudde with Soppu Saaru", "Finger-millet balls with greens curry", 4000, True),
    (7, "Vegetable Pulao with Raita", "Mildly spiced rice with seasonal vegetables", 4500, True),
    (8, "Chapati with Vegetable Kurma", "Two chapatis with coconut vegetable kurma", 4000, True),
    (9, "Puliyogare", "Tamarind rice with groundnuts", 3500, True),
    (10, "Khara Bath", "Semolina upma with vegetables", 3000, True),
    (11, "Kesari Bath", "Sweet semolina with ghee and cashews", 2500, True),
    (12, "Egg Curry with Rice", "Boiled egg in onion-tomato gravy with steamed rice", 5500, False),
)


class DatabaseUnavailable(Exception):
    """PostgreSQL could not serve the request (down, unreachable, read-only, too slow)."""


def host_dsns(dsn: str) -> list[str]:
    """Split a libpq multi-host URL into one URL per host, keeping everything else as is.

    'postgresql://u:p@h1:5441,h2:5442/db?x=y' ->
    ['postgresql://u:p@h1:5441/db?x=y', 'postgresql://u:p@h2:5442/db?x=y'].
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return [dsn]
    end = len(rest)
    for stop in ("/", "?"):
        index = rest.find(stop)
        if index != -1:
            end = min(end, index)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hosts = netloc.rpartition("@")
    prefix = f"{scheme}://{userinfo}{at}"
    return [f"{prefix}{host}{tail}" for host in hosts.split(",") if host] or [dsn]


def rupees(paise: int) -> float:
    return round(paise / 100, 2)


def order_total_paise(items: Sequence[tuple[int, int]], prices: dict[int, int]) -> int:
    """Total of (item_id, qty) pairs; KeyError names the first unknown item."""
    return sum(prices[item_id] * qty for item_id, qty in items)


@dataclass(frozen=True)
class Order:
    order_id: str
    seq: int
    idempotency_key: str
    student_id: str
    items: list[dict[str, int]]
    total_paise: int
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "seq": self.seq,
            "idempotency_key": self.idempotency_key,
            "student_id": self.student_id,
            "items": self.items,
            "total": rupees(self.total_paise),
            "currency": "INR",
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> "Order":
        return cls(str(row["order_id"]), row["seq"], row["idempotency_key"], row["student_id"],
                   json.loads(row["items"]), row["total_paise"], row["created_at"])


@dataclass(frozen=True)
class Payment:
    order_id: str
    amount_paise: int
    method: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "amount": rupees(self.amount_paise), "currency": "INR",
                "method": self.method, "created_at": self.created_at.isoformat()}


class PrimaryConnector:
    """Opens a connection to whichever listed host is currently the read-write primary."""

    def __init__(self, dsn: str, connect_timeout_s: float, command_timeout_s: float,
                 user: str | None = None, password: str | None = None) -> None:
        self._dsns = host_dsns(dsn)
        # asyncpg prefers explicit credentials to the DSN's (connect_utils._parse_connect_dsn_and_args)
        self._credentials = {k: v for k, v in (("user", user), ("password", password)) if v is not None}
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._preferred = 0  # index of the host that last accepted us

    def host_order(self) -> list[int]:
        """Host indexes to try: the last good one first, then the others in DSN order."""
        return [self._preferred] + [i for i in range(len(self._dsns)) if i != self._preferred]

    async def connect(self, *_args: Any, connection_class: type[asyncpg.Connection] = asyncpg.Connection,
                      record_class: type[asyncpg.Record] = asyncpg.Record, **_kwargs: Any) -> asyncpg.Connection:
        """A new read-write connection; the signature matches asyncpg's pool `connect=` hook."""
        errors: list[str] = []
        for index in self.host_order():
            try:
                connection = await asyncpg.connect(
                    self._dsns[index], timeout=self._connect_timeout_s, command_timeout=self._command_timeout_s,
                    target_session_attrs="read-write", connection_class=connection_class,
                    record_class=record_class, **self._credentials)
            except Exception as exc:  # any error here means "try the next host"
                errors.append(f"host {index + 1}: {type(exc).__name__}: {exc}")
                continue
            self._preferred = index
            return connection
        raise DatabaseUnavailable("no read-write PostgreSQL host reachable (" + "; ".join(errors) + ")")


def _discard(connection: asyncpg.Connection) -> None:
    """Close a connection whose state is unknown (half-sent query, dead peer, demoted server).

    asyncpg may already have handed a lost connection back to the pool, in which
    case the proxy refuses every call: then there is nothing left to do.
    """
    try:
        connection.terminate()
    except asyncpg.InterfaceError:
        pass


async def _no_reset(_connection: asyncpg.Connection) -> None:
    """Skip asyncpg's reset round trip on release: we never leave session state behind."""


class Database:
    """The pool plus every query the app makes."""

    def __init__(self, settings: PlatformSettings) -> None:
        self._settings = settings
        self.connector = PrimaryConnector(settings.pg_dsn, settings.pg_connect_timeout_s,
                                          settings.pg_command_timeout_s, settings.pg_user, settings.pg_password)
        self._pool: asyncpg.Pool | None = None
        self.prices: dict[int, int] = {}  # item_id -> price in paise; the menu is static
        # One request may need a fresh connection and then a statement.
        self._budget_s = settings.pg_connect_timeout_s + settings.pg_command_timeout_s
        # What the app's metrics count (metrics.py): each unit of work attempted; each pool acquisition's
        # wait, whether it found the pool exhausted, whether the budget ran out while waiting.
        self.on_call: Callable[[], None] = lambda: None
        self.on_pool_wait: Callable[[float, bool, bool], None] = lambda waited_s, exhausted, timed_out: None

    @property
    def started(self) -> bool:
        return self._pool is not None and bool(self.prices)

    async def start(self) -> None:
        """Open the pool, create the schema and seed the menu. Raises DatabaseUnavailable."""
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    min_size=self._settings.pg_pool_min, max_size=self._settings.pg_pool_max,
                    connect=self.connector.connect, reset=_no_reset,
                    max_inactive_connection_lifetime=60.0)
            except DatabaseUnavailable:
                raise
            except Exception as exc:
                raise DatabaseUnavailable(f"could not open the pool: {type(exc).__name__}: {exc}") from exc
        self.prices = await self._run(self._create_schema)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=2.0)
        except Exception as exc:  # connections stuck on a dead primary: close them the hard way
            log.debug("closing the pool failed (%s: %s): terminating it", type(exc).__name__, exc)
            pool.terminate()

    async def _create_schema(self, connection: asyncpg.Connection) -> dict[int, int]:
        async with connection.transaction():
            # Many replicas start together: one creates, the others wait and find it done.
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK_ID)
            await connection.execute(SCHEMA_SQL)
            await connection.executemany(
                "INSERT INTO menu_items (item_id, name, description, price_paise, vegetarian) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (item_id) DO NOTHING", MENU_SEED)
        rows = await connection.fetch("SELECT item_id, price_paise FROM menu_items")
        return {row["item_id"]: row["price_paise"] for row in rows}

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `work` on a pooled connection within the budget; every failure -> DatabaseUnavailable."""
        pool = self._pool
        if pool is None:
            raise DatabaseUnavailable("not connected to PostgreSQL yet")
        self.on_call()
        try:
            async with asyncio.timeout(self._budget_s):
                connection = await self._acquire(pool)
                try:
                    return await work(connection)
                except BaseException:
                    _discard(connection)
                    raise
                finally:
                    await pool.release(connection)
        except DatabaseUnavailable:
            raise
        except TimeoutError as exc:
            raise DatabaseUnavailable("PostgreSQL did not answer in time (connect or command timeout)") from exc
        except Exception as exc:
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _acquire(self, pool: asyncpg.Pool) -> asyncpg.Connection:
        """A pooled connection; the wait, an exhausted pool and a wait cut by the budget go to `on_pool_wait`."""
        exhausted = pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size()
        started = time.perf_counter()
        try:
            connection = await pool.acquire()
        except asyncio.CancelledError:  # the request's budget ran out while it waited
            self.on_pool_wait(time.perf_counter() - started, exhausted, True)
            raise
        self.on_pool_wait(time.perf_counter() - started, exhausted, False)
        return connection

    # -- queries ----------------------------------------------------------------
    async def menu(self) -> list[dict[str, Any]]:
        rows = await self._run(lambda c: c.fetch(
            "SELECT item_id, name, description, price_paise, vegetarian FROM menu_items ORDER BY item_id"))
        return [{"item_id": r["item_id"], "name": r["name"], "description": r["description"],
                 "price": rupees(r["price_paise"]), "currency": "INR", "vegetarian": r["vegetarian"]}
                for r in rows]

    async def place_order(self, idempotency_key: str, student_id: str, items: list[dict[str, int]],
                          total_paise: int) -> tuple[Order, bool]:
        """Insert the order once per idempotency key; returns (order, created). Committed on return."""
        order_id = uuid.uuid4()
        items_json = json.dumps(items, separators=(",", ":"))

        async def work(c: asyncpg.Connection) -> tuple[Order, bool]:
            row = await c.fetchrow(
                "INSERT INTO orders (order_id, idempotency_key, student_id, items, total_paise, served_by) "
                "VALUES ($1, $2, $3, $4::jsonb, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING "
                "RETURNING order_id, seq, idempotency_key, student_id, items::text AS items, total_paise, created_at",
                order_id, idempotency_key, student_id, items_json, total_paise, self._settings.replica)
            if row is not None:
                return Order.from_record(row), True
            existing = await c.fetchrow(_ORDER_SELECT + " WHERE idempotency_key = $1", idempotency_key)
            if existing is None:  # the conflicting insert rolled back between our two statements
                raise DatabaseUnavailable("order with this idempotency key vanished; retry")
            return Order.from_record(existing), False

        return await self._run(work)

    async def order_by_id(self, order_id: uuid.UUID) -> Order | None:
        row = await self._run(lambda c: c.fetchrow(_ORDER_SELECT + " WHERE order_id = $1", order_id))
        return None if row is None else Order.from_record(row)

    async def order_by_key(self, idempotency_key: str) -> Order | None:
        row = await self._run(lambda c: c.fetchrow(_ORDER_SELECT + " WHERE idempotency_key = $1", idempotency_key))
        return None if row is None else Order.from_record(row)

    async def lookup(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """{key: {"order_id", "seq", "created_at", "items", "total_paise"}} for the keys that exist (the
        content too, so a read-back after a restore can check each order came back as acknowledged)."""
        rows = await self._run(lambda c: c.fetch(
            "SELECT idempotency_key, order_id, seq, created_at, items::text AS items, total_paise FROM orders "
            "WHERE idempotency_key = ANY($1::text[])", keys))
        return {r["idempotency_key"]: {"order_id": str(r["order_id"]), "seq": r["seq"],
                                       "created_at": r["created_at"].isoformat(), "items": json.loads(r["items"]),
                                       "total_paise": r["total_paise"]} for r in rows}

    async def record_payment(self, order_id: uuid.UUID, amount_paise: int, method: str) -> tuple[Payment, bool] | None:
        """One payment per order; returns (payment, created), or None when the order does not exist."""

        async def work(c: asyncpg.Connection) -> tuple[Payment, bool] | None:
            try:
                row = await c.fetchrow(
                    "INSERT INTO payments (order_id, amount_paise, method) VALUES ($1, $2, $3) "
                    "ON CONFLICT (order_id) DO NOTHING RETURNING order_id, amount_paise, method, created_at",
                    order_id, amount_paise, method)
            except asyncpg.ForeignKeyViolationError:
                return None
            created = row is not None
            if row is None:
                row = await c.fetchrow(
                    "SELECT order_id, amount_paise, method, created_at FROM payments WHERE order_id = $1", order_id)
                if row is None:
                    raise DatabaseUnavailable("payment vanished between insert and read; retry")
            return Payment(str(row["order_id"]), row["amount_paise"], row["method"], row["created_at"]), created

        return await self._run(work)


_ORDER_SELECT = ("SELECT order_id, seq, idempotency_key, student_id, items::text AS items, total_paise, created_at "
                 "FROM orders")


class PrimaryProbe:
    """Answers "can this replica reach the current primary right now?" on its own connection.

    A dedicated connection keeps the readiness check independent of a pool that
    may be saturated by load (which is not the same as unreachable).
    """

    def __init__(self, connector: PrimaryConnector, timeout_s: float) -> None:
        self._connector = connector
        self._timeout_s = timeout_s
        self._connection: asyncpg.Connection | None = None

    async def check(self) -> bool:
        """True when a read-write primary answered `SELECT NOT pg_is_in_recovery()` with true."""
        try:
            if self._connection is None or self._connection.is_closed():
                self._connection = await self._connector.connect()
            async with asyncio.timeout(self._timeout_s):
                is_primary = bool(await self._connection.fetchval("SELECT NOT pg_is_in_recovery()"))
        except Exception as exc:  # any failure means "no primary here now"; readiness reports that
            log.debug("primary check failed: %s: %s", type(exc).__name__, exc)
            is_primary = False
        if not is_primary:
            self.close()
        return is_primary

    def close(self) -> None:
        if self._connection is not None:
            self._connection.terminate()
            self._connection = None
