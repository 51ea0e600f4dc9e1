"""The platform app's settings, read once from environment variables.

Every replica of the app is configured the same way, by environment (see the
package docstring in `resilience/platform/__init__.py` for the full list).
Parsing is a pure function of a mapping so it is easy to test; bad values
raise `UserError` naming the variable and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from resilience.errors import UserError

DEFAULT_PG_DSN = "postgresql://app:app@127.0.0.1:5432/meals?target_session_attrs=read-write"
DEFAULT_REDIS_MASTER = "rsl-cache"
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")  # rediss: TLS, certificate and host name verified


@dataclass(frozen=True)
class PlatformSettings:
    """Everything one replica needs to know; times are in seconds."""

    pg_dsn: str = DEFAULT_PG_DSN
    # Credentials given apart from the DSN (e.g. from a Kubernetes Secret): they override the DSN's and need
    # no URL-encoding, so a password with '@', ':', '/' or '%' works as it is.
    pg_user: str | None = None
    pg_password: str | None = None
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_master: str = DEFAULT_REDIS_MASTER
    redis_url: str | None = None  # used only when no sentinels are given
    # the address Sentinel names -> the address to dial (a network path in between: the local stack's proxy)
    redis_address_map: tuple[tuple[tuple[str, int], tuple[str, int]], ...] = ()
    replica: str = "api-0"
    zone: str = "local"
    pg_connect_timeout_s: float = 1.0  # per host, not per DSN
    pg_command_timeout_s: float = 2.0
    pg_pool_min: int = 1
    pg_pool_max: int = 5
    redis_timeout_s: float = 0.3
    redis_password: str | None = None  # for the Redis servers and the Sentinels
    menu_ttl_s: int = 5
    ready_interval_s: float = 0.5  # how often the primary is checked
    ready_max_age_s: float = 1.5  # /health/ready fails when the last good check is older
    startup_wait_s: float = 5.0  # how long startup waits for PostgreSQL before serving anyway

    @property
    def cache_enabled(self) -> bool:
        return bool(self.redis_sentinels) or bool(self.redis_url)


def parse_sentinels(text: str, variable: str = "RSL_REDIS_SENTINELS") -> tuple[tuple[str, int], ...]:
    """'h1:26379,h2:26380' -> (('h1', 26379), ('h2', 26380)); empty text -> ()."""
    result: list[tuple[str, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError(f"environment variable {variable}: {part!r} is not host:port. "
                            f"Set it to a comma-separated list such as 127.0.0.1:26391,127.0.0.1:26392.")
        result.append((host, int(port)))
    return tuple(result)


def parse_address_map(text: str, variable: str = "RSL_REDIS_ADDRESS_MAP") -> tuple[tuple[tuple[str, int], tuple[str, int]], ...]:
    """'h1:6391=p:6491,h2:6392=p:6492' -> (((h1, 6391), (p, 6491)), ...); empty text -> ()."""
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            named, sep, dial = part.partition("=")
            if not sep:
                raise UserError(f"environment variable {variable}: {part!r} is not HOST:PORT=HOST:PORT (the address "
                                f"Sentinel names, then the address to dial instead)")
            [a], [b] = parse_sentinels(named, variable), parse_sentinels(dial, variable)
            pairs.append((a, b))
    return tuple(pairs)


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r} is not a number. "
                        f"Set it to a number >= {minimum} or unset it (default {default}).") from None
    if value < minimum:
        raise UserError(f"environment variable {name}={raw!r} is below {minimum}. "
                        f"Set it to a number >= {minimum} or unset it (default {default}).")
    return value


def settings_from_env(env: Mapping[str, str] | None = None) -> PlatformSettings:
    """Build the settings from `env` (default: os.environ), validating every value."""
    env = os.environ if env is None else env
    defaults = PlatformSettings()
    dsn = env.get("RSL_PG_DSN", "").strip() or DEFAULT_PG_DSN
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise UserError(f"environment variable RSL_PG_DSN={dsn!r} is not a PostgreSQL URL. Set it like "
                        "postgresql://app:app@127.0.0.1:5441,127.0.0.1:5442/meals?target_session_attrs=read-write.")
    redis_url = env.get("RSL_REDIS_URL", "").strip() or None
    if redis_url is not None and not redis_url.startswith(REDIS_URL_SCHEMES):
        raise UserError(f"environment variable RSL_REDIS_URL={redis_url!r} is not a Redis URL. Set it like "
                        "redis://127.0.0.1:6379/0, or rediss://HOST:6379/0 for TLS (e.g. ElastiCache with "
                        "in-transit encryption).")
    pool_min = int(_number(env, "RSL_PG_POOL_MIN", defaults.pg_pool_min, minimum=0))
    pool_max = int(_number(env, "RSL_PG_POOL_MAX", defaults.pg_pool_max, minimum=1))
    if pool_min > pool_max:
        raise UserError(f"RSL_PG_POOL_MIN ({pool_min}) is above RSL_PG_POOL_MAX ({pool_max}). Lower the minimum.")
    return PlatformSettings(
        pg_dsn=dsn,
        pg_user=env.get("RSL_PG_USER") or None,
        pg_password=env.get("RSL_PG_PASSWORD") or None,
        redis_sentinels=parse_sentinels(env.get("RSL_REDIS_SENTINELS", "")),
        redis_master=env.get("RSL_REDIS_MASTER", "").strip() or DEFAULT_REDIS_MASTER,
        redis_url=redis_url,
        redis_address_map=parse_address_map(env.get("RSL_REDIS_ADDRESS_MAP", "")),
        redis_password=env.get("RSL_REDIS_PASSWORD") or None,
        replica=env.get("RSL_REPLICA", "").strip() or defaults.replica,
        zone=env.get("RSL_ZONE", "").strip() or defaults.zone,
        pg_connect_timeout_s=_number(env, "RSL_PG_CONNECT_TIMEOUT_S", defaults.pg_connect_timeout_s, minimum=0.05),
        pg_command_timeout_s=_number(env, "RSL_PG_COMMAND_TIMEOUT_S", defaults.pg_command_timeout_s, minimum=0.05),
        pg_pool_min=pool_min,
        pg_pool_max=pool_max,
        redis_timeout_s=_number(env, "RSL_REDIS_TIMEOUT_S", defaults.redis_timeout_s, minimum=0.01),
        menu_ttl_s=int(_number(env, "RSL_MENU_TTL_S", defaults.menu_ttl_s, minimum=1)),
        ready_interval_s=_number(env, "RSL_READY_INTERVAL_S", defaults.ready_interval_s, minimum=0.05),
        ready_max_age_s=_number(env, "RSL_READY_MAX_AGE_S", defaults.ready_max_age_s, minimum=0.1),
        startup_wait_s=_number(env, "RSL_STARTUP_WAIT_S", defaults.startup_wait_s, minimum=0),
    )
