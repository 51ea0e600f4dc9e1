"""The reference platform app: a school-meal ordering API, the system under test.

Many replicas run behind HAProxy while the PostgreSQL primary (Patroni) and
the Redis master (Sentinel) fail over under load. Run one replica with
`python -m resilience.platform --host HOST --port PORT`.

Configuration (environment variables; every one is optional):

| variable | default | meaning |
|---|---|---|
| `RSL_PG_DSN` | `postgresql://app:app@127.0.0.1:5432/meals?target_session_attrs=read-write` | libpq URL, several `host:port` allowed (`h1:5441,h2:5442`); the app always connects to the read-write primary, trying the host that last worked first |
| `RSL_PG_USER` / `RSL_PG_PASSWORD` | (none) | credentials apart from the DSN (e.g. from a Kubernetes Secret); they override the DSN's and need no URL-encoding |
| `RSL_PG_CONNECT_TIMEOUT_S` | 1.0 | connect timeout per host |
| `RSL_PG_COMMAND_TIMEOUT_S` | 2.0 | statement timeout (client side) |
| `RSL_PG_POOL_MIN` / `RSL_PG_POOL_MAX` | 1 / 5 | connection pool size |
| `RSL_REDIS_SENTINELS` | (none) | comma list of Sentinel `host:port`; the master is found through them |
| `RSL_REDIS_MASTER` | `rsl-cache` | the Sentinel master name |
| `RSL_REDIS_ADDRESS_MAP` | (none) | `named=dial,...` (`host:port=host:port`): a Redis address Sentinel names is dialled at another (a network path in between, e.g. the local stack's proxy) |
| `RSL_REDIS_PASSWORD` | (none) | password of the Redis servers and the Sentinels (`requirepass`) |
| `RSL_REDIS_URL` | (none) | Redis URL (`redis://`, or `rediss://` for TLS with the server's certificate and host name verified, e.g. ElastiCache with in-transit encryption), used only when no Sentinels are given; no Redis at all is fine too |
| `RSL_REDIS_TIMEOUT_S` | 0.3 | Redis socket and connect timeout |
| `RSL_MENU_TTL_S` | 5 | how long the menu stays cached in Redis |
| `RSL_REPLICA` / `RSL_ZONE` | `api-0` / `local` | this replica's name and zone: `X-Replica` header and metric labels |
| `RSL_READY_INTERVAL_S` | 0.5 | how often the primary is checked in the background |
| `RSL_READY_MAX_AGE_S` | 1.5 | /health/ready fails when the last good check is older than this |
| `RSL_STARTUP_WAIT_S` | 5.0 | how long start-up waits for PostgreSQL before serving (not ready) anyway |

Endpoints: `GET /menu`, `POST /orders`, `GET /orders/{order_id}`,
`GET /orders/by-key/{idempotency_key}`, `POST /orders/lookup`, `POST /payments`,
`GET /health/live`, `GET /health/ready`, `GET /metrics` (see `app.py`).
Modules: `settings` (environment), `db` (PostgreSQL), `cache` (Redis),
`readiness` (background primary check), `metrics` (Prometheus), `app` (routes).
"""
