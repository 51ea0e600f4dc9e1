"""The control server: the supervisor's Unix socket (`control.sock`), one JSON request per connection.

`LocalPlatform.request(op, **args)` is the other end. Each op is one entry of
`ControlServer.ops`: `status`, `ready_replicas`, `heal`, `shutdown`, and `fault`, one
phase of one fault (`{"op": "fault", "fault": <registry name>, "phase": "inject" |
"undo", ...arguments}`, done by the fault's module). A request names the op and its arguments, the reply is
`{"ok": true, ...}` or `{"ok": false, "error": ...}` (`user_error` when the
request itself was wrong). The restoring ops answer only once the stack is whole
again (or say why not). A handler that fails unexpectedly is also a `loop_error` event.
"""

from __future__ import annotations

import json
import os
import socketserver
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from ...errors import HarnessError, UserError
from .controller import ReplicaController
from .events import LoopGuard
from .heal_wait import HealWait
from .injector import FaultInjector
from .monitor import HealthMonitor
from .processes import ProcessTable
from .replicas import ReplicaSet

Request = dict[str, Any]


class ControlServer:
    def __init__(self, url: str, zone_mode: str, processes: ProcessTable, replicas: ReplicaSet,
                 controller: ReplicaController, monitor: HealthMonitor, injector: FaultInjector, heal: HealWait,
                 guard: LoopGuard, stop_event: threading.Event) -> None:
        self.url = url
        self.zone_mode = zone_mode
        self.processes = processes
        self.replicas = replicas
        self.controller = controller
        self.monitor = monitor
        self.injector = injector
        self.heal = heal
        self.guard = guard
        self.stop_event = stop_event
        self.ops: dict[str, Callable[[Request], dict[str, Any]]] = {
            "status": self.status,
            "ready_replicas": lambda r: {"ready": self.replicas.count_ready(), "desired": self.controller.desired},
            "fault": self.fault,
            "heal": lambda r: self._healed(self.injector.heal,
                                           lambda result: sorted(c.name for c in self.processes.present())),
            "shutdown": self.shutdown,
        }

    def handle(self, request: Request) -> dict[str, Any]:
        op = request.get("op")
        handler = self.ops.get(op) if isinstance(op, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown op {op!r}"}
        return {"ok": True, **handler(request)}

    def status(self, request: Request) -> dict[str, Any]:
        health = self.monitor.refresh()
        return {"components": self.monitor.rows(), "zone_mode": self.zone_mode, "url": self.url,
                "desired_replicas": self.controller.desired, "ready_replicas": self.replicas.count_ready(),
                "lost_zones": sorted(self.injector.lost()),
                "primary_zone": self.monitor.primary_zone(health.observation),
                "pg_leader": self.monitor.pg_leader, "redis_master": self.monitor.redis_master,
                "problems": dict(health.problems)}

    def fault(self, request: Request) -> dict[str, Any]:
        """One phase of one fault, done by its module (targets/local/faults/); a restoring phase answers once
        what it brought back has rejoined."""
        module, phase = self.injector.phase(request)
        t0 = time.monotonic()
        result = phase(self.injector.parts, request)
        rejoin = module.rejoins(str(request["phase"]), request, result)
        return result if rejoin is None else {**result, **self.heal.wait_healed(rejoin, t0)}

    def shutdown(self, request: Request) -> dict[str, Any]:
        self.stop_event.set()
        return {}

    def _healed(self, restore: Callable[[], dict[str, Any]],
                names: Callable[[dict[str, Any]], list[str]]) -> dict[str, Any]:
        """Run a restoring op, then wait until what it restored has rejoined (the reply says what each took)."""
        t0 = time.monotonic()
        result = restore()
        return {**result, **self.heal.wait_healed(names(result), t0)}

    def reply(self, line: bytes) -> dict[str, Any]:
        """The answer to one request line; an unexpected failure is also recorded as a `loop_error` event."""
        op = None
        try:
            request = json.loads(line)
            op = request.get("op") if isinstance(request, dict) else None
            return self.handle(request)
        except (UserError, HarnessError) as exc:
            return {"ok": False, "error": str(exc), "user_error": isinstance(exc, UserError)}
        except Exception as exc:  # report, keep serving
            self.guard.report("control", exc, request=op)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}

    def serve(self, path: Path) -> socketserver.UnixStreamServer:
        """Listen on `path` (0600) in a background thread, one thread per connection."""
        control = self
        if path.exists():
            path.unlink()

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    response = control.reply(self.rfile.readline())
                    self.wfile.write((json.dumps(response, default=str) + "\n").encode())
                except Exception as exc:  # the client went away before the answer
                    control.guard.report("control", exc)

        server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        server.daemon_threads = True
        os.chmod(path, 0o600)
        threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
        return server
