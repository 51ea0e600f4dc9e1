"""Fixtures for tests against the real local stack (root only).

The stack uses its own state directory (/var/lib/resilience-test) but the
default ports and the `rsl-` namespace prefix: stop your own stack
(`resilience down`) before running these tests.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import pytest

os.environ["RESILIENCE_STATE_DIR"] = "/var/lib/resilience-test"

from resilience.targets.local import LocalTarget  # noqa: E402
from stack_helpers import Traffic, stack_settings  # noqa: E402


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="the local stack needs root (namespaces, cgroups, PostgreSQL as 'postgres')")
        for item in items:
            if "tests/stack" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalTarget]:
    """One shared stack (synchronous replication) for the session; always torn down."""
    target = LocalTarget(stack_settings())
    target.down()  # leftovers of an earlier crashed session
    try:
        target.up()
        yield target
    finally:
        target.down()


@pytest.fixture
def traffic(stack: LocalTarget) -> Callable[[], Traffic]:
    return lambda: Traffic(stack.url())
