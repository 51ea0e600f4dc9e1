"""Prometheus, Alertmanager and the exporters of the local stack: configs, processes, health.

They live in the root namespace on 127.0.0.1 (like a monitoring system outside the zones, so
losing a zone never takes the monitoring with it) and scrape every second:
- the API replicas' /metrics (file_sd, rewritten as replicas come and go; `replica` and `zone`
  labels as the replicas report them),
- HAProxy's built-in exporter (`haproxy.cfg`'s stats listener serves /metrics),
- Patroni's /metrics on each member's REST API,
- one postgres_exporter and one redis_exporter per member.
Prometheus loads the platform's rules (deploy/monitoring/alerts.yaml) scaled down by
`alert_rules.SCALE`; Alertmanager sends every notification (firing and resolved) to the
harness's webhook (`alert_receiver.py`), which is listening only while a run goes on.
Figures from FIELD-NOTES.md: single-node Alertmanager needs an empty --cluster.listen-address;
postgres_exporter needs ~1 s per scrape while its database is down, so its scrapes get 2 s.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from ...errors import UserError
from . import alert_rules
from .executor import Executor, ProcessSpec, wait_for
from .probes import http_get
from .services import StackLayout
from .topology import POSTGRES, REDIS, Topology

HOST = "127.0.0.1"
PROMETHEUS_PORT = 9490
ALERTMANAGER_PORT = 9493
RECEIVER_PORT = 9495  # the harness's webhook (alert_receiver.py), open during a run
POSTGRES_EXPORTER_BASE = 9500  # member i: base + i
REDIS_EXPORTER_BASE = 9510
SCRAPE_S = 1.0
EVALUATION_S = 1.0
GROUP_WAIT_S = 0.0
GROUP_INTERVAL_S = 1.0

PROMETHEUS = "prometheus"
ALERTMANAGER = "alertmanager"
EXPORTER = "exporter"
# component kind -> the program its command line names (`down` signals a recorded PID only if it matches)
PROGRAMS = {PROMETHEUS: "prometheus --config", ALERTMANAGER: "prometheus-alertmanager", EXPORTER: "-exporter"}
REQUIRED_BINARIES = {"prometheus": "prometheus", "prometheus-alertmanager": "prometheus-alertmanager",
                     "prometheus-postgres-exporter": "prometheus-postgres-exporter",
                     "prometheus-redis-exporter": "prometheus-redis-exporter"}


def ports(zones: Any) -> list[tuple[str, int]]:
    """Every port the monitoring listens on (127.0.0.1; `up` refuses to start when one is taken)."""
    t = Topology(zones)
    return ([("prometheus", PROMETHEUS_PORT), ("alertmanager", ALERTMANAGER_PORT), ("webhook", RECEIVER_PORT)]
            + [(f"postgres-exporter-{c.index}", POSTGRES_EXPORTER_BASE + c.index) for c in t.members(POSTGRES)]
            + [(f"redis-exporter-{c.index}", REDIS_EXPORTER_BASE + c.index) for c in t.members(REDIS)])


def prometheus_url() -> str:
    return f"http://{HOST}:{PROMETHEUS_PORT}"


def alertmanager_url() -> str:
    return f"http://{HOST}:{ALERTMANAGER_PORT}"


def receiver_url() -> str:
    return f"http://{HOST}:{RECEIVER_PORT}/alerts"


def check_binaries() -> None:
    missing = sorted(pkg for b, pkg in REQUIRED_BINARIES.items() if not shutil.which(b))
    if missing:
        raise UserError(f"the local stack's monitoring needs {', '.join(missing)}. Install them with "
                        f"`sudo bash scripts/bootstrap.sh` (or `apt-get install -y {' '.join(missing)}`), then retry.")


def alertmanager_config() -> dict[str, Any]:
    """Every alert to the harness's webhook at once (group_wait 0), resolved ones too."""
    return {"route": {"receiver": "harness", "group_by": ["alertname"], "group_wait": alert_rules.duration(GROUP_WAIT_S),
                      "group_interval": alert_rules.duration(GROUP_INTERVAL_S), "repeat_interval": "1h"},
            "receivers": [{"name": "harness", "webhook_configs": [
                {"url": receiver_url(), "send_resolved": True, "max_alerts": 0}]}]}


