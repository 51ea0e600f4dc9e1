"""Asynchronous replication with the replica held back: lost writes are detected and counted.
Runs on a stack of its own (asynchronous), and ends by checking that `down` leaves nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from resilience.cli import main
from resilience.targets.local.target import LocalTarget

from stack_helpers import ROOT, stack_settings

pytestmark = [pytest.mark.stack, pytest.mark.own_stack]


def test_async_replication_loses_held_back_writes_and_down_leaves_nothing(capsys: Any, tmp_path: Path) -> None:
    config = tmp_path / "resilience.yaml"
    config.write_text("stack:\n  state_dir: /var/lib/resilience-test\n  synchronous_replication: false\n")
    target = LocalTarget(stack_settings(synchronous_replication=False))
    try:
        code = main(["run", str(ROOT / "tests" / "experiments" / "async-loss.yaml"), "--config", str(config),
                     "--json", "--quiet", "--keep-up", "--reports-dir", str(tmp_path)])
        out = capsys.readouterr().out
        summary = json.loads(out[out.index("{"):])
        v = {m["name"]: m for m in summary["measurements"]}
        assert v["lost_writes"]["value"] is not None and v["lost_writes"]["value"] >= 1, v["lost_writes"]
        assert v["lost_writes"]["status"] == "breached"
        assert v["rpo_s"]["value"] is not None and v["rpo_s"]["value"] > 0
        assert summary["verdict"] == "fail" and code == 1
        state = json.loads((target.root / "state.json").read_text())
        pids = [c["pid"] for c in state["components"] if c["pid"]]
    finally:
        target.down()
    alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    assert alive == [], f"processes left after down: {alive}"
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "rsl-" not in namespaces
    assert not (target.root / "state.json").exists()
