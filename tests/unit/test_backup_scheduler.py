"""The backup scheduler's decisions with a fake pgBackRest: order of commands, retries, no primary, stop."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from resilience.config import BackupSettings, StackSettings
from resilience.targets.local import backups
from resilience.targets.local.backups import BackupScheduler


class FakeProc:
    def __init__(self, argv: list[str], code: int) -> None:
        self.argv, self.code, self.pid = argv, code, 4242
        self.done = False

    def poll(self) -> int | None:
        return self.code if self.done else None


class FakePgBackRest:
    """Every command finishes when `finish()` is called, with the exit code `fail` names (default 0)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.fail: dict[str, int] = {}
        self.current: FakeProc | None = None

    def popen(self, argv: list[str], **kwargs: Any) -> FakeProc:
        what = " ".join(a for a in argv if a.startswith(("stanza-create", "backup", "info", "--type", "--repo")))
        self.started.append(what)
        stdout = kwargs.get("stdout")
        if what.startswith("info") and hasattr(stdout, "write"):
            stdout.write(b"[]")
        self.current = FakeProc(argv, self.fail.get(what, 0))
        return self.current

    def finish(self) -> None:
        assert self.current is not None
        self.current.done = True


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[BackupScheduler, FakePgBackRest, list[Any]]:
    (tmp_path / "logs").mkdir()
    fake = FakePgBackRest()
    monkeypatch.setattr(subprocess, "Popen", fake.popen)
    events: list[Any] = []
    s = StackSettings(state_dir=str(tmp_path), backup=BackupSettings(full_every_s=100, incremental_every_s=10))
    leader: list[str | None] = ["postgres-1"]
    scheduler = BackupScheduler(s, lambda source, op, **d: events.append((op, d)), lambda: leader[0])  # type: ignore[arg-type]
    scheduler.leader_box = leader  # type: ignore[attr-defined]
    return scheduler, fake, events


def run_queue(scheduler: BackupScheduler, fake: FakePgBackRest, steps: int) -> None:
    for _ in range(steps):
        scheduler.tick()
        fake.finish()
    scheduler.tick()


def test_stanza_then_the_first_full_backup_into_both_repositories_then_info(setup: Any) -> None:
    scheduler, fake, events = setup
    scheduler.tick()
    assert fake.started == []  # nothing before the stack is ready
    scheduler.start()
    run_queue(scheduler, fake, 4)
    assert fake.started[:4] == ["stanza-create", "backup --type=full --repo=1", "backup --type=full --repo=2", "info"]
    assert scheduler.stanza_ready and scheduler.first_ready_at is not None and scheduler.last_full is not None
    assert (Path(scheduler.root) / backups.INFO_FILE).read_text() == "[]"
    assert [op for op, _ in events][:2] == ["scheduled", "started"]


def test_a_failed_stanza_create_is_retried_later_not_in_a_tight_loop(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler, fake, events = setup
    fake.fail["stanza-create"] = 1
    scheduler.start()
    scheduler.tick()
    fake.finish()
    scheduler.tick()
    scheduler.tick()
    assert fake.started == ["stanza-create"] and ("failed", events[-1][1]) == events[-1]
    monkeypatch.setattr(backups.time, "monotonic", lambda: 1e12)  # RETRY_S later
    fake.fail.clear()
    scheduler.tick()
    assert fake.started == ["stanza-create", "stanza-create"]


def test_no_primary_no_backup_and_stop_ends_the_running_command(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler, fake, _ = setup
    scheduler.leader_box[0] = None
    scheduler.start()
    scheduler.tick()
    assert fake.started == []
    scheduler.leader_box[0] = "postgres-2"
    scheduler.tick()
    assert fake.started == ["stanza-create"] and scheduler.state()["pid"] == 4242
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(backups.os, "killpg", lambda pid, sig: killed.append((pid, sig)) or setattr(fake.current, "done", True))
    fake.current.wait = lambda timeout=None: 0  # type: ignore[union-attr]
    scheduler.stop()
    assert killed and killed[0][0] == 4242
