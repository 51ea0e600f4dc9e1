"""The operator's consent before anything touches a cloud target.

The local target breaks only what it started on this machine. A Kubernetes
cluster or an AWS account is shared: before `up`, `down`, `run`, `gameday` or
`rollback` acts there, a person at a terminal types "yes", and a script (a
CronJob, CI) says `--yes`. Without either, nothing is touched: exit 2.
"""

from __future__ import annotations

import sys
from typing import Callable

from .errors import UserError


def confirm(target: str, context: str | None, what: str, yes: bool, *,
            ask: Callable[[str], str] = input, interactive: Callable[[], bool] = lambda: sys.stdin.isatty()) -> None:
    """Return when the operator agreed (or the target needs no consent, e.g. local); raise UserError otherwise."""
    from .targets import composition
    if yes or not composition(target).needs_consent:
        return
    where = f"target {target}" + (f" (context {context})" if context else "")
    if not interactive():
        raise UserError(f"{what} on {where} changes shared infrastructure, and no one is at a terminal to confirm. "
                        f"Add --yes to go ahead (e.g. in a CronJob or CI), or run it from a terminal.")
    try:
        answer = ask(f"{what} on {where}: type yes to go on: ")
    except EOFError:
        answer = ""
    if answer.strip().lower() != "yes":
        raise UserError(f"not confirmed: nothing was done on {where}.")
