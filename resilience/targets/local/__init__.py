"""The local platform: the whole school-meal platform as real processes on this machine.

`LocalPlatform` is the harness side. It starts the supervisor
(`resilience.targets.local.supervisor`) in the background, talks to it over
its control socket, and reads its `state.json` and `events.jsonl`.
Its faults are made by `LocalNemesis` (nemesis.py) through the same socket.
All state lives in one directory: `stack.state_dir` (default
/var/lib/resilience, or $RESILIENCE_STATE_DIR).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ...config import STATE_MARKER, Settings, state_dir_problem
from ...errors import HarnessError, UserError
from ..base import Build, Component, Platform, PlatformEvent, StackStatus
from .monitoring import PROGRAMS as MONITORING_PROGRAMS, ports as monitoring_ports
from .services import ETCD_ELECTION_TIMEOUT_MS, PATRONI_SCOPE, check_binaries, port_free
from .topology import ETCD, POSTGRES, REDIS, SENTINEL, Topology
from .supervisor import ERROR_FILE, EVENTS_FILE, HEALTH_PERIOD_S, PREFIX, SETTINGS_FILE, SOCKET_FILE, STATE_FILE


class LocalPlatform(Platform):
    name = "local"

    @classmethod
    def build(cls, parts: Build) -> "LocalPlatform":
        return cls(parts.settings)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.s = settings.stack
        self.root = self.s.state_path
        self.alerts: Any = None  # an AlertReceiver between start_observing() and stop_observing()
        self.signals: Any = None  # a SignalWatch (signal_watch.py), the same

    # -- supervisor plumbing ------------------------------------------------------------
    def _state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None

    def supervisor_pid(self) -> int | None:
        state = self._state()
        pid = state.get("supervisor_pid") if state else None
        if pid is None:
            try:
                pid = int((self.root / "supervisor.pid").read_text())
            except (OSError, ValueError):
                return None
        return pid if _is_supervisor(pid) else None

    def running(self) -> bool:
        return self.supervisor_pid() is not None

    def request(self, op: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
        """One request to the supervisor's control socket."""
        path = self.root / SOCKET_FILE
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(path))
                sock.sendall((json.dumps({"op": op, **args}) + "\n").encode())
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except (FileNotFoundError, ConnectionRefusedError):
            raise HarnessError(f"the local stack is not running (no supervisor at {path}). "
                               f"Start it with `resilience up`.") from None
        except socket.timeout:
            raise HarnessError(f"the local stack's supervisor did not answer '{op}' within {timeout:.0f} s; "
                               f"see {self.root}/logs/supervisor.log") from None
        response = json.loads(data or b"{}")
        if not response.get("ok"):
            cls = UserError if response.get("user_error") else HarnessError
            raise cls(f"local stack: {op} failed: {response.get('error', 'no answer')}")
        return response

    # -- lifecycle ---------------------------------------------------------------------
    def up(self) -> StackStatus:
        if self.running():
            return self.status()
        check_binaries()
        if os.geteuid() != 0:
            raise UserError("the local stack needs root (network namespaces, cgroups, running PostgreSQL as "
                            "'postgres'). Run `sudo .venv/bin/resilience up`.")
        self._check_ours()
        self._check_ports()
        self._clean_leftovers()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / STATE_MARKER).touch()  # `down` deletes only in a directory that holds it
        os.chmod(self.root, 0o711)  # others may pass through (PostgreSQL runs as 'postgres'), not look in
        (self.root / "logs").mkdir(exist_ok=True)
        for name in (ERROR_FILE, STATE_FILE):
            (self.root / name).unlink(missing_ok=True)
        settings_path = self.root / SETTINGS_FILE
        settings_path.write_text(json.dumps(dataclasses.asdict(self.s), indent=1))
        log = open(self.root / "logs" / "supervisor.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "resilience.targets.local",
                                 "--settings", str(settings_path)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
        log.close()
        (self.root / "supervisor.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + self.s.startup_timeout_s + 30
        try:
            while time.monotonic() < deadline:
                state = self._state()
                if state and state.get("ready"):
                    return self.status()
                if proc.poll() is not None:
                    error = (self.root / ERROR_FILE).read_text() if (self.root / ERROR_FILE).exists() else \
                        f"the supervisor exited with code {proc.returncode}; see {self.root}/logs/supervisor.log"
                    raise HarnessError(f"`resilience up` failed and stopped everything it had started: {error}")
                time.sleep(0.1)
            raise HarnessError(f"the local stack was not ready within {deadline:.0f} s; "
                               f"see {self.root}/logs/. Everything started was stopped again.")
        except BaseException:
            self.down()
            raise
        finally:
            if proc.poll() is not None:
                proc.wait()

    def _check_ports(self) -> None:
        """HAProxy's ports always; in process mode every component's, since all share 127.0.0.1."""
        ports = self.s.ports
        wanted = [("ports.lb", ports.lb), ("ports.lb_stats", ports.lb_stats)]
        if self.s.zone_mode == "process":
            a = self.s.autoscaling
            wanted += [("ports.api_base", ports.api_base + i) for i in range(1, a.max_replicas + 1)]
            port_kinds = {ETCD: ("etcd_client_base", "etcd_peer_base"), SENTINEL: ("sentinel_base",),
                          POSTGRES: ("postgres_base", "patroni_base"), REDIS: ("redis_base",)}
            topology = Topology(self.s.zones)
            wanted += [(f"ports.{name}", getattr(ports, name) + member.index) for kind, names in port_kinds.items()
                       for member in topology.members(kind) for name in names]
        for name, port in wanted:
            if not port_free("127.0.0.1", port):
                raise UserError(f"port {port} on 127.0.0.1 (setting stack.{name}) is in use by another program. "
                                f"Stop that program, or choose a free port in the config file (stack.{name}).")
        for name, port in monitoring_ports(self.s.zones):
            if not port_free("127.0.0.1", port):
                raise UserError(f"port {port} on 127.0.0.1 (the monitoring's {name}; fixed in "
                                f"targets/local/monitoring.py) is in use by another program. Stop that program.")

    def _clean_leftovers(self) -> None:
        """Remove what a crashed earlier run left: its processes (by recorded PID), namespaces, cgroups."""
        self._kill_recorded_components()
        from . import cgroups
        from .zones import ZoneNetwork
        ZoneNetwork(list(self.s.zones), self.s.zone_subnet, prefix=PREFIX).destroy()
        if cgroups.cgroups_available()[0]:
            for pid in cgroups.member_pids(parent=PREFIX + "api"):  # API replicas a crashed supervisor left
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            cgroups.cleanup(parent=PREFIX + "api")

    def _kill_recorded_components(self) -> None:
        state = self._state()
        if not state:
            return
        for comp in state.get("components", []):
            pid = comp.get("pid")
            program = _PROGRAMS.get(comp.get("kind", ""), "?")
            if pid and _same_process_group_alive(pid) and program in _cmdline(pid):  # not a reused PID
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.killpg(pid, sig)
                    except (ProcessLookupError, PermissionError):
                        pass
        job = (state.get("backup") or {}).get("pid")  # a pgBackRest command a crashed supervisor left
        if job and _same_process_group_alive(job) and "pgbackrest" in _cmdline(job):
            try:
                os.killpg(job, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for member in Topology(self.s.zones).members(POSTGRES):
            try:
                pm = int((self.root / member.name / "data" / "postmaster.pid").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if _cmdline(pm).startswith("/usr/lib/postgresql/"):
                try:
                    children = [int(c) for c in Path(f"/proc/{pm}/task/{pm}/children").read_text().split()]
                except OSError:
                    children = []
                for pid in [pm, *children]:  # each PostgreSQL backend is its own process group
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def _check_ours(self) -> None:
        problem = state_dir_problem(self.root)
        if problem:
            raise UserError(f"the state directory {self.root} is not the local stack's: {problem}. Nothing was "
                            f"stopped or deleted. Set 'stack.state_dir' to a dedicated folder.")

    def down(self) -> None:
        self._check_ours()
        pid = self.supervisor_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _is_supervisor(pid):
                time.sleep(0.05)
            if _is_supervisor(pid):
                os.killpg(pid, signal.SIGKILL)
        self._clean_leftovers()
        for name in os.listdir(self.root) if self.root.exists() else []:
            if name in ("logs", STATE_MARKER):
                continue
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def status(self) -> StackStatus:
        if not self.running():
            return StackStatus(self.name, False, None, None, [], {"state_dir": str(self.root)})
        response = self.request("status", timeout=10)
        components = [Component(**c) for c in response["components"]]
        detail = {k: response.get(k) for k in ("desired_replicas", "ready_replicas", "lost_zones", "primary_zone",
                                                  "pg_leader", "redis_master", "problems")}
        detail["state_dir"] = str(self.root)
        detail["backup"] = _backup_detail(self.s, self._state())
        return StackStatus(self.name, True, response["url"], response["zone_mode"], components, detail)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.s.ports.lb}"

    # -- observation --------------------------------------------------------------------
    def ready_replicas(self) -> int:
        return int(self.request("ready_replicas", timeout=10)["ready"])

    def events_since(self, monotonic: float) -> list[PlatformEvent]:
        events = self.alerts.since(monotonic) if self.alerts is not None else []
        events += self.signals.since(monotonic) if self.signals is not None else []
        try:
            lines = (self.root / EVENTS_FILE).read_text().splitlines()
        except OSError:
            return events
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line being written
            if e["m"] >= monotonic:
                events.append(PlatformEvent(e["m"], e["source"], e["op"], e.get("detail", {})))
        return events

    def start_observing(self) -> None:
        """Alertmanager's notifications and Prometheus's pending alerts into the run (alert_receiver.py)."""
        from .alert_receiver import AlertReceiver
        self.stop_observing()
        from ...platform.settings import PlatformSettings
        api = PlatformSettings()  # the API replicas run with its defaults (services.api_spec sets no timeouts)
        s = self.s
        self.alerts = AlertReceiver(failover={  # what the failover phases are judged against
            "patroni": {"ttl_s": s.patroni_ttl_s, "loop_wait_s": s.patroni_loop_wait_s,
                        "retry_timeout_s": s.patroni_retry_timeout_s},
            "sentinel_down_after_s": s.redis_down_after_ms / 1000, "look_s": HEALTH_PERIOD_S,
            "sentinel_failover_timeout_s": s.redis_failover_timeout_ms / 1000,
            "api_ready_interval_s": api.ready_interval_s,  # the API's primary check
            "client_timeout_s": api.pg_connect_timeout_s + api.pg_command_timeout_s,  # the longest a write waits
            "etcd_election_timeout_s": ETCD_ELECTION_TIMEOUT_MS / 1000,
            "haproxy": {"inter_s": 0.5, "rise": 2, "fall": 2}})  # haproxy.render_config's default-server line
        self.alerts.start()
        from .signal_watch import SignalWatch, watched_from_state
        self.signals = SignalWatch(watched_from_state(self.root, f"/service/{PATRONI_SCOPE}/leader"))
        self.signals.start()

    def stop_observing(self) -> None:
        if self.alerts is not None:
            self.alerts.stop()
        if self.signals is not None:
            self.signals.stop()

    def primary_zone(self) -> str | None:
        return self.request("status", timeout=10).get("primary_zone")

    def plan_up(self) -> list[str]:
        return [f"up: start the supervisor (python -m resilience.targets.local) unless one runs in {self.root}; it "
                f"starts etcd, PostgreSQL (Patroni), Redis + Sentinel, HAProxy, {self.s.replicas} API replicas and "
                f"Prometheus + Alertmanager + exporters "
                f"in zones {', '.join(self.s.zones)}, and waits until every one is healthy"]

    def zone_names(self) -> tuple[str, ...]:
        return tuple(self.s.zones)

    def heal_wait_s(self) -> float:
        """How long a restoring request may take: the supervisor's own heal deadline, plus restarting."""
        return self.s.heal_timeout_s + 60

# what each kind of component runs: a recorded PID is only signalled if it still runs that program
_PROGRAMS = {"etcd": "etcd", "postgres": "patroni", "redis": "redis-server", "sentinel": "redis-sentinel",
             "haproxy": "haproxy", "api": "resilience.platform", "netproxy": "resilience.targets.local.netproxy",
             **MONITORING_PROGRAMS}


def _backup_detail(s: Any, state: dict[str, Any] | None) -> dict[str, Any] | None:
    """The backup posture (both repositories) and the scheduler's state; None when backups are off."""
    from .backups import read_posture
    posture = read_posture(s)
    if posture is not None:
        posture["scheduler"] = (state or {}).get("backup")
    return posture


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_supervisor(pid: int) -> bool:
    """True when `pid` is alive and is our supervisor (guards against a reused PID)."""
    cmd = _cmdline(pid)
    if "-m resilience.targets.local " not in cmd or "--settings" not in cmd:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _same_process_group_alive(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False
