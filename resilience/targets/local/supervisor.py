"""The local stack's supervisor: one long-lived process that owns every component.

`resilience up` starts it in the background. It starts every service as its own
child (so it can wait() on them: PID 1 here reaps slowly), then runs:
- the replica controller: replaces dead API replicas (like a ReplicaSet) and
  autoscales with the Kubernetes HPA algorithm on cgroup CPU usage;
- a health loop that writes `state.json` (what `resilience status` shows) and
  records failovers it observes as events;
- a control socket (`control.sock`, one JSON request per connection) through
  which the harness injects and rolls back faults.
Every decision is appended to `events.jsonl` with its CLOCK_MONOTONIC time.
On SIGTERM or the `shutdown` request it stops everything and cleans up.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import signal
import socketserver
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import Autoscaling, Ports, StackSettings
from ...errors import HarnessError, UserError
from . import cgroups, haproxy
from .autoscaler import Autoscaler, HpaSpec
from .executor import Executor, wait_for
from .healing import HealProgress, agreed_master, heal_action, postgres_problems, redis_problems
from .secrets import PATRONI_API_USER
from .services import REDIS_MASTER_NAME, StackLayout, http_get, http_json, http_post
from .zones import ProcessZones, ZoneNetwork, detect_zone_mode

PREFIX = "rsl-"
STATE_FILE = "state.json"
EVENTS_FILE = "events.jsonl"
SOCKET_FILE = "control.sock"
ERROR_FILE = "startup-error.txt"
SETTINGS_FILE = "settings.json"
API_REPLICAS = "api-replicas"  # the heal's name for "as many API replicas ready as desired"


def settings_from_json(data: dict[str, Any]) -> StackSettings:
    data = dict(data)
    data["zones"] = tuple(data["zones"])
    data["autoscaling"] = Autoscaling(**data["autoscaling"])
    data["ports"] = Ports(**data["ports"])
    return StackSettings(**data)


def _redis(address: str, password: str, timeout: float = 0.3) -> Any:
    import redis
    host, port = address.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), password=password, socket_timeout=timeout,
                       socket_connect_timeout=timeout)


@dataclass
class Replica:
    """One API replica in one HAProxy slot."""

    slot: int
    zone: str
    executor: Executor
    cpu: Any | None  # cgroups.CpuGroup
    enabled: bool = False  # in HAProxy
    lost: bool = False  # its zone was lost: frozen, not counted
    stopping: bool = False
    last_usage: float | None = None


class Supervisor:
    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.root = settings.state_path
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        mode, reason = detect_zone_mode(settings.zone_mode)
        self.zone_mode, self.zone_mode_reason = mode, reason
        self.zones: Any = (ZoneNetwork(list(settings.zones), settings.zone_subnet, prefix=PREFIX)
                           if mode == "netns" else ProcessZones(list(settings.zones)))
        self.layout = StackLayout(settings, self.zones.address,
                                  (lambda z: self.zones.netns(z) if z else None) if mode == "netns" else (lambda z: None))
        self.cgroups_ok, self.cgroups_reason = cgroups.cgroups_available()
        self.services: dict[str, Executor] = {}  # etcd, postgres (patroni), redis, sentinel, haproxy
        self.replicas: dict[int, Replica] = {}
        self.lost_zones: set[str] = set()
        self.stopped_services: set[str] = set()  # killed by a fault; not restarted by the health loop
        self.paused: set[str] = set()
        self.admin: haproxy.HAProxyAdmin | None = None
        self.autoscaler = Autoscaler(HpaSpec.from_settings(settings.autoscaling))
        self.desired = settings.replicas
        self.events_path = self.root / EVENTS_FILE
        self.health: dict[str, bool] = {}
        self.roles: dict[str, str] = {}
        self.problems: dict[str, str] = {}  # component → why it is not whole (see healing.py)
        self.restart_marks: dict[str, int] = {}  # component → its log's size when it was last restarted
        self.pg_leader: str | None = None
        self.redis_master: str | None = None
        self.last_ready: tuple[int, int] | None = None
        self.last_cpu_t: float | None = None
        self.held_walsenders: list[int] = []
        self._next_scale = 0.0

    # -- events and state -----------------------------------------------------------
    def event(self, source: str, op: str, **detail: Any) -> None:
        line = json.dumps({"m": time.monotonic(), "wall": time.time(), "source": source, "op": op, "detail": detail})
        with self.lock, self.events_path.open("a") as f:
            f.write(line + "\n")

    def write_state(self, ready: bool) -> None:
        data = {"supervisor_pid": os.getpid(), "ready": ready, "url": self.layout.url,
                "zone_mode": self.zone_mode, "zone_mode_reason": self.zone_mode_reason,
                "cgroups": self.cgroups_ok, "lost_zones": sorted(self.lost_zones),
                "desired_replicas": self.desired, "components": self.components(),
                "updated_monotonic": time.monotonic()}
        tmp = self.root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.root / STATE_FILE)

    def components(self) -> list[dict[str, Any]]:
        out = []
        with self.lock:
            for name, ex in self.services.items():
                kind = name.split("-")[0]
                place = self._placement(name)
                out.append({"name": name, "kind": kind, "role": self.roles.get(name, "member"),
                            "zone": place.zone if place else None, "pid": ex.pid if ex.alive() else None,
                            "address": place.address if place else "", "healthy": self.health.get(name, False)})
            for slot, r in sorted(self.replicas.items()):
                place = self.layout.api(slot, r.zone)
                out.append({"name": place.name, "kind": "api", "role": "lost" if r.lost else "replica",
                            "zone": r.zone, "pid": r.executor.pid if r.executor.alive() else None,
                            "address": place.address, "healthy": self.health.get(place.name, False)})
        return out

    def _placement(self, name: str) -> Any:
        kind, _, idx = name.partition("-")
        if kind == "haproxy":
            return self.layout.haproxy()
        fn = {"etcd": self.layout.etcd, "postgres": self.layout.postgres, "redis": self.layout.redis,
              "sentinel": self.layout.sentinel}.get(kind)
        return fn(int(idx)) if fn and idx.isdigit() else None

    # -- start-up ---------------------------------------------------------------------
    def start(self) -> None:
        t0 = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        self.events_path.write_text("")
        _become_subreaper()
        if self.zone_mode == "netns":
            self.zones.create()
        if self.cgroups_ok:
            cgroups.cleanup(parent=PREFIX + "api")
        self.event("platform", "starting", zone_mode=self.zone_mode)
        # etcd (three members, one per zone) and Redis + Sentinel in parallel
        for i in (1, 2, 3):
            self._start_service(f"etcd-{i}", self.layout.etcd_spec(i), self._etcd_ready(i))
        master = self.layout.redis(1).address
        self._start_service("redis-1", self.layout.redis_spec(1, None), self._redis_ready("redis-1"))
        self._start_service("redis-2", self.layout.redis_spec(2, master), self._redis_ready("redis-2"))
        for i in (1, 2, 3):
            self._start_service(f"sentinel-{i}", self.layout.sentinel_spec(i, master), self._redis_ready(f"sentinel-{i}"))
        cfg = haproxy.render_config(bind="127.0.0.1", port=self.s.ports.lb, stats_port=self.s.ports.lb_stats,
                                    socket_path=str(self.layout.haproxy_socket()),
                                    slots=self.s.autoscaling.max_replicas)
        self._start_service("haproxy", self.layout.haproxy_spec(cfg), lambda: self.layout.haproxy_socket().exists())
        for i in (1, 2, 3):
            self.services[f"etcd-{i}"].wait_ready(self.s.startup_timeout_s)
        # PostgreSQL: member 1 bootstraps and leads; member 2 clones from it
        self._start_service("postgres-1", self.layout.patroni_spec(1), self._patroni_role_ready(1, "primary"))
        self.services["haproxy"].wait_ready(self.s.startup_timeout_s)
        self.admin = haproxy.HAProxyAdmin(self.layout.haproxy_socket())
        self.admin.wait_ready(10)
        self.services["postgres-1"].wait_ready(self.s.startup_timeout_s)
        self._start_service("postgres-2", self.layout.patroni_spec(2), self._patroni_role_ready(2, "replica"))
        # API replicas, spread over the zones
        for _ in range(self.s.replicas):
            self._start_replica()
        self.write_state(ready=False)
        for name in ("redis-1", "redis-2", "sentinel-1", "sentinel-2", "sentinel-3"):
            self.services[name].wait_ready(self.s.startup_timeout_s)
        self.services["postgres-2"].wait_ready(self.s.startup_timeout_s)
        wait_for(lambda: self._count_ready() >= self.s.replicas, self.s.startup_timeout_s,
                 f"{self.s.replicas} API replicas ready in HAProxy (see {self.root}/logs/api-*.log)")
        if self.s.synchronous_replication:
            wait_for(self._sync_standby_present, self.s.startup_timeout_s, "a synchronous standby (Patroni)")
        self.pg_leader = self._find_pg_leader()
        self.redis_master = self._find_redis_master()
        wait_for(self._whole, self.s.startup_timeout_s,
                 "every component to report that it has joined (replication streaming, Sentinels agreeing)")
        self.event("platform", "ready", seconds=round(time.monotonic() - t0, 3))
        self.write_state(ready=True)

    def _start_service(self, name: str, spec: Any, ready: Any) -> Executor:
        ex = Executor(spec, ready)
        ex.start()
        self.services[name] = ex
        self.write_state(ready=False)  # record the PID at once: `down` must find it even if we crash
        return ex

    def _etcd_ready(self, i: int) -> Any:
        url = f"http://{self.layout.etcd(i).address}/health"
        return lambda: (http_json(url, 0.5) or {}).get("health") == "true"

    def _redis_ready(self, name: str) -> Any:
        place = self._placement(name)
        return lambda: bool(_redis(place.address, self.layout.secrets.redis).ping())

    def _patroni_role_ready(self, i: int, role: str) -> Any:
        base = self.layout.patroni_api(i)

        def check() -> bool:
            if role == "primary":
                return http_get(f"{base}/primary", 0.5)[0] == 200
            data = http_json(f"{base}/patroni", 0.5) or {}
            if role == "any":
                return data.get("state") == "running"
            return data.get("state") == "running" and data.get("role") == "replica" and \
                bool((data.get("replication_state") or "streaming") == "streaming")
        return check

    def _sync_standby_present(self) -> bool:
        data = http_json(f"{self.layout.patroni_api(1)}/cluster", 0.5) or {}
        return any(m.get("role") == "sync_standby" for m in data.get("members", []))

    # -- replicas ----------------------------------------------------------------------
    def _free_slot(self) -> int:
        for slot in range(1, self.s.autoscaling.max_replicas + 1):
            if slot not in self.replicas:
                return slot
        raise HarnessError("no free HAProxy slot: max_replicas reached")

    def _pick_zone(self) -> str:
        live = [z for z in self.s.zones if z not in self.lost_zones] or list(self.s.zones)
        counts = {z: sum(1 for r in self.replicas.values() if r.zone == z and not r.lost) for z in live}
        return min(live, key=lambda z: (counts[z], live.index(z)))

    def _start_replica(self, slot: int | None = None, zone: str | None = None) -> Replica:
        with self.lock:
            slot = slot or self._free_slot()
            zone = zone or self._pick_zone()
            spec = self.layout.api_spec(slot, zone)
            place = self.layout.api(slot, zone)
            ex = Executor(spec, lambda: http_get(f"http://{place.address}/health/ready", 0.5)[0] == 200)
            ex.start()
            cpu = None
            if self.cgroups_ok and ex.pid:
                cpu = cgroups.CpuGroup(place.name, parent=PREFIX + "api")
                cpu.create(self.s.replica_cpu_limit)
                cpu.add(ex.pid)
            replica = Replica(slot, zone, ex, cpu)
            self.replicas[slot] = replica
            return replica

    def _stop_replica(self, replica: Replica, graceful: bool = True) -> None:
        if self.admin and replica.enabled:
            try:
                self.admin.disable_server(replica.slot) if not graceful else self.admin.drain_server(replica.slot)
            except Exception:
                pass
        replica.stopping = True
        if graceful:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and self.admin:
                try:
                    state = self.admin.server_states().get(replica.slot)
                    if state is None or state.current_sessions == 0:
                        break
                except Exception:
                    break
                time.sleep(0.05)
        if self.admin:
            try:
                self.admin.disable_server(replica.slot)
            except Exception:
                pass
        replica.executor.signal(signal.SIGCONT)
        replica.executor.stop(timeout=3)
        if replica.cpu is not None:
            replica.cpu.destroy()
        with self.lock:
            self.replicas.pop(replica.slot, None)

    def _count_ready(self) -> int:
        self._enable_ready_replicas()
        if not self.admin:
            return 0
        up = set(self.admin.up_slots())
        return sum(1 for slot, r in self.replicas.items() if slot in up and _serving(r))

    def _enable_ready_replicas(self) -> None:
        with self.lock:  # the control socket and the controller both get here; enable each slot once
            self._enable_ready_replicas_locked()

    def _enable_ready_replicas_locked(self) -> None:
        for r in list(self.replicas.values()):
            if not r.enabled and not r.lost and not r.stopping and r.executor.ready() and self.admin:
                place = self.layout.api(r.slot, r.zone)
                self.admin.enable_server(r.slot, place.host, place.port)
                r.enabled = True
                self.event("controller", "ready", replica=place.name, zone=r.zone,
                           startup_s=round(time.monotonic() - (r.executor.started_at or 0), 3))

    # -- controller loop ------------------------------------------------------------------
    def control_loop(self) -> None:
        period = self.s.autoscaling.sync_period_s
        next_health = 0.0
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                self._reap()
                self._replace_dead()
                self._autoscale()
                self._rebalance()
                ready = self._count_ready()
                if (ready, self.desired) != self.last_ready:
                    self.last_ready = (ready, self.desired)
                    self.event("controller", "replicas", ready=ready, desired=self.desired)
                if started >= next_health:
                    self._refresh_health()
                    self.write_state(ready=True)
                    next_health = started + 1.0
            except Exception:
                traceback.print_exc()
            self.stop_event.wait(max(0.05, min(0.25, period - (time.monotonic() - started))))

    def _replace_dead(self) -> None:
        with self.lock:
            for r in list(self.replicas.values()):
                if r.stopping or r.lost or r.executor.alive():
                    continue
                name = self.layout.api(r.slot, r.zone).name
                if self.admin and r.enabled:
                    try:
                        self.admin.disable_server(r.slot)
                    except Exception:
                        pass
                if r.cpu is not None:
                    r.cpu.destroy()
                self.replicas.pop(r.slot)
                new = self._start_replica(slot=r.slot)
                self.event("controller", "replace", replica=name, zone=r.zone, new_zone=new.zone,
                           exit_code=r.executor.proc.returncode if r.executor.proc else None)
            # keep the desired count over live (not lost) replicas
            live = [r for r in self.replicas.values() if not r.lost and not r.stopping]
            for _ in range(self.desired - len(live)):
                new = self._start_replica()
                self.event("controller", "create", replica=self.layout.api(new.slot, new.zone).name, zone=new.zone)

    def _rebalance(self) -> None:
        """Topology spread (maxSkew 1) over live zones: after a zone returns, move replicas back into it.

        Surge first, like a rolling update: start one in the emptiest zone, and once it is
        in the load balancer, stop one in the fullest zone.
        """
        if self.lost_zones:
            return
        with self.lock:
            live = [r for r in self.replicas.values() if not r.lost and not r.stopping]
            if any(not r.enabled for r in live):
                return  # wait until new replicas are in the load balancer
            counts = {z: sum(1 for r in live if r.zone == z) for z in self.s.zones}
            fullest = max(self.s.zones, key=lambda z: counts[z])
            emptiest = min(self.s.zones, key=lambda z: counts[z])
            if len(live) > self.desired:
                victim = max((r for r in live if r.zone == fullest), key=lambda r: r.slot)
            elif counts[fullest] - counts[emptiest] > 1:
                new = self._start_replica(zone=emptiest)
                self.event("controller", "rebalance", replica=self.layout.api(new.slot, new.zone).name,
                           zone=emptiest, counts=counts)
                return
            else:
                return
        self.event("controller", "rebalance", stop=self.layout.api(victim.slot, victim.zone).name, zone=victim.zone)
        self._stop_replica(victim, graceful=True)

    def _utilization(self) -> float | None:
        """Mean CPU use of ready replicas as a percentage of their limit (None: no metrics)."""
        if not self.cgroups_ok:
            return None
        now = time.monotonic()
        values = []
        for r in self.replicas.values():
            if r.cpu is None or r.lost or not r.enabled:
                continue
            try:
                usage = r.cpu.usage_seconds()
            except OSError:
                continue
            if r.last_usage is not None and self.last_cpu_t is not None and now > self.last_cpu_t:
                values.append(100.0 * cgroups.utilization(usage - r.last_usage, now - self.last_cpu_t,
                                                          self.s.replica_cpu_limit))
            r.last_usage = usage
        self.last_cpu_t = now
        return sum(values) / len(values) if values else None

    def _autoscale(self) -> None:
        now = time.monotonic()
        if self._next_scale > now:
            return
        self._next_scale = now + self.s.autoscaling.sync_period_s
        util = self._utilization()
        with self.lock:
            current = self.desired
            decision = self.autoscaler.decide(now, current, util)
            if decision.desired == current:
                return
            self.event("controller", "scale", **{"from": current, "to": decision.desired,
                                                 "utilization": None if util is None else round(util, 1),
                                                 "reason": decision.reason})
            self.desired = decision.desired
            live = sorted((r for r in self.replicas.values() if not r.lost and not r.stopping),
                          key=lambda r: r.slot)
            excess = len(live) - self.desired
        for r in reversed(live[len(live) - max(0, excess):] if excess > 0 else []):
            self._stop_replica(r, graceful=True)
        # scale-up replicas are created by _replace_dead's desired-count rule

    def _reap(self) -> None:
        """Reap PostgreSQL processes re-parented to us once they exit (we are their subreaper).

        Patroni starts each postmaster detached, so it is re-parented to us; a killed
        Patroni leaves its postmaster behind too. Unreaped, an exited postmaster stays a
        zombie, and Patroni, which waits for it to vanish before pg_rewind, waits forever
        (seen: a rewind "in progress" for minutes after a zone came back). Only zombies
        named postgres are reaped: a blanket waitpid(-1) would steal the exit codes of
        subprocess.run() calls made by other threads, and we never start postgres ourselves.
        """
        for pid in _zombie_children(os.getpid(), "postgres"):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    # -- health and failover detection ------------------------------------------------------
    def _refresh_health(self) -> None:
        """Each component's health, from what the services report: running is not enough, it must have rejoined."""
        health: dict[str, bool] = {}
        roles: dict[str, str] = {}
        patroni: dict[str, dict[str, Any] | None] = {}
        infos: dict[str, dict[str, Any] | None] = {}
        sentinels: dict[str, str | None] = {}
        for name, ex in list(self.services.items()):
            ok = ex.alive() and name not in self.paused
            kind = name.split("-")[0]
            if kind == "postgres":
                data = (http_json(f"{self.layout.patroni_api(int(name[-1]))}/patroni", 0.4) if ok else None) or {}
                patroni[name] = data or None
                ok = data.get("state") == "running"
                roles[name] = {"master": "primary"}.get(data.get("role", ""), data.get("role", "unknown"))
            elif kind in ("redis", "sentinel"):
                answer: Any = None
                if ok:
                    try:
                        client = _redis(self._placement(name).address, self.layout.secrets.redis)
                        answer = client.info("replication") if kind == "redis" else \
                            _address(client.execute_command("SENTINEL", "get-master-addr-by-name", REDIS_MASTER_NAME))
                    except Exception:
                        answer = None
                ok = answer is not None
                if kind == "redis":
                    infos[name] = answer
                    roles[name] = (answer or {}).get("role", "unknown")
                else:
                    sentinels[name] = answer
                    roles[name] = "sentinel"
            elif ok and kind == "etcd":
                ok = self._etcd_ready(int(name[-1]))()
                roles[name] = "member"
            elif kind == "haproxy":
                roles[name] = "lb"
            health[name] = ok
        problems = {n: "not running or not answering" for n, ok in health.items() if not ok}
        problems.update(postgres_problems(patroni, self.s.synchronous_replication, self._sync_standbys(patroni)))
        problems.update(redis_problems(infos, {n: self._placement(n).address for n in infos}, sentinels))
        problems.update({n: "frozen by a fault" for n in self.paused if n in health})
        states = {}
        if self.admin:
            try:
                states = self.admin.server_states()
            except Exception:
                states = {}
        for slot, r in list(self.replicas.items()):
            st = states.get(slot)
            name = self.layout.api(slot, r.zone).name
            health[name] = bool(st and st.up and _serving(r))
            if not health[name]:
                problems[name] = "lost with its zone" if r.lost else "not ready in the load balancer"
        self.health = {n: ok and n not in problems for n, ok in health.items()}
        self.roles, self.problems = roles, problems
        leader = self._find_pg_leader()
        if leader and leader != self.pg_leader:
            if self.pg_leader is not None:
                self.event("platform", "failover", component="postgres", old=self.pg_leader, new=leader)
            self.pg_leader = leader
        master = self._find_redis_master()
        if master and master != self.redis_master:
            if self.redis_master is not None:
                self.event("platform", "failover", component="redis", old=self.redis_master, new=master)
            self.redis_master = master

    def _whole(self) -> bool:
        self._refresh_health()
        return not self.problems

    def _sync_standbys(self, patroni: dict[str, dict[str, Any] | None]) -> set[str]:
        """Members Patroni's /sync key names as synchronous standby (read from the primary's /cluster)."""
        leader = next((n for n, d in patroni.items() if d and d.get("role") in ("master", "primary")), None)
        if leader is None:
            return set()
        data = http_json(f"{self.layout.patroni_api(int(leader[-1]))}/cluster", 0.4) or {}
        return {str(m.get("name")) for m in data.get("members", []) if m.get("role") == "sync_standby"}

    # -- healing -------------------------------------------------------------------------------
    def wait_healed(self, names: list[str], started: float) -> dict[str, Any]:
        """Wait until every restored component has rejoined (and the API replicas are back); record the heal.

        A PostgreSQL member still not streaming `reinit_after_s` after its restart is
        re-cloned from the primary (Patroni's reinitialize). A heal that does not
        complete within `heal_timeout_s` is an event with each component's log
        excerpt, and an error for the rollback that asked for it: never a silent
        degraded stack.
        """
        progress = HealProgress(list(names) + [API_REPLICAS], started)
        deadline = started + self.s.heal_timeout_s
        while True:
            self._refresh_health()
            ready = self._count_ready()
            problems = {n: self.problems.get(n, "unhealthy") for n in names if not self.health.get(n)}
            if ready < self.desired:
                problems[API_REPLICAS] = f"{ready} of {self.desired} API replicas ready"
            now = time.monotonic()
            progress.observe(now, problems)
            if progress.done or now >= deadline:
                break
            for name in problems:
                if name.startswith("postgres-") and name != self.pg_leader and \
                        progress.may_reinitialize(name, now, self.s.reinit_after_s):
                    self._reinitialize(name, problems[name], progress)
            self.stop_event.wait(0.25)
        actions = {n: heal_action(self._log_since_restart(n), n in progress.reinitialized) if n.startswith("postgres-")
                   else "rejoin" for n in names}
        if not progress.done:
            pending = progress.pending()
            excerpts = {n: self._log_excerpt(n) for n in pending if n in self.services}
            self.event("platform", "heal_failed", components=pending, seconds=round(time.monotonic() - started, 3),
                       actions=actions, logs=excerpts)
            lines = "; ".join(f"{n}: {why}" for n, why in pending.items())
            logs = "\n".join(f"--- {n} ({self.services[n].spec.log_path}) ends with:\n{text}" for n, text in excerpts.items())
            raise HarnessError(f"the stack did not heal within {self.s.heal_timeout_s:.0f} s ({lines}). "
                               f"Inspect it with `resilience status`; `resilience down` and `up` rebuild it.\n{logs}")
        detail = {n: {"seconds": progress.seconds(n), "action": actions.get(n, "rejoin")} for n in progress.components}
        self.event("platform", "heal", components=detail, seconds=round(max(progress.healed_at.values()) - started, 3))
        return {"healed": detail}

    def _reinitialize(self, name: str, problem: str, progress: HealProgress) -> None:
        status, body = http_post(f"{self.layout.patroni_api(int(name[-1]))}/reinitialize", {"force": True}, 5.0,
                                 auth=(PATRONI_API_USER, self.layout.secrets.patroni_api))
        if status == 200:
            progress.reinitialized.add(name)
            self.event("platform", "reinitialize", component=name, reason=problem)

    def _log_since_restart(self, name: str) -> str:
        ex = self.services.get(name)
        if ex is None:
            return ""
        try:
            with ex.spec.log_path.open("rb") as f:
                f.seek(self.restart_marks.get(name, 0))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_excerpt(self, name: str, lines: int = 12) -> str:
        return "\n".join(line[:300] for line in self._log_since_restart(name).splitlines()[-lines:])

    def _find_pg_leader(self) -> str | None:
        for i in (1, 2):
            if f"postgres-{i}" in self.paused:
                continue
            data = http_json(f"{self.layout.patroni_api(i)}/cluster", 0.4)
            if data:
                for m in data.get("members", []):
                    if m.get("role") in ("leader", "master", "primary") and m.get("state") == "running":
                        return str(m.get("name"))
                return None
        return None

    def _find_redis_master(self) -> str | None:
        """The master a majority of the reachable Sentinels name.

        Not the first answer: a Sentinel restarted with its zone still holds the master it
        knew before the outage for a moment, and trusting it recorded a failover and a
        failback that never happened.
        """
        answers: dict[str, str | None] = {}
        for i in (1, 2, 3):
            if f"sentinel-{i}" in self.paused or not self.services.get(f"sentinel-{i}", None):
                continue
            try:
                answers[f"sentinel-{i}"] = _address(_redis(self.layout.sentinel(i).address, self.layout.secrets.redis)
                                                    .execute_command("SENTINEL", "get-master-addr-by-name",
                                                                     REDIS_MASTER_NAME))
            except Exception:
                continue
        address = agreed_master(answers)
        return next((f"redis-{k}" for k in (1, 2) if address and self.layout.redis(k).address == address), None)

    # -- faults -----------------------------------------------------------------------------
    def kill_replicas(self, count: int | None, percent: float | None, seed: int | None) -> dict[str, Any]:
        with self.lock:
            live = [r for r in self.replicas.values() if not r.lost and not r.stopping and r.executor.alive()]
            n = count if count is not None else max(1, round(len(live) * (percent or 0) / 100.0))
            n = max(0, min(n, len(live)))
            chosen = random.Random(seed).sample(live, n)
            names = [self.layout.api(r.slot, r.zone).name for r in chosen]
            for r in chosen:
                r.executor.signal(signal.SIGKILL)
            self.event("fault", "kill_replicas", replicas=names)
        return {"killed": names}

    def pause_replicas(self, pause: bool) -> dict[str, Any]:
        """SIGSTOP / SIGCONT every API replica (an outage of exactly known length)."""
        sig = signal.SIGSTOP if pause else signal.SIGCONT
        with self.lock:
            names = []
            for r in self.replicas.values():
                r.executor.signal(sig)
                names.append(self.layout.api(r.slot, r.zone).name)
        self.event("fault", "pause_replicas" if pause else "resume_replicas", replicas=names)
        return {"replicas": names}

    def _zone_services(self, zone: str) -> list[str]:
        return [n for n in self.services if (p := self._placement(n)) is not None and p.zone == zone]

    def _signal_service(self, name: str, sig: int) -> None:
        """Signal a component; for PostgreSQL, the postmaster and every backend by PID.

        Each PostgreSQL child calls setsid(), so the postmaster's process group does not
        reach the backends and WAL senders: a "dead" node would keep streaming otherwise.
        """
        ex = self.services[name]
        ex.signal(sig)
        if name.startswith("postgres-"):
            pid = _postmaster_pid(self.root / name / "data")
            if pid and _pid_alive(pid):
                children = _children(pid)
                for target in [pid, *children]:
                    try:
                        os.kill(target, sig)
                    except ProcessLookupError:
                        pass

    def lose_zone(self, zone: str | None) -> dict[str, Any]:
        zone = zone or self.primary_zone()
        if zone not in self.s.zones:
            raise UserError(f"unknown zone {zone!r}; zones are {list(self.s.zones)}")
        with self.lock:
            names = self._zone_services(zone)
            for name in names:
                self._signal_service(name, signal.SIGSTOP)
                self.paused.add(name)
            replicas = [r for r in self.replicas.values() if r.zone == zone and not r.lost]
            for r in replicas:
                r.executor.signal(signal.SIGSTOP)
                r.lost = True
            if self.zone_mode == "netns":
                self.zones.cut(zone)
            self.lost_zones.add(zone)
        self.event("fault", "lose_zone", zone=zone, services=names,
                   replicas=[self.layout.api(r.slot, r.zone).name for r in replicas], network_cut=self.zone_mode == "netns")
        return {"zone": zone, "services": names}

    def restore_zone(self, zone: str) -> dict[str, Any]:
        """The zone comes back: its old processes are gone (like a power loss); its services restart and rejoin."""
        with self.lock:
            if zone not in self.lost_zones:
                return {"zone": zone, "restored": False}
            names = self._zone_services(zone)
            for name in names:
                self._signal_service(name, signal.SIGKILL)
                self._signal_service(name, signal.SIGCONT)
            for r in [r for r in self.replicas.values() if r.zone == zone and r.lost]:
                r.executor.signal(signal.SIGKILL)
                r.executor.signal(signal.SIGCONT)
                self._stop_replica(r, graceful=False)
            for name in names:
                self.services[name].kill()
                self.paused.discard(name)
            if self.zone_mode == "netns":
                self.zones.restore(zone)
            self.lost_zones.discard(zone)
        for name in sorted(names, key=_restart_order):
            self._restart_service(name)
        self.event("fault", "restore_zone", zone=zone, services=names)
        return {"zone": zone, "restored": True, "services": names}

    def _restart_service(self, name: str) -> None:
        kind, _, idx = name.partition("-")
        i = int(idx)
        if kind == "etcd":
            spec, ready = self.layout.etcd_spec(i), self._etcd_ready(i)
        elif kind == "postgres":
            # usually it rejoins as a replica; if the fault was shorter than Patroni's ttl it may still lead
            spec, ready = self.layout.patroni_spec(i), self._patroni_role_ready(i, "any")
        elif kind == "redis":
            master = self._current_redis_master_address()
            own = self.layout.redis(i).address
            spec, ready = self.layout.redis_spec(i, master if master and master != own else None), self._redis_ready(name)
        elif kind == "sentinel":
            spec, ready = self.layout.sentinel_spec(i, self.layout.redis(1).address), self._redis_ready(name)
        else:
            raise HarnessError(f"cannot restart {name}")
        try:
            self.restart_marks[name] = spec.log_path.stat().st_size
        except OSError:
            self.restart_marks[name] = 0
        self._start_service(name, spec, ready)
        self.stopped_services.discard(name)
        self.event("platform", "restart", component=name)

    def _current_redis_master_address(self) -> str | None:
        master = self._find_redis_master()
        return self.layout.redis(int(master[-1])).address if master else None

    def primary_zone(self) -> str:
        leader = self._find_pg_leader() or self.pg_leader or "postgres-1"
        place = self._placement(leader)
        return place.zone if place else self.s.zones[0]

    def kill_db_primary(self, mode: str) -> dict[str, Any]:
        leader = self._find_pg_leader()
        if not leader:
            raise HarnessError("no PostgreSQL primary found (Patroni /cluster shows no running leader)")
        if mode == "kill":
            self._signal_service(leader, signal.SIGKILL)
            self.stopped_services.add(leader)
        elif mode == "freeze":
            self._signal_service(leader, signal.SIGSTOP)
            self.paused.add(leader)
        else:
            raise UserError(f"unknown database fault mode {mode!r}: use kill or freeze")
        self.event("fault", "fail_over_database", member=leader, mode=mode)
        return {"member": leader, "mode": mode}

    def restore_db(self, member: str) -> dict[str, Any]:
        if member in self.paused:
            # a frozen (partitioned) primary: it lost its leader lock; kill it and let it rejoin
            self._signal_service(member, signal.SIGKILL)
            self._signal_service(member, signal.SIGCONT)
            self.paused.discard(member)
        ex = self.services.get(member)
        if ex is not None:
            self._signal_service(member, signal.SIGKILL)
            ex.kill()
        pid = _postmaster_pid(self.root / member / "data")
        if pid:
            wait_for(lambda: not _pid_alive(pid), 10, f"the old postmaster of {member} to exit")
        self._restart_service(member)
        self.event("fault", "restore_db", member=member)
        return {"member": member}

    def stop_cache(self, mode: str) -> dict[str, Any]:
        if mode == "failover":
            master = self._find_redis_master()
            if not master:
                raise HarnessError("no Redis master known to Sentinel")
            targets = [master]
        elif mode == "outage":
            targets = ["redis-1", "redis-2"]
        else:
            raise UserError(f"unknown cache fault mode {mode!r}: use failover or outage")
        for name in targets:
            self._signal_service(name, signal.SIGKILL)
            self.services[name].kill()
            self.stopped_services.add(name)
        self.event("fault", "stop_cache", mode=mode, members=targets)
        return {"members": targets, "mode": mode}

    def restore_cache(self, members: list[str]) -> dict[str, Any]:
        for name in members:
            if name in self.stopped_services or not self.services[name].alive():
                self._restart_service(name)
        self.event("fault", "restore_cache", members=members)
        return {"members": members}

    def pause_replication(self, pause: bool) -> dict[str, Any]:
        """Hold the primary's WAL senders (SIGSTOP): WAL committed meanwhile stays on the primary alone.

        Stopping the sender, not the replica's receiver: a stopped receiver still gets
        the WAL into its socket buffer, and would apply it after resuming.
        """
        if not pause:
            for pid in self.held_walsenders:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            released, self.held_walsenders = self.held_walsenders, []
            self.event("fault", "resume_replication", pids=released)
            return {"pids": released}
        leader = self._find_pg_leader()
        postmaster = _postmaster_pid(self.root / str(leader) / "data") if leader else None
        senders = [c for c in _children(postmaster) if "walsender" in _cmdline(c)] if postmaster else []
        if not senders:
            raise HarnessError(f"no WAL sender under the primary {leader}'s postmaster: is the replica streaming?")
        for c in senders:
            os.kill(c, signal.SIGSTOP)
        self.held_walsenders += senders
        self.event("fault", "pause_replication", member=leader, pids=senders)
        return {"member": leader, "pids": senders}

    def heal(self) -> dict[str, Any]:
        """Undo every fault this supervisor knows of (a crashed run's rollback of last resort)."""
        restored = []
        for zone in sorted(self.lost_zones):
            self.restore_zone(zone)
            restored.append(zone)
        self.pause_replicas(False)
        for name in sorted(self.paused):
            if name.startswith("postgres-"):
                self.restore_db(name)
            else:
                self._signal_service(name, signal.SIGCONT)
                self.paused.discard(name)
        for name in sorted(self.stopped_services, key=_restart_order):
            if name.startswith("postgres-"):
                self.restore_db(name)
            elif not self.services[name].alive():
                self._restart_service(name)
        self.stopped_services.clear()
        try:
            self.pause_replication(False)
        except HarnessError:
            pass
        self.event("fault", "heal", zones=restored)
        return {"zones": restored}

    # -- control socket ----------------------------------------------------------------------
    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            self._refresh_health()
            return {"ok": True, "components": self.components(), "zone_mode": self.zone_mode,
                    "url": self.layout.url, "desired_replicas": self.desired,
                    "ready_replicas": self._count_ready(), "lost_zones": sorted(self.lost_zones),
                    "primary_zone": self.primary_zone(), "pg_leader": self.pg_leader,
                    "redis_master": self.redis_master, "problems": dict(self.problems)}
        if op == "ready_replicas":
            return {"ok": True, "ready": self._count_ready(), "desired": self.desired}
        if op == "kill_replicas":
            return {"ok": True, **self.kill_replicas(request.get("count"), request.get("percent"), request.get("seed"))}
        if op == "pause_replicas":
            return {"ok": True, **self.pause_replicas(bool(request.get("pause", True)))}
        if op == "lose_zone":
            return {"ok": True, **self.lose_zone(request.get("zone"))}
        if op == "restore_zone":
            t0 = time.monotonic()
            result = self.restore_zone(request["zone"])
            return {"ok": True, **result, **self.wait_healed(result.get("services", []), t0)}
        if op == "kill_db_primary":
            return {"ok": True, **self.kill_db_primary(request.get("mode", "kill"))}
        if op == "restore_db":
            t0 = time.monotonic()
            result = self.restore_db(request["member"])
            return {"ok": True, **result, **self.wait_healed([request["member"]], t0)}
        if op == "stop_cache":
            return {"ok": True, **self.stop_cache(request.get("mode", "failover"))}
        if op == "restore_cache":
            t0 = time.monotonic()
            result = self.restore_cache(list(request.get("members", [])))
            return {"ok": True, **result, **self.wait_healed(list(result["members"]), t0)}
        if op == "pause_replication":
            return {"ok": True, **self.pause_replication(bool(request.get("pause", True)))}
        if op == "heal":
            t0 = time.monotonic()
            result = self.heal()
            return {"ok": True, **result, **self.wait_healed(sorted(self.services), t0)}
        if op == "shutdown":
            self.stop_event.set()
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def serve(self) -> socketserver.UnixStreamServer:
        supervisor = self
        path = self.root / SOCKET_FILE
        if path.exists():
            path.unlink()

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    request = json.loads(self.rfile.readline())
                    response = supervisor.handle(request)
                except (UserError, HarnessError) as exc:
                    response = {"ok": False, "error": str(exc), "user_error": isinstance(exc, UserError)}
                except Exception as exc:  # report, keep serving
                    response = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                                "trace": traceback.format_exc()}
                self.wfile.write((json.dumps(response) + "\n").encode())

        server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        server.daemon_threads = True
        os.chmod(path, 0o600)
        threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
        return server

    # -- shutdown ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop everything, in waves of parallel stops: traffic first, then data, then coordination."""
        self.event("platform", "stopping")
        for name in self.paused:
            self._signal_service(name, signal.SIGCONT)
        replicas = [r.executor for r in self.replicas.values()]
        for ex in replicas:
            ex.signal(signal.SIGCONT)
        waves = [replicas + [self.services[n] for n in ("haproxy",) if n in self.services],
                 [self.services[n] for n in ("postgres-1", "postgres-2", "redis-1", "redis-2") if n in self.services],
                 [ex for n, ex in self.services.items() if n.startswith(("sentinel-", "etcd-"))]]
        postmasters = [pid for i in (1, 2) if (pid := _postmaster_pid(self.root / f"postgres-{i}" / "data"))]
        # the API drains gracefully; data services get a short grace only: `down` deletes their data anyway
        # (etcd and a synchronous primary otherwise wait seconds for peers that are stopping too)
        for wave, grace in zip(waves, (3.0, 0.5, 0.5)):
            _stop_together(wave, timeout=grace)
        for pid in postmasters:  # Patroni stops PostgreSQL; make sure of it (backends are their own groups)
            for target in ([pid, *_children(pid)] if _pid_alive(pid) else []):
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._reap()
        for r in self.replicas.values():
            if r.cpu is not None:
                r.cpu.destroy()
        self.replicas.clear()
        if self.cgroups_ok:
            cgroups.cleanup(parent=PREFIX + "api")
        if self.zone_mode == "netns":
            self.zones.destroy()