class Monitoring:
    """The monitoring processes of one stack: start, readiness, rows for the status, stop."""

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout
        self.home = layout.root / "monitoring"
        self.executors: dict[str, tuple[str, str, Executor]] = {}  # name -> (kind, address, executor)
        self._api_targets: str | None = None
        self._healthy: dict[str, bool] = {}

    # -- configuration ----------------------------------------------------------------
    def exporters(self) -> list[tuple[str, str, int, Any]]:
        """(name, member, port, member component) of every exporter."""
        t = self.layout.topology
        return ([(f"postgres-exporter-{c.index}", c.name, POSTGRES_EXPORTER_BASE + c.index, c) for c in t.members(POSTGRES)]
                + [(f"redis-exporter-{c.index}", c.name, REDIS_EXPORTER_BASE + c.index, c) for c in t.members(REDIS)])

    def prometheus_config(self) -> dict[str, Any]:
        t, layout = self.layout.topology, self.layout

        def static(targets: list[tuple[str, str]]) -> list[dict[str, Any]]:
            return [{"targets": [address], "labels": {"instance": name}} for address, name in targets]

        interval = alert_rules.duration(SCRAPE_S)
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": alert_rules.duration(EVALUATION_S),
                       "scrape_timeout": "900ms"},
            "rule_files": [str(self.home / "rules.yaml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"{HOST}:{ALERTMANAGER_PORT}"]}]}]},
            "scrape_configs": [
                {"job_name": "api", "honor_labels": True,
                 "file_sd_configs": [{"files": [str(self.home / "api-targets.json")], "refresh_interval": "5s"}]},
                {"job_name": "haproxy", "static_configs": static([(f"{HOST}:{layout.s.ports.lb_stats}", "haproxy")])},
                {"job_name": "patroni", "static_configs": static(
                    [(layout.patroni_api(c).removeprefix("http://"), c.name) for c in t.members(POSTGRES)])},
                {"job_name": "postgres", "scrape_interval": "2s", "scrape_timeout": "1900ms",
                 "static_configs": static([(f"{HOST}:{port}", member) for _, member, port, c in self.exporters()
                                           if c.kind == POSTGRES])},
                {"job_name": "redis", "static_configs": static(
                    [(f"{HOST}:{port}", member) for _, member, port, c in self.exporters() if c.kind == REDIS])},
            ]}

    def write_configs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "rules.yaml").write_text(alert_rules.render(alert_rules.scaled(alert_rules.load())))
        (self.home / "prometheus.yml").write_text(yaml.safe_dump(self.prometheus_config(), sort_keys=False))
        (self.home / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(), sort_keys=False))
        self.sync_api_targets([])

    def sync_api_targets(self, replicas: list[dict[str, Any]]) -> None:
        """The API replicas Prometheus scrapes (status rows of kind api); rewritten only when they change."""
        groups = [{"targets": [r["address"]], "labels": {"replica": r["name"], "zone": r["zone"] or ""}}
                  for r in replicas if r.get("role") != "lost"]
        text = json.dumps(groups, indent=1)
        if text != self._api_targets:
            tmp = self.home / "api-targets.json.tmp"
            tmp.write_text(text)
            tmp.replace(self.home / "api-targets.json")
            self._api_targets = text

    # -- processes ----------------------------------------------------------------------
    def specs(self) -> list[tuple[str, str, str, ProcessSpec]]:
        """(name, kind, address, spec) of every monitoring process."""
        home, log, secrets = self.home, self.layout.log, self.layout.secrets
        out = [
            (PROMETHEUS, PROMETHEUS, f"{HOST}:{PROMETHEUS_PORT}", ProcessSpec(PROMETHEUS, [
                "prometheus", f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'tsdb'}",
                f"--web.listen-address={HOST}:{PROMETHEUS_PORT}", "--storage.tsdb.retention.time=1d",
                "--log.level=warn"], log(PROMETHEUS))),
            (ALERTMANAGER, ALERTMANAGER, f"{HOST}:{ALERTMANAGER_PORT}", ProcessSpec(ALERTMANAGER, [
                "prometheus-alertmanager", f"--config.file={home / 'alertmanager.yml'}",
                f"--storage.path={home / 'alertmanager'}", f"--web.listen-address={HOST}:{ALERTMANAGER_PORT}",
                "--cluster.listen-address=", "--log.level=warn"], log(ALERTMANAGER))),
        ]
        for name, member, port, c in self.exporters():
            address = self.layout.place(c).address
            if c.kind == POSTGRES:
                env = {"DATA_SOURCE_NAME": f"postgresql://postgres:{secrets.postgres_superuser}@{address}/postgres"
                                           "?sslmode=disable&connect_timeout=1"}
                argv = ["prometheus-postgres-exporter", f"--web.listen-address={HOST}:{port}", "--log.level=warn"]
            else:
                env = {"REDIS_PASSWORD": secrets.redis}
                argv = ["prometheus-redis-exporter", f"-redis.addr=redis://{address}",
                        f"-web.listen-address={HOST}:{port}", "-connection-timeout=500ms"]
            out.append((name, EXPORTER, f"{HOST}:{port}", ProcessSpec(name, argv, log(name), env=env)))
        return out

    def start(self) -> None:
        """Start every process (not waiting: `wait_ready` does)."""
        check_binaries()
        self.write_configs()
        for name, kind, address, spec in self.specs():
            ex = Executor(spec, self._ready_check(kind, address))
            ex.start()
            self.executors[name] = (kind, address, ex)

    def wait_ready(self, timeout: float) -> None:
        for _, _, ex in self.executors.values():
            ex.wait_ready(timeout)
        wait_for(self.rules_loaded, timeout, "Prometheus to load the alert rules")

    def rules_loaded(self) -> bool:
        status, body = http_get(f"{prometheus_url()}/api/v1/rules", 0.5)
        return status == 200 and b'"alerting"' in body

    @staticmethod
    def _ready_check(kind: str, address: str) -> Any:
        path = "/-/ready" if kind in (PROMETHEUS, ALERTMANAGER) else "/"
        return lambda: http_get(f"http://{address}{path}", 0.3)[0] == 200

    def refresh(self) -> None:
        """Each process's health (the loop calls this once a look; rows() reads it)."""
        self._healthy = {name: ex.ready() for name, (_, _, ex) in self.executors.items()}

    def rows(self) -> list[dict[str, Any]]:
        return [{"name": name, "kind": kind, "role": "monitoring", "zone": None,
                 "pid": ex.pid if ex.alive() else None, "address": address,
                 "healthy": self._healthy.get(name, ex.alive())}
                for name, (kind, address, ex) in self.executors.items()]

    def executors_list(self) -> list[Executor]:
        return [ex for _, _, ex in self.executors.values()]
