"""The harness's Alertmanager webhook, and a watch on Prometheus's rules, for the length of a run.

Every notification Alertmanager sends (firing, resolved) and every alert Prometheus holds
pending or firing (`/api/v1/rules`, its `activeAt`) becomes a `PlatformEvent` of source
"alert", on the shared monotonic clock, so the run's history holds the whole chain
pending -> firing -> notified -> resolved. The first event says how the monitoring is
configured (scrape and evaluation intervals, each alert's `for:`, Alertmanager's
group_wait): the checker (checkers/detection.py) derives the detection bound from it.
Monitoring that cannot be reached is recorded too ("unreachable"): detection is then
inconclusive, never a pass.

Ops: watching (detail: configuration) | unreachable | reachable | pending | rule-firing
(first seen firing in Prometheus) | firing | resolved (notifications) | stopped.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..base import PlatformEvent
from . import alert_rules, monitoring
from .probes import http_get

ALERT = "alert"  # = history.ALERT (kept literal: targets do not import the harness's history)
POLL_S = 0.5  # how often the rules are read: the pending time is Prometheus's own activeAt, not this
UNREACHABLE_AFTER = 4  # consecutive failed reads before the monitoring counts as unreachable


def wall_to_monotonic(wall: float) -> float:
    return time.monotonic() - (time.time() - wall)


def parse_time(text: str | None) -> float | None:
    """An RFC 3339 time from Prometheus or Alertmanager as UNIX seconds; None for none or the zero time."""
    if not text or text.startswith("0001-"):
        return None
    match = re.fullmatch(r"([^.]+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        return None
    head, fraction, zone = match.groups()
    try:  # Python before 3.11 reads at most 6 fractional digits, Go writes up to 9
        base = datetime.fromisoformat(head + ("+00:00" if zone == "Z" else zone)).timestamp()
    except ValueError:
        return None
    return base + (float("0." + fraction) if fraction else 0.0)


def configuration() -> dict[str, Any]:
    """What the detection bound is made of (the local profile's rules as Prometheus loads them)."""
    return {"scrape_s": monitoring.SCRAPE_S, "evaluation_s": monitoring.EVALUATION_S,
            "group_wait_s": monitoring.GROUP_WAIT_S, "group_interval_s": monitoring.GROUP_INTERVAL_S,
            "scale": alert_rules.SCALE, "for_s": alert_rules.windows(alert_rules.scaled(alert_rules.load())),
            "prometheus": monitoring.prometheus_url(), "alertmanager": monitoring.alertmanager_url()}


class AlertReceiver:
    """Started by `LocalPlatform.start_observing`, stopped by `stop_observing`; `events` is what it saw."""

    def __init__(self, host: str = monitoring.HOST, port: int = monitoring.RECEIVER_PORT,
                 prometheus: str | None = None, failover: dict[str, Any] | None = None) -> None:
        self.host, self.port = host, port
        self.failover = failover  # the stack's failover settings, for checkers/failover_phases.py
        self.prometheus = prometheus or monitoring.prometheus_url()
        self.events: list[PlatformEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._seen: set[tuple[str, str, str]] = set()  # (op, alert key, activeAt) already recorded
        self._failures = 0
        self._unreachable = False
        self.started_m = time.monotonic()

    def add(self, op: str, detail: dict[str, Any], monotonic: float | None = None) -> None:
        with self._lock:
            self.events.append(PlatformEvent(time.monotonic() if monotonic is None else monotonic, ALERT, op, detail))

    def since(self, monotonic: float) -> list[PlatformEvent]:
        with self._lock:
            return [e for e in self.events if e.monotonic >= monotonic]

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        receiver = self
        self.started_m = time.monotonic()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    receiver.notification(json.loads(body or b"{}"))
                    self.send_response(200)
                except ValueError:
                    self.send_response(400)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        try:
            self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:  # the port is taken: no notification can reach this run
            self.add("unreachable", {"what": "webhook", "error": f"cannot listen on {self.host}:{self.port}: {exc}"})
            return
        ready = http_get(f"{self.prometheus}/-/ready", 1.0)[0] == 200
        self.add("watching" if ready else "unreachable",
                 {**configuration(), **({"failover": self.failover} if self.failover else {}),
                  **({} if ready else {"what": "prometheus", "error": "not ready"})})
        self._threads = [threading.Thread(target=self._server.serve_forever, name="alert-webhook", daemon=True),
                         threading.Thread(target=self._poll, name="alert-rules", daemon=True)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        if self._server is None or self._stop.is_set():
            return
        self._stop.set()
        self.read_rules()  # the last look
        self._server.shutdown()
        self._server.server_close()
        for t in self._threads:
            t.join(timeout=2)
        self.add("stopped", {})

    # -- notifications ----------------------------------------------------------------
    def notification(self, body: dict[str, Any]) -> None:
        """One Alertmanager webhook call: one event per alert in it (firing or resolved)."""
        for alert in body.get("alerts") or []:
            labels = alert.get("labels") or {}
            status = "resolved" if alert.get("status") == "resolved" else "firing"
            starts, ends = parse_time(alert.get("startsAt")), parse_time(alert.get("endsAt"))
            now = time.time()  # times in the detail are seconds before this notification (no clock origin here)
            self.add(status, {"alert": labels.get("alertname", "?"), "labels": labels,
                              "fingerprint": alert.get("fingerprint"),
                              "fired_s_before": None if starts is None else round(now - starts, 3),
                              "ended_s_before": None if ends is None or status == "firing" else round(now - ends, 3)})

    # -- Prometheus's rules: pending times --------------------------------------------------
    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            self.read_rules()

    def read_rules(self) -> None:
        status, body = http_get(f"{self.prometheus}/api/v1/rules?type=alert", 1.0)
        try:
            groups = json.loads(body)["data"]["groups"] if status == 200 else None
        except (ValueError, KeyError, TypeError):
            groups = None
        if groups is None:
            self._failures += 1
            if self._failures >= UNREACHABLE_AFTER and not self._unreachable:
                self._unreachable = True
                self.add("unreachable", {"what": "prometheus", "error": f"/api/v1/rules answered {status}"})
            return
        self._failures = 0
        if self._unreachable:
            self._unreachable = False
            self.add("reachable", {"what": "prometheus"})
        for group in groups:
            for rule in group.get("rules", []):
                for alert in rule.get("alerts", []):
                    self._alert_state(rule.get("name", "?"), alert)

    def _alert_state(self, name: str, alert: dict[str, Any]) -> None:
        for op, detail, monotonic in rule_alert_events(self._seen, self.started_m, name, alert):
            self.add(op, detail, monotonic)


def rule_alert_events(seen: set[tuple[str, str, str]], started_m: float, name: str,
                      alert: dict[str, Any]) -> list[tuple[str, dict[str, Any], float | None]]:
    """One alert of Prometheus's `/api/v1/rules`: a `pending` event at its activeAt and a `rule-firing` one, each
    once per (alert labels, activeAt) (`seen` remembers them); the local receiver and the cloud feed share it."""
    labels = alert.get("labels") or {}
    key = json.dumps(labels, sort_keys=True)
    active = str(alert.get("activeAt") or "")
    at = parse_time(active)
    detail = {"alert": name, "labels": labels, "active_at": active}
    events: list[tuple[str, dict[str, Any], float | None]] = []
    if ("pending", key, active) not in seen:
        seen.add(("pending", key, active))
        # an alert already active when the run began is stamped at the start (the run's clock starts there)
        events.append(("pending", {**detail, "before_start": at is not None and wall_to_monotonic(at) < started_m},
                       None if at is None else max(started_m, wall_to_monotonic(at))))
    if alert.get("state") == "firing" and ("rule-firing", key, active) not in seen:
        seen.add(("rule-firing", key, active))
        events.append(("rule-firing", detail, None))
    return events
