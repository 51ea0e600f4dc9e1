"""Fixtures for tests against the real local stack (root only).

The stack uses its own state directory (/var/lib/resilience-test) but the
default ports and the `rsl-` namespace prefix: stop your own stack
(`resilience down`) before running these tests.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Iterator

import pytest

os.environ["RESILIENCE_STATE_DIR"] = "/var/lib/resilience-test"

from resilience.targets.local.target import LocalTarget  # noqa: E402
from stack_helpers import Traffic, make_whole, stack_settings  # noqa: E402


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="the local stack needs root (namespaces, cgroups, PostgreSQL as 'postgres')")
        for item in items:
            if "tests/stack" in str(item.fspath):
                item.add_marker(skip)
    # The tests with a stack of their own go first, then every test of the shared stack: each `own_stack`
    # test stops the shared stack (same ports and names), so interleaved they would start it again and again.
    own = [item for item in items if item.get_closest_marker("own_stack")]
    if own:
        items[:] = own + [item for item in items if not item.get_closest_marker("own_stack")]


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "own_stack: the test starts and stops a stack of its own (not the shared one)")


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalTarget]:
    """The shared stack (synchronous replication); started on demand by `whole_stack`, always torn down."""
    target = LocalTarget(stack_settings())
    target.down()  # leftovers of an earlier crashed session
    try:
        yield target
    finally:
        target.down()


@pytest.fixture(autouse=True)
def whole_stack(request: Any, stack: LocalTarget) -> Iterator[None]:
    """Each stack test starts from a whole stack, whatever the test before it left behind.

    A test marked `own_stack` gets the shared stack stopped instead (same ports and names).
    When the previous test left the stack broken, this repairs it and says so as a warning,
    so that test's failure stays its own and does not cascade.
    """
    if request.node.get_closest_marker("own_stack"):
        stack.down()
        yield
        return
    action = make_whole(stack)
    if action in ("healed", "rebuilt"):
        warnings.warn(f"{request.node.nodeid}: the stack was not whole before this test; it was {action}")
    yield


@pytest.fixture
def traffic(stack: LocalTarget) -> Callable[[], Traffic]:
    return lambda: Traffic(stack.url())
