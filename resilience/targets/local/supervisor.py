"""The local stack's supervisor: one long-lived process that owns every component.

`resilience up` starts it in the background (`python -m resilience.targets.local`).
It is composed of parts with one job each:

- `topology.py`: which components exist and where (`ComponentId`, from `MEMBERS`);
- `processes.py`, the process table: starts, signals, restarts and stops the
  services, reaps the PostgreSQL processes it inherits (it is their subreaper);
- `replicas.py`, the replica set, and `controller.py`, the replica controller:
  replaces dead API replicas (like a ReplicaSet), spreads them over the zones and
  autoscales with the Kubernetes HPA algorithm on cgroup CPU usage;
- `monitor.py`, the health and failover monitor: one observation of every service
  per look; `state.json` (what `resilience status` shows) and failover events;
- `injector.py`, the fault injector, and `heal_wait.py`, the wait for a heal;
- `control.py`, the control server: `control.sock`, through which the harness
  injects and rolls back faults (`LocalTarget.request`).

Every part changes its own state only, under the one stack lock, and every decision
is appended to `events.jsonl` with its CLOCK_MONOTONIC time (`events.py`). A loop
step that fails becomes a `loop_error` event and the loop carries on. On SIGTERM or
the `shutdown` request the supervisor stops everything and cleans up.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ...config import Autoscaling, BackupSettings, Ports, StackSettings
from ...errors import HarnessError, UserError
from . import cgroups, haproxy
from .control import ControlServer
from .backups import BackupScheduler, prepare_repos
from .controller import ReplicaController
from .events import EventLog, LoopGuard
from .executor import wait_for
from .heal_wait import HealWait
from .injector import FaultInjector
from .stack_parts import StackParts
from .monitor import HealthMonitor, sync_standbys
from .monitoring import Monitoring
from .probes import Probes
from .processes import ProcessTable, become_subreaper, stop_together
from .replicas import CGROUP_PARENT, ReplicaSet
from .services import StackLayout
from .topology import ETCD, HAPROXY, NETPROXY, POSTGRES, REDIS, SENTINEL
from .zones import ProcessZones, ZoneNetwork, detect_zone_mode

PREFIX = "rsl-"
STATE_FILE = "state.json"
EVENTS_FILE = "events.jsonl"
SOCKET_FILE = "control.sock"
ERROR_FILE = "startup-error.txt"
SETTINGS_FILE = "settings.json"
HEALTH_PERIOD_S = 1.0  # how often the loop looks at the whole stack and rewrites state.json


def settings_from_json(data: dict[str, Any]) -> StackSettings:
    data = dict(data)
    data["zones"] = tuple(data["zones"])
    data["autoscaling"] = Autoscaling(**data["autoscaling"])
    data["ports"] = Ports(**data["ports"])
    data["backup"] = BackupSettings(**data.get("backup", {}))
    return StackSettings(**data)


class Supervisor:
    """The parts, wired together; start-up, the loop, shutdown."""

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.root = settings.state_path
        self.lock = threading.RLock()  # the stack lock: every change of state happens under it
        self.stop_event = threading.Event()
        self.ready = False
        self._state_lock = threading.Lock()  # one writer of state.json at a time (the loop, restarts by faults)
        mode, reason = detect_zone_mode(settings.zone_mode)
        self.zone_mode, self.zone_mode_reason = mode, reason
        self.zones: Any = (ZoneNetwork(list(settings.zones), settings.zone_subnet, prefix=PREFIX)
                           if mode == "netns" else ProcessZones(list(settings.zones)))
        self.layout = StackLayout(settings, self.zones.address,
                                  (lambda z: self.zones.netns(z) if z else None) if mode == "netns" else (lambda z: None),
                                  self.zones.host_address())
        self.topology = self.layout.topology
        self.cgroups_ok, self.cgroups_reason = cgroups.cgroups_available()
        self.events = EventLog(self.root / EVENTS_FILE)
        self.guard = LoopGuard(self.events)
        self.probes = probes = Probes(self.layout)
        self.processes = ProcessTable(self.layout, probes, self.events, self.lock, started=self.write_state)
        self.replicas = ReplicaSet(settings, self.layout, self.events, self.lock, self.cgroups_ok)
        self.monitor = HealthMonitor(settings, self.layout, probes, self.processes, self.replicas, self.events,
                                     self.lock)
        self.monitoring = Monitoring(self.layout)  # Prometheus, Alertmanager, exporters: rows in the status too
        self.monitor.extra_rows = self.monitoring.rows
        self.injector = FaultInjector(StackParts(settings, self.topology, self.zones, mode, probes, self.processes,
                                                 self.replicas, self.monitor, self.events, self.lock))
        self.controller = ReplicaController(settings, self.replicas, self.events, self.lock, self.injector.lost)
        self.heal = HealWait(settings, self.layout, probes, self.monitor, self.processes, self.replicas,
                             lambda: self.controller.desired, self.events, self.stop_event)
        self.backups = BackupScheduler(settings, self.events, lambda: self.monitor.pg_leader)
        self.control = ControlServer(self.layout.url, mode, self.processes, self.replicas, self.controller,
                                     self.monitor, self.injector, self.heal, self.guard, self.stop_event)

    def write_state(self) -> None:
        """state.json: what `resilience status` and `down` read (every PID, at once: `down` must find them)."""
        data = {"supervisor_pid": os.getpid(), "ready": self.ready, "url": self.layout.url,
                "zone_mode": self.zone_mode, "zone_mode_reason": self.zone_mode_reason,
                "cgroups": self.cgroups_ok, "lost_zones": sorted(self.injector.lost()),
                "desired_replicas": self.controller.desired, "components": self.monitor.rows(),
                "backup": self.backups.state(),
                "updated_monotonic": time.monotonic()}
        with self._state_lock:
            tmp = self.root / (STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.root / STATE_FILE)

    # -- start-up ---------------------------------------------------------------------
    def start(self) -> None:
        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        self.events.reset()
        become_subreaper()
        if self.zone_mode == "netns":
            self.zones.create()
        if self.cgroups_ok:
            cgroups.cleanup(parent=CGROUP_PARENT)
        self.events("platform", "starting", zone_mode=self.zone_mode)
        members, probes = self.topology.members, self.probes
        timeout = self.s.startup_timeout_s
        executor = self.processes.executor
        # etcd (one member per zone) and Redis + Sentinel in parallel; the first Redis server starts as master
        for c in members(ETCD) + members(REDIS) + members(SENTINEL) + members(HAPROXY) + members(NETPROXY):
            self.processes.launch(c, redis_master=self.layout.first_redis_address())
        m0 = time.monotonic()
        self.monitoring.start()
        self.write_state()
        monitoring_s = time.monotonic() - m0  # its cost on `up`: this start and the wait below (parallel otherwise)
        for c in members(ETCD):
            executor(c).wait_ready(timeout)
        if self.s.backup.enabled:
            prepare_repos(self.s)
        # PostgreSQL: the first member bootstraps and leads; the others clone from it
        first_pg, *other_pgs = members(POSTGRES)
        self.processes.launch(first_pg, postgres_role="primary")
        executor(members(HAPROXY)[0]).wait_ready(timeout)
        self.replicas.admin = haproxy.HAProxyAdmin(self.layout.haproxy_socket())
        self.replicas.admin.wait_ready(10)
        executor(first_pg).wait_ready(timeout)
        executor(members(NETPROXY)[0]).wait_ready(timeout)  # the API replicas reach the database through it
        for c in other_pgs:
            self.processes.launch(c, postgres_role="replica")
        # API replicas, spread over the zones
        for _ in range(self.s.replicas):
            self.controller.start_replica()
        self.write_state()
        for c in members(REDIS) + members(SENTINEL) + tuple(other_pgs):
            executor(c).wait_ready(timeout)
        wait_for(self._replicas_in_load_balancer, timeout,
                 f"{self.s.replicas} API replicas ready in HAProxy (see {self.root}/logs/api-*.log)")
        if self.s.synchronous_replication:
            wait_for(lambda: bool(sync_standbys(probes.cluster(first_pg))), timeout, "a synchronous standby (Patroni)")
        wait_for(self.monitor.whole, timeout,
                 "every component to report that it has joined (replication streaming, Sentinels agreeing)")
        m0 = time.monotonic()
        self.monitoring.wait_ready(timeout)
        self._look()
        self.events("platform", "monitoring-ready", seconds_on_up=round(monitoring_s + time.monotonic() - m0, 3))
        self.events("platform", "ready", seconds=round(time.monotonic() - t0, 3))
        self.ready = True
        self.backups.start()  # stanza and first full backup in the background: `up` does not wait for them
        self.write_state()

    def _replicas_in_load_balancer(self) -> bool:
        """Start-up: put the replicas that answer ready into HAProxy (the loop does it later), and count them."""
        self.replicas.enable_ready()
        return self.replicas.count_ready() >= self.s.replicas

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> None:
        """Until stopped: reap, run the replica controller, and every second look at the stack and write state.json."""
        period = self.s.autoscaling.sync_period_s
        next_health = 0.0
        while not self.stop_event.is_set():
            started = time.monotonic()
            self.guard.run("reaper", self.processes.reap)
            self.guard.run("controller", self.controller.tick)
            self.guard.run("backups", self.backups.tick)
            if started >= next_health and self.guard.run("health", self._look):
                next_health = started + HEALTH_PERIOD_S
            self.stop_event.wait(max(0.05, min(0.25, period - (time.monotonic() - started))))

    def _look(self) -> None:
        self.monitor.refresh()
        self.monitoring.refresh()
        self.monitoring.sync_api_targets([r for r in self.monitor.rows() if r["kind"] == "api"])
        self.write_state()

    # -- shutdown ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop everything, in waves of parallel stops: traffic first, then data, then coordination."""
        self.events("platform", "stopping")
        self.backups.stop()
        stop_together(self.monitoring.executors_list(), timeout=1.0)
        self.processes.stop_all(self.replicas.executors())
        self.replicas.forget_all()
        if self.cgroups_ok:
            cgroups.cleanup(parent=CGROUP_PARENT)
        from .netfaults import remove_loss  # late: it imports the fault modules' base
        remove_loss()  # a packet-loss table a fault left behind
        if self.zone_mode == "netns":
            self.zones.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the local stack supervisor (started by `resilience up`)")
    parser.add_argument("--settings", required=True, help="JSON file with the stack settings")
    args = parser.parse_args(argv)
    settings = settings_from_json(json.loads(Path(args.settings).read_text()))
    root = settings.state_path
    supervisor: Supervisor | None = None
    starting = True

    def on_signal(signum: int, frame: Any) -> None:
        if starting:
            raise KeyboardInterrupt  # abort start-up; the except below stops what was started
        if supervisor is not None:
            supervisor.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        supervisor = Supervisor(settings)
        server = supervisor.control.serve(root / SOCKET_FILE)
        supervisor.start()
    except BaseException as exc:
        message = (str(exc) if isinstance(exc, (UserError, HarnessError)) else
                   "start-up was interrupted" if isinstance(exc, KeyboardInterrupt) else traceback.format_exc())
        (root / ERROR_FILE).write_text(message)
        print(message, file=sys.stderr)
        if supervisor is not None:
            supervisor.shutdown()
        return 2
    starting = False
    try:
        supervisor.run()
    finally:
        supervisor.shutdown()
        server.shutdown()
        (root / SOCKET_FILE).unlink(missing_ok=True)
        (root / STATE_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
