"""A step of a supervisor loop that raises becomes a `loop_error` event; the loop carries on; the report shows it."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from resilience.errors import UserError
from resilience.history import History, Record
from resilience.reports.plots import markers
from resilience.reports.run import RunView
from resilience.targets.local.control import ControlServer
from resilience.targets.local.events import LOOP_ERROR, EventLog, LoopGuard


def events_in(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_loop_step_that_raises_becomes_an_event_and_the_loop_carries_on(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.reset()
    now = [100.0]
    guard = LoopGuard(log, repeat_after_s=30.0, clock=lambda: now[0])
    ran = []

    def broken_tick() -> None:
        ran.append(1)
        raise KeyError("slot 4")

    for _ in range(3):  # three turns of the loop: the step runs every time
        assert guard.run("controller", broken_tick) is False
    assert len(ran) == 3
    assert guard.run("health", lambda: None) is True
    events = events_in(tmp_path / "events.jsonl")
    assert len(events) == 1  # the same error again within 30 s is counted, not written again
    e = events[0]
    assert (e["source"], e["op"]) == ("platform", LOOP_ERROR)
    assert e["detail"]["loop"] == "controller" and e["detail"]["error"] == "KeyError"
    assert "slot 4" in e["detail"]["message"] and "broken_tick" in e["detail"]["traceback"]
    now[0] += 31
    guard.run("controller", broken_tick)
    again = events_in(tmp_path / "events.jsonl")[-1]
    assert again["detail"]["repeats_since_last"] == 2


class Exploding(ControlServer):
    def __init__(self, guard: LoopGuard) -> None:  # only what `reply` needs
        self.guard = guard
        self.ops = {"boom": self.boom, "refused": self.refused}

    def boom(self, request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("the socket handler broke")

    def refused(self, request: dict[str, Any]) -> dict[str, Any]:
        raise UserError("unknown zone 'zone-x'")


def test_a_control_request_that_fails_unexpectedly_is_an_event_and_the_server_keeps_serving(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.reset()
    server = Exploding(LoopGuard(log)).serve(tmp_path / "control.sock")
    try:
        def ask(op: str) -> dict[str, Any]:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(tmp_path / "control.sock"))
                sock.sendall((json.dumps({"op": op}) + "\n").encode())
                return json.loads(sock.makefile().readline())
        reply = ask("boom")
        assert reply["ok"] is False and "RuntimeError: the socket handler broke" in reply["error"]
        assert ask("refused") == {"ok": False, "error": "unknown zone 'zone-x'", "user_error": True}
        assert ask("nothing") == {"ok": False, "error": "unknown op 'nothing'"}
    finally:
        server.shutdown()
        server.server_close()
    events = events_in(tmp_path / "events.jsonl")
    assert [(e["op"], e["detail"]["loop"], e["detail"]["request"]) for e in events] == [(LOOP_ERROR, "control", "boom")]


def test_the_report_marks_a_loop_error_on_the_timeline() -> None:
    history = History(records=[Record(12.5, "platform", LOOP_ERROR, "info", None, None,
                                      {"loop": "health", "error": "OSError", "message": "disk full"})])
    run = SimpleNamespace(fault={}, rto_s=lambda: None, events=lambda: history.records)  # what markers() reads
    assert [m.label for m in markers(cast(RunView, run))] == ["supervisor error (health): OSError"]
