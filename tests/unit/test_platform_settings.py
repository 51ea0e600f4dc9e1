"""Environment parsing of the platform app's settings."""

from __future__ import annotations

import pytest

from resilience.errors import UserError
from resilience.platform.settings import DEFAULT_REDIS_MASTER, parse_sentinels, settings_from_env


def test_defaults_when_nothing_is_set() -> None:
    settings = settings_from_env({})
    assert settings.redis_sentinels == () and settings.redis_url is None and not settings.cache_enabled
    assert settings.redis_master == DEFAULT_REDIS_MASTER
    assert settings.pg_pool_min == 1 and settings.pg_pool_max == 5
    assert "target_session_attrs=read-write" in settings.pg_dsn


def test_every_variable_is_read() -> None:
    settings = settings_from_env({
        "RSL_PG_DSN": "postgresql://app:app@10.231.1.1:5441,10.231.2.1:5442/meals?target_session_attrs=read-write",
        "RSL_REDIS_SENTINELS": "10.231.1.1:26391, 10.231.2.1:26392",
        "RSL_REDIS_MASTER": "cache-x", "RSL_REPLICA": "api-3", "RSL_ZONE": "zone-b",
        "RSL_PG_POOL_MAX": "8", "RSL_READY_MAX_AGE_S": "2.5", "RSL_MENU_TTL_S": "7",
    })
    assert settings.pg_dsn.startswith("postgresql://app:app@10.231.1.1:5441,")
    assert settings.redis_sentinels == (("10.231.1.1", 26391), ("10.231.2.1", 26392))
    assert settings.redis_master == "cache-x" and settings.cache_enabled
    assert (settings.replica, settings.zone) == ("api-3", "zone-b")
    assert settings.pg_pool_max == 8 and settings.ready_max_age_s == 2.5 and settings.menu_ttl_s == 7


def test_parse_sentinels_accepts_ipv6_brackets_and_skips_blanks() -> None:
    assert parse_sentinels("[::1]:26379,,") == (("::1", 26379),)
    assert parse_sentinels("") == ()


@pytest.mark.parametrize("bad", ["localhost", "host:", "host:port", "host:70000"])
def test_bad_sentinel_is_named(bad: str) -> None:
    with pytest.raises(UserError, match="RSL_REDIS_SENTINELS"):
        parse_sentinels(bad)


@pytest.mark.parametrize("env, variable", [
    ({"RSL_PG_DSN": "mysql://x"}, "RSL_PG_DSN"),
    ({"RSL_PG_COMMAND_TIMEOUT_S": "soon"}, "RSL_PG_COMMAND_TIMEOUT_S"),
    ({"RSL_PG_CONNECT_TIMEOUT_S": "0"}, "RSL_PG_CONNECT_TIMEOUT_S"),
    ({"RSL_PG_POOL_MIN": "6", "RSL_PG_POOL_MAX": "2"}, "RSL_PG_POOL_MIN"),
])
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(UserError, match=variable):
        settings_from_env(env)
