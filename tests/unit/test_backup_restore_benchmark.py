"""The backup/restore benchmark reads WAL replay from PostgreSQL's own log lines (benchmarks/backup_restore.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "backup_restore.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("backup_restore", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replay_is_read_from_the_redo_lines_of_a_postgresql_15_log() -> None:
    log = ("2026-12-06 17:55:01.100 UTC [123] LOG:  redo starts at 0/2000028\n"
           "2026-12-06 17:55:02.300 UTC [123] LOG:  recovery stopping before commit of transaction 812, time ...\n"
           "2026-12-06 17:55:02.300 UTC [123] LOG:  redo done at 1/A000110 system usage: CPU: user: 0.80 s, "
           "system: 0.31 s, elapsed: 9.93 s\n")
    replayed, seconds = bench().replay_from_log(log)
    assert replayed == (1 << 32) + 0xA000110 - 0x2000028 and seconds == 9.93


def test_a_log_without_redo_lines_is_an_error_not_a_zero() -> None:
    with pytest.raises(RuntimeError, match="redo starts"):
        bench().replay_from_log("LOG:  database system is ready to accept connections\n")
