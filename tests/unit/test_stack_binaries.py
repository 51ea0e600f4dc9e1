"""The local stack's preflight names what is missing and how to get it: here, the platform's Patroni, which comes
from deploy/patroni.lock (installed by bootstrap), not from Debian."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilience.errors import UserError
from resilience.targets.local import services


def test_a_missing_patroni_names_its_path_the_lock_and_the_bootstrap(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    monkeypatch.setattr(services.shutil, "which", lambda name: f"/usr/bin/{name}")  # the apt part present
    monkeypatch.setattr(services, "REQUIRED_BINARIES", {"etcd": "etcd-server"})
    gone = tmp_path / "opt" / "patroni"
    monkeypatch.setattr(services, "PATRONI_BIN", str(gone))
    with pytest.raises(UserError) as error:
        services.check_binaries()
    text = str(error.value)
    assert str(gone) in text and "deploy/patroni.lock" in text and "scripts/bootstrap.sh" in text
    gone.parent.mkdir(parents=True)
    gone.write_text("#!/bin/sh\n")
    try:
        services.check_binaries()
    except UserError as other:  # only the postgres user may still be missing on a bare machine
        assert "postgres" in str(other) and "patroni" not in str(other).lower(), other
