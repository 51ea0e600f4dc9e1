"""Errors the harness reports to users.

A `UserError` is bad input or a bad situation the user can fix (exit code 2):
its message names what failed (file, field, binary, port) and what to do.
"""

from __future__ import annotations


class UserError(Exception):
    """Invalid input or environment; the CLI prints the message and exits 2."""

    exit_code = 2


class HarnessError(Exception):
    """The harness itself could not do its job (exit code 2)."""

    exit_code = 2