def _serving(replica: Replica) -> bool:
    """A replica counts as ready only while its process lives and we put it in the load balancer.

    HAProxy keeps a killed server UP until its health checks fail (about a second),
    and a replacement reuses the slot: its state alone would count a dead replica.
    """
    return replica.enabled and not replica.lost and replica.executor.alive()


def _stop_together(executors: list[Executor], timeout: float) -> None:
    """SIGTERM every process group at once, wait for all (bounded), then SIGKILL what is left."""
    for ex in executors:
        ex.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(ex.alive() for ex in executors):
        time.sleep(0.05)
    for ex in executors:
        ex.signal(signal.SIGKILL)
    for ex in executors:
        ex.stop(timeout=1.0)  # reaps


def _address(answer: Any) -> str | None:
    """host:port from Sentinel's get-master-addr-by-name answer."""
    if not answer:
        return None
    host, port = (a.decode() if isinstance(a, bytes) else a for a in answer)
    return f"{host}:{port}"


def _restart_order(name: str) -> int:
    return ["etcd", "redis", "sentinel", "postgres"].index(name.split("-")[0])


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _zombie_children(parent: int, comm: str) -> list[int]:
    """PIDs of exited, unreaped children of `parent` whose program name is `comm`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                head, _, rest = f.read().rpartition(")")
        except OSError:
            continue
        fields = rest.split()
        if len(fields) > 1 and fields[0] == "Z" and int(fields[1]) == parent and head.partition("(")[2] == comm:
            found.append(int(entry.name))
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _become_subreaper() -> None:
    """Orphans (a killed Patroni's postmaster) are re-parented to us, so we reap them (PID 1 here is slow)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except OSError:
        pass


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
        server = supervisor.serve()
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
        supervisor.control_loop()
    finally:
        supervisor.shutdown()
        server.shutdown()
        (root / SOCKET_FILE).unlink(missing_ok=True)
        (root / STATE_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
