"""The harness's Alertmanager webhook: notifications become `alert` events; unreachable monitoring is said."""

import json
import socket
import time
import urllib.request

from resilience.targets.local.alert_receiver import AlertReceiver, parse_time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_notifications_become_events_and_missing_prometheus_is_unreachable() -> None:
    receiver = AlertReceiver(port=(port := free_port()), prometheus=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    receiver.start()
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 2)) + ".250Z"
    body = {"status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "DatabaseDown", "severity": "critical"},
         "startsAt": now, "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc"},
        {"status": "resolved", "labels": {"alertname": "RedisDown"}, "startsAt": now, "endsAt": now}]}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    assert urllib.request.urlopen(request, timeout=5).status == 200
    receiver.stop()
    events = receiver.since(started - 1)
    ops = [e.op for e in events]
    assert ops[0] == "unreachable" and events[0].detail["what"] == "prometheus"
    assert "for_s" in events[0].detail and events[0].detail["for_s"]["DatabaseDown"] == 2.0
    firing = next(e for e in events if e.op == "firing")
    assert firing.source == "alert" and firing.detail["alert"] == "DatabaseDown"
    assert 1.0 < firing.detail["fired_s_before"] < 4.0 and firing.detail["ended_s_before"] is None
    resolved = next(e for e in events if e.op == "resolved")
    assert resolved.detail["alert"] == "RedisDown" and resolved.detail["ended_s_before"] > 1.0
    assert ops[-1] == "stopped"


def test_times_in_go_format() -> None:
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert abs(parse_time("2026-12-06T17:51:10.831123456Z") - parse_time("2026-12-06T17:51:10Z") - 0.831123456) < 1e-6


def test_the_local_platform_hands_the_alert_events_over_with_its_failover_settings(tmp_path) -> None:
    import dataclasses

    from resilience.config import Settings
    from resilience.targets.local import LocalPlatform

    settings = Settings()
    platform = LocalPlatform(dataclasses.replace(settings, stack=dataclasses.replace(settings.stack,
                                                                                       state_dir=str(tmp_path))))
    platform.alerts = AlertReceiver(port=free_port(), prometheus=f"http://127.0.0.1:{free_port()}",
                                    failover={"patroni": {"ttl_s": 10}})
    platform.alerts.start()
    platform.stop_observing()
    events = platform.events_since(0.0)  # no events.jsonl (no stack): the alert events still come
    assert [e.op for e in events] == ["unreachable", "stopped"]
    assert events[0].detail["failover"] == {"patroni": {"ttl_s": 10}}
