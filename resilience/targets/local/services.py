"""The local stack's components: where each runs, its config files and its command (readiness: probes.py).

Placement (`topology.MEMBERS`; zones in config order a, b, c):
- etcd member i and Redis Sentinel i in zone i (three of each, quorum 2);
- PostgreSQL member 1 (Patroni) and Redis 1 in zone a; member 2 and Redis 2 in zone b;
- API replicas spread over the zones; HAProxy in the root namespace on 127.0.0.1.
Every component has its own port (see `config.Ports`), so the same layout works
with zones as namespaces (each zone has its own address) and as process groups
(everything on 127.0.0.1).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from ...config import StackSettings
from ...errors import HarnessError, UserError
from . import backup_config, haproxy
from .backups import write_member_files
from .executor import ProcessSpec
from .secrets import PATRONI_API_USER, StackSecrets, load_or_create, write_private
from .topology import API, ETCD, HAPROXY, NETPROXY, POSTGRES, REDIS, SENTINEL, ComponentId, Topology

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_MASTER_NAME = "rsl-cache"
PATRONI_SCOPE = "rsl-meals"
DB_NAME = "meals"
DB_USER = "app"
NETPROXY_PORT_OFFSET = 100  # the proxy's route to PostgreSQL member i listens on postgres_base + 100 + i
CACHE_PATH = "api-cache"  # the proxy's routes to Redis server i listen on redis_base + 100 + i (netproxy.py)

ETCD_ELECTION_TIMEOUT_MS = 1000  # etcd's own default; the failover phases' detect bound uses it after a zone loss

# Patroni 3.0.4 from PyPI on Debian's Python and libraries, not Debian 12's 3.0.2 (deploy/patroni.lock: why)
PATRONI_BIN = "/opt/resilience/patroni/bin/patroni"

# binary → (Debian package that provides it)
REQUIRED_BINARIES: dict[str, str] = {
    str(PG_BIN / "postgres"): "postgresql-15",
    "patroni": "patroni",  # its libraries (python3-etcd, psycopg2, ...); PATRONI_BIN is checked on its own
    "etcd": "etcd-server",
    "redis-server": "redis-server",
    "redis-sentinel": "redis-sentinel",
    "haproxy": "haproxy",
    "ip": "iproute2",
    "setpriv": "util-linux",
}


def check_binaries() -> None:
    """Fail early, naming the package and the install command, when a binary is missing."""
    missing = [(b, pkg) for b, pkg in REQUIRED_BINARIES.items()
               if not (Path(b).is_file() if b.startswith("/") else shutil.which(b))]
    if missing:
        names = ", ".join(f"{b} (Debian package {pkg})" for b, pkg in missing)
        pkgs = " ".join(sorted({pkg for _, pkg in missing}))
        raise UserError(f"the local stack needs programs that are not installed: {names}. "
                        f"Install them with `sudo bash scripts/bootstrap.sh` (or `apt-get install -y {pkgs}`), then retry.")
    if not Path(PATRONI_BIN).is_file():
        raise UserError(f"the local stack runs Patroni from {PATRONI_BIN} (the version in deploy/patroni.lock), which "
                        f"is not installed. Install it with `sudo bash scripts/bootstrap.sh`, then retry.")
    try:
        import pwd
        pwd.getpwnam("postgres")
    except KeyError:
        raise UserError("the local stack runs PostgreSQL as the user 'postgres', which does not exist. "
                        "Install postgresql-15 with `sudo bash scripts/bootstrap.sh`, which creates it.") from None


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Placement:
    """Where a component lives: its identity, host and port."""

    component: ComponentId
    host: str
    port: int

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def zone(self) -> str | None:
        return self.component.zone

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class StackLayout:
    """Names, addresses, ports, directories and commands of every component."""

    def __init__(self, settings: StackSettings, zone_host: Callable[[str], str],
                 zone_netns: Callable[[str], str | None], host: str = "127.0.0.1") -> None:
        self.s = settings
        self.host = host  # the root namespace's address the zones reach (the bridge's, or 127.0.0.1)
        self.zone_host = zone_host
        self.zone_netns = zone_netns
        self.root = settings.state_path
        self.topology = Topology(settings.zones)
        self._secrets: StackSecrets | None = None
        ports = settings.ports
        self._port_base = {ETCD: ports.etcd_client_base, POSTGRES: ports.postgres_base, REDIS: ports.redis_base,
                           SENTINEL: ports.sentinel_base, API: ports.api_base}

    @property
    def secrets(self) -> StackSecrets:
        """Read (or create) on first use: `up` makes the state directory before anything starts."""
        if self._secrets is None:
            self._secrets = load_or_create(self.dir("."))
        return self._secrets

    # -- placement ---------------------------------------------------------------
    def place(self, c: ComponentId) -> Placement:
        if c.kind == HAPROXY:
            return Placement(c, "127.0.0.1", self.s.ports.lb)
        if c.kind == NETPROXY:  # its first route (one per PostgreSQL member: netproxy_routes)
            return Placement(c, self.host, self.s.ports.postgres_base + NETPROXY_PORT_OFFSET + 1)
        return Placement(c, self.zone_host(c.zone or ""), self._port_base[c.kind] + c.index)

    def netproxy_routes(self) -> list[tuple[Placement, Placement]]:
        """(where the proxy listens, the PostgreSQL member it forwards to), one per member: the API <-> database path."""
        proxy = ComponentId(NETPROXY, 0, None)
        return [(Placement(proxy, self.host, self.s.ports.postgres_base + NETPROXY_PORT_OFFSET + c.index), self.place(c))
                for c in self.topology.members(POSTGRES)]

    def netproxy_cache_routes(self) -> list[tuple[Placement, Placement]]:
        """(where the proxy listens, the Redis server it forwards to), one per server: the API <-> cache path (the
        API dials these for the addresses Sentinel names: `redis_address_map`)."""
        proxy = ComponentId(NETPROXY, 0, None)
        return [(Placement(proxy, self.host, self.s.ports.redis_base + NETPROXY_PORT_OFFSET + c.index), self.place(c))
                for c in self.topology.members(REDIS)]

    def redis_address_map(self) -> str:
        return ",".join(f"{member.address}={listen.address}" for listen, member in self.netproxy_cache_routes())

    def netproxy_control(self) -> Path:
        return self.dir("netproxy") / "control.sock"

    def api(self, slot: int, zone: str) -> Placement:
        return self.place(self.topology.api(slot, zone))

    def etcd_peer_url(self, c: ComponentId) -> str:
        return f"http://{self.zone_host(c.zone or '')}:{self.s.ports.etcd_peer_base + c.index}"

    def patroni_api(self, c: ComponentId) -> str:
        return f"http://{self.zone_host(c.zone or '')}:{self.s.ports.patroni_base + c.index}"

    def first_redis_address(self) -> str:
        """The master the cache starts with (and the one each Sentinel's first config names)."""
        return self.place(self.topology.members(REDIS)[0]).address

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.s.ports.lb}"

    def pg_dsn(self) -> str:
        hosts = ",".join(listen.address for listen, _ in self.netproxy_routes())  # through the proxy (netproxy.py)
        return f"postgresql://{DB_USER}:{self.secrets.postgres_app}@{hosts}/{DB_NAME}?target_session_attrs=read-write"

    def sentinel_addresses(self) -> str:
        return ",".join(self.place(c).address for c in self.topology.members(SENTINEL))

    def dir(self, name: str) -> Path:
        """A directory in the state directory; only its owner may enter it (configs, sockets, data)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        if path != self.root:
            os.chmod(path, 0o700)
        return path

    def log(self, name: str) -> Path:
        return self.dir("logs") / f"{name}.log"

    # -- specs --------------------------------------------------------------------
    def spec(self, c: ComponentId, redis_master: str | None = None) -> ProcessSpec:
        """How to start a service; a Redis server follows `redis_master` (host:port) unless it is that master."""
        if c.kind == ETCD:
            return self.etcd_spec(c)
        if c.kind == POSTGRES:
            return self.patroni_spec(c)
        if c.kind == REDIS:
            return self.redis_spec(c, redis_master if redis_master != self.place(c).address else None)
        if c.kind == SENTINEL:
            return self.sentinel_spec(c, self.first_redis_address())
        if c.kind == HAPROXY:
            return self.haproxy_spec()
        if c.kind == NETPROXY:
            return self.netproxy_spec()
        raise HarnessError(f"{c.name} is not a service the supervisor starts")

    def etcd_spec(self, c: ComponentId) -> ProcessSpec:
        p = self.place(c)
        cluster = ",".join(f"{m.name}={self.etcd_peer_url(m)}" for m in self.topology.members(ETCD))
        data = self.dir(c.name)
        argv = ["etcd", "--name", p.name, "--data-dir", str(data / "data"),
                "--listen-client-urls", f"http://{p.address}", "--advertise-client-urls", f"http://{p.address}",
                "--listen-peer-urls", self.etcd_peer_url(c), "--initial-advertise-peer-urls", self.etcd_peer_url(c),
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "rsl-etcd", "--heartbeat-interval", "100",
                "--election-timeout", str(ETCD_ELECTION_TIMEOUT_MS), "--log-level", "warn", "--logger", "zap"]
        return ProcessSpec(p.name, argv, self.log(p.name), netns=self.zone_netns(p.zone or ""))

    def patroni_config(self, c: ComponentId) -> dict[str, Any]:
        p = self.place(c)
        home = self.root / c.name
        api = self.patroni_api(c).removeprefix("http://")
        s = self.s
        config: dict[str, Any] = {
            "scope": PATRONI_SCOPE,
            "name": p.name,
            # INFO: the log then says what a rejoining member had to do (pg_rewind, removing its data)
            "log": {"level": "INFO"},
            # reads (GET /patroni, /cluster) stay open; anything that changes state needs the password
            "restapi": {"listen": api, "connect_address": api,
                        "authentication": {"username": PATRONI_API_USER, "password": self.secrets.patroni_api}},
            "etcd3": {"hosts": [self.place(m).address for m in self.topology.members(ETCD)], "protocol": "http"},
            "bootstrap": {
                "dcs": {
                    "ttl": s.patroni_ttl_s, "loop_wait": s.patroni_loop_wait_s,
                    "retry_timeout": s.patroni_retry_timeout_s,
                    "maximum_lag_on_failover": 1048576,
                    "synchronous_mode": s.synchronous_replication,
                    "postgresql": {
                        "use_pg_rewind": True, "use_slots": True,
                        "parameters": {
                            "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
                            "max_wal_senders": 10, "max_replication_slots": 10, "wal_keep_size": "128MB",
                            "max_connections": 200, "shared_buffers": "64MB",
                            "synchronous_commit": "on",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
                "pg_hba": [
                    "local all all scram-sha-256",
                    "host replication replicator 0.0.0.0/0 scram-sha-256",
                    "host all all 0.0.0.0/0 scram-sha-256",
                ],
                "post_bootstrap": str(home / "post_bootstrap.sh"),
            },
            "postgresql": {
                "listen": p.address,
                "connect_address": p.address,
                "data_dir": str(home / "data"),
                "bin_dir": str(PG_BIN),
                "pgpass": str(home / "pgpass"),
                "authentication": {
                    "replication": {"username": "replicator", "password": self.secrets.postgres_replication},
                    "superuser": {"username": "postgres", "password": self.secrets.postgres_superuser},
                    "rewind": {"username": "postgres", "password": self.secrets.postgres_superuser},
                },
                "parameters": {"unix_socket_directories": str(home), "unix_socket_permissions": "0700",
                               "password_encryption": "scram-sha-256"},
                # a spread checkpoint would make the clone wait minutes
                "basebackup": [{"checkpoint": "fast"}],
                # a former primary whose timeline forked off is rewound; if that is impossible or
                # fails, it is cloned again from the new primary instead of waiting for WAL forever
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }
        if s.backup.enabled:  # continuous archiving to both repositories; replicas fetch missed WAL from them
            conf = backup_config.conf_path(home)
            config["postgresql"]["parameters"].update(backup_config.archive_parameters(conf, s))
            config["postgresql"]["recovery_conf"] = {"restore_command": backup_config.restore_command(conf)}
        return config

    def patroni_spec(self, c: ComponentId) -> ProcessSpec:
        p = self.place(c)
        home = self.dir(c.name)
        config = home / "patroni.yml"
        write_private(config, yaml.safe_dump(self.patroni_config(c), sort_keys=False))
        hook = home / "post_bootstrap.sh"
        write_private(hook, "#!/bin/sh\nset -e\n"
                      f"psql -v ON_ERROR_STOP=1 \"$1\" -c \"CREATE ROLE {DB_USER} LOGIN PASSWORD "
                      f"'{self.secrets.postgres_app}'\" -c \"CREATE DATABASE {DB_NAME} OWNER {DB_USER}\"\n")
        hook.chmod(0o700)
        if self.s.backup.enabled:
            write_member_files(self.s, home, p.port, self.secrets.postgres_superuser)
        _chown_tree(home, "postgres")
        env = {"PATH": f"{PG_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(home)}
        return ProcessSpec(p.name, [PATRONI_BIN, str(config)], self.log(p.name), env=env, cwd=home,
                           user="postgres", netns=self.zone_netns(p.zone or ""))

    def redis_spec(self, c: ComponentId, replicaof: str | None) -> ProcessSpec:
        p = self.place(c)
        data = self.dir(c.name)
        secret = data / "auth.conf"  # passwords in a 0600 file: argv is visible to every user in `ps`
        write_private(secret, f"requirepass {self.secrets.redis}\nmasterauth {self.secrets.redis}\n")
        argv = ["redis-server", str(secret), "--bind", p.host, "--port", str(p.port), "--dir", str(data),
                "--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
                "--replica-announce-ip", p.host, "--loglevel", "warning"]
        if replicaof:
            host, port = replicaof.rsplit(":", 1)
            argv += ["--replicaof", host, port]
        return ProcessSpec(p.name, argv, self.log(p.name), netns=self.zone_netns(p.zone or ""))

    def sentinel_spec(self, c: ComponentId, master: str) -> ProcessSpec:
        p = self.place(c)
        data = self.dir(c.name)
        conf = data / "sentinel.conf"
        host, port = master.rsplit(":", 1)
        if not conf.exists():  # Sentinel rewrites its own config: keep what it learnt across restarts
            write_private(conf, "\n".join([
                f"bind {p.host}", f"port {p.port}", f"dir {data}", "protected-mode no", "daemonize no",
                f"sentinel announce-ip {p.host}",
                f"sentinel monitor {REDIS_MASTER_NAME} {host} {port} 2",
                f"sentinel down-after-milliseconds {REDIS_MASTER_NAME} {self.s.redis_down_after_ms}",
                f"sentinel failover-timeout {REDIS_MASTER_NAME} {self.s.redis_failover_timeout_ms}",
                f"sentinel parallel-syncs {REDIS_MASTER_NAME} 1",
                f"sentinel auth-pass {REDIS_MASTER_NAME} {self.secrets.redis}",
                f"sentinel sentinel-pass {self.secrets.redis}", f"requirepass {self.secrets.redis}",
                "loglevel warning", ""]))
        return ProcessSpec(p.name, ["redis-sentinel", str(conf)], self.log(p.name), netns=self.zone_netns(p.zone or ""))

    def haproxy_spec(self) -> ProcessSpec:
        home = self.dir("haproxy")
        cfg = home / "haproxy.cfg"
        cfg.write_text(haproxy.render_config(bind="127.0.0.1", port=self.s.ports.lb, stats_port=self.s.ports.lb_stats,
                                             socket_path=str(self.haproxy_socket()),
                                             slots=self.s.autoscaling.max_replicas))
        return ProcessSpec("haproxy", ["haproxy", "-db", "-f", str(cfg)], self.log("haproxy"))

    def netproxy_spec(self) -> ProcessSpec:
        routes = [a for listen, member in self.netproxy_routes() for a in ("--route", f"{listen.address}={member.address}")]
        routes += [a for listen, member in self.netproxy_cache_routes()
                   for a in ("--route", f"{CACHE_PATH}@{listen.address}={member.address}")]
        return ProcessSpec("netproxy", [sys.executable, "-m", "resilience.targets.local.netproxy", *routes,
                                        "--control", str(self.netproxy_control())], self.log("netproxy"))

    def haproxy_socket(self) -> Path:
        return self.dir("haproxy") / "admin.sock"

    def api_spec(self, slot: int, zone: str) -> ProcessSpec:
        p = self.api(slot, zone)
        env = {"RSL_PG_DSN": self.pg_dsn(), "RSL_REDIS_SENTINELS": self.sentinel_addresses(),
               "RSL_REDIS_MASTER": REDIS_MASTER_NAME, "RSL_REDIS_PASSWORD": self.secrets.redis,
               "RSL_REDIS_ADDRESS_MAP": self.redis_address_map(),  # through the proxy: the API <-> cache path
               "RSL_REPLICA": p.name, "RSL_ZONE": zone,
               "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "resilience.platform", "--host", p.host, "--port", str(p.port)]
        return ProcessSpec(p.name, argv, self.log(p.name), env=env, netns=self.zone_netns(zone))


def _chown_tree(path: Path, user: str) -> None:
    import pwd
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
