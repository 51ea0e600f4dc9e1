"""The local stack's passwords: generated at `up`, kept 0600 in the state directory, never in a report.

Every service that can be reached over the network asks for one: PostgreSQL
(scram-sha-256, also on its Unix socket), Redis and Sentinel (requirepass),
Patroni's REST API for anything that changes state (basic auth). Any local
user could otherwise read or change the platform under test, or disturb a run.
`down` removes the state directory, so every stack gets fresh passwords.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from ...atomic import atomic_write_text

SECRETS_FILE = "secrets.json"
PATRONI_API_USER = "rsl-admin"


@dataclass(frozen=True)
class StackSecrets:
    postgres_superuser: str
    postgres_replication: str
    postgres_app: str
    redis: str  # Redis servers and Sentinels
    patroni_api: str  # POST/PUT/DELETE on Patroni's REST API

    @classmethod
    def generate(cls) -> "StackSecrets":
        return cls(*(secrets.token_urlsafe(24) for _ in range(5)))


def load_or_create(root: Path) -> StackSecrets:
    """The stack's secrets, created (mode 0600, owner only) on first use."""
    path = root / SECRETS_FILE
    try:
        return StackSecrets(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    created = StackSecrets.generate()
    write_private(path, json.dumps(asdict(created)))
    return created


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically, never through a planted link."""
    atomic_write_text(path, text, perms=0o600)
