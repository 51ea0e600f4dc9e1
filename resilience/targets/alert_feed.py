"""Alerts read by polling, as `alert` events on the run's clock: what the cloud targets share.

The local stack is told of alerts (Alertmanager's webhook, targets/local/alert_receiver.py); a cloud
target asks: Alertmanager's API v2 (`GET /api/v2/alerts`) and Prometheus's `/api/v1/rules` on
Kubernetes, CloudWatch's alarm history on AWS. `AlertFeed` turns what each look returns into the
same records the local receiver writes (ops watching | unreachable | reachable | pending |
rule-firing | firing | resolved | stopped), so checkers/detection.py reads both alike:

- an alert that appears active in Alertmanager is `firing` (detail `fired_s_before`: Prometheus's
  startsAt, seconds before that look); one that leaves the list (Alertmanager drops an alert once
  its endsAt has passed) or shows an endsAt in the past is `resolved`;
- Prometheus's pending and firing alerts are `pending` (at their own activeAt) and `rule-firing`;
- `UNREACHABLE_AFTER` failed looks in a row make one `unreachable` record (detection: inconclusive).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from .base import PlatformEvent
from .local.alert_receiver import parse_time, rule_alert_events, wall_to_monotonic

ALERT = "alert"  # = history.ALERT
UNREACHABLE_AFTER = 3


class AlertFeed:
    """Events of source `alert`; `look` (called every `poll_s` by `start`'s thread) feeds them."""

    def __init__(self, look: Callable[["AlertFeed"], None], poll_s: float, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.look = look
        self.poll_s = poll_s
        self.clock = clock
        self.events: list[PlatformEvent] = []
        self.started_m = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: set[tuple[str, str, str]] = set()
        self._active: dict[str, dict[str, Any]] = {}  # Alertmanager fingerprint -> the alert as last seen
        self._failures: dict[str, int] = {}
        self._unreachable: set[str] = set()

    def add(self, op: str, detail: dict[str, Any], monotonic: float | None = None) -> None:
        with self._lock:
            self.events.append(PlatformEvent(self.clock() if monotonic is None else monotonic, ALERT, op, detail))

    def since(self, monotonic: float) -> list[PlatformEvent]:
        with self._lock:
            return [e for e in self.events if e.monotonic >= monotonic]

    # -- lifecycle --------------------------------------------------------------------
    def start(self, watching: dict[str, Any]) -> None:
        """Record the configuration (`watching`), take a first look, then look every `poll_s` in a thread."""
        self.started_m = self.clock()
        self.add("watching", watching)
        self._safe_look()
        self._thread = threading.Thread(target=self._loop, name="alert-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=max(2.0, self.poll_s * 2))
        self._safe_look()  # the last look
        self.add("stopped", {})

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._safe_look()

    def _safe_look(self) -> None:
        try:
            self.look(self)
        except Exception as exc:  # noqa: BLE001 - a look that fails counts as the monitoring not answering
            self.failed("monitoring", f"{type(exc).__name__}: {str(exc)[:200]}")

    # -- reachability -----------------------------------------------------------------
    def failed(self, what: str, error: str) -> None:
        self._failures[what] = self._failures.get(what, 0) + 1
        if self._failures[what] >= UNREACHABLE_AFTER and what not in self._unreachable:
            self._unreachable.add(what)
            self.add("unreachable", {"what": what, "error": error})

    def answered(self, what: str) -> None:
        self._failures[what] = 0
        if what in self._unreachable:
            self._unreachable.discard(what)
            self.add("reachable", {"what": what})

    # -- Alertmanager API v2 ------------------------------------------------------------
    def alertmanager_alerts(self, alerts: list[dict[str, Any]], source: str = "alertmanager-api-v2") -> None:
        """One `GET /api/v2/alerts` answer (gettableAlerts): new active alerts fire, alerts gone resolve."""
        now_wall, now_m = time.time(), self.clock()
        current: dict[str, dict[str, Any]] = {}
        for alert in alerts:
            fingerprint = str(alert.get("fingerprint") or json.dumps(alert.get("labels") or {}, sort_keys=True))
            ends = parse_time(alert.get("endsAt"))
            state = (alert.get("status") or {}).get("state", "active")
            if ends is not None and ends <= now_wall:
                continue  # resolved: Alertmanager still lists it until its next cleanup
            if state in ("active", "suppressed"):  # unprocessed: not yet through Alertmanager's pipeline
                current[fingerprint] = alert
        for fingerprint, alert in current.items():
            if fingerprint in self._active:
                continue
            labels = alert.get("labels") or {}
            starts = parse_time(alert.get("startsAt"))
            self.add("firing", {"alert": labels.get("alertname", "?"), "labels": labels, "fingerprint": fingerprint,
                                "source": source, "state": (alert.get("status") or {}).get("state"),
                                "fired_s_before": None if starts is None else round(max(0.0, now_wall - starts), 3),
                                "before_start": starts is not None and wall_to_monotonic(starts) < self.started_m},
                     now_m)
        for fingerprint, alert in self._active.items():
            if fingerprint not in current:
                labels = alert.get("labels") or {}
                self.add("resolved", {"alert": labels.get("alertname", "?"), "labels": labels,
                                      "fingerprint": fingerprint, "source": source, "ended_s_before": None}, now_m)
        self._active = current

    # -- Prometheus /api/v1/rules ---------------------------------------------------------
    def prometheus_rules(self, groups: list[dict[str, Any]]) -> None:
        """One `/api/v1/rules` answer: each alert's pending time (its activeAt) and first firing look."""
        for group in groups:
            for rule in group.get("rules", []):
                if rule.get("type", "alerting") != "alerting":
                    continue
                for alert in rule.get("alerts", []):
                    self._rule_alert(str(rule.get("name", "?")), alert)

    def _rule_alert(self, name: str, alert: dict[str, Any]) -> None:
        for op, detail, monotonic in rule_alert_events(self._seen, self.started_m, name, alert):
            self.add(op, detail, monotonic)
