"""targets/local/signal_watch.py: the services' own failover signals (Sentinel, Patroni's leader key, HAProxy)."""

import base64
import json
from pathlib import Path

from resilience.event_feed import as_record
from resilience.targets.base import PlatformEvent
from resilience.targets.local.signal_watch import (SignalWatch, Watched, leader_events, sentinel_detail,
                                                   server_changes, watched_from_state)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_sentinel_event_is_read_as_sentinel_wrote_it() -> None:
    sdown = sentinel_detail("sentinel-1", "+sdown", "master rsl-cache 10.231.1.1 6391")
    assert sdown == {"sentinel": "sentinel-1", "event": "+sdown", "text": "master rsl-cache 10.231.1.1 6391",
                     "instance": "master", "name": "rsl-cache", "address": "10.231.1.1:6391"}
    switch = sentinel_detail("sentinel-2", "+switch-master", "rsl-cache 10.231.1.1 6391 10.231.2.1 6392")
    assert switch["old"] == "10.231.1.1:6391" and switch["new"] == "10.231.2.1:6392" and switch["instance"] == "master"
    epoch = sentinel_detail("sentinel-1", "+new-epoch", "3")  # not about an instance: only the text
    assert "instance" not in epoch and epoch["text"] == "3"


def test_the_leader_key_changes_in_a_watch_response() -> None:
    key = "/service/rsl-meals/leader"
    result = {"events": [{"type": "DELETE", "kv": {"key": b64(key), "mod_revision": "41"}},
                         {"kv": {"key": b64(key), "value": b64("postgres-2"), "mod_revision": "42"}},
                         {"kv": {"key": b64("/service/rsl-meals/members/x"), "value": b64("{}"), "mod_revision": "43"}}]}
    assert leader_events(result, key) == [(41, "deleted", None), (42, "set", "postgres-2")]
    assert leader_events({"created": True}, key) == []


def test_every_member_reports_a_change_once_and_a_rewrite_of_the_same_leader_is_no_signal() -> None:
    key = "/service/rsl-meals/leader"
    watch = SignalWatch(Watched(leader_key=key))
    watch._leader = "postgres-1"
    rewrite = {"events": [{"kv": {"key": b64(key), "value": b64("postgres-1"), "mod_revision": "40"}}]}
    gone = {"events": [{"type": "DELETE", "kv": {"key": b64(key), "mod_revision": "41"}}]}
    new = {"events": [{"kv": {"key": b64(key), "value": b64("postgres-2"), "mod_revision": "42"}}]}
    for member in ("etcd-1", "etcd-2"):
        for result in (rewrite, gone, new):
            watch._leader_result(member, result)
    assert [(e.op, e.detail["event"], e.detail["value"], e.detail["member"]) for e in watch.events] == [
        ("leader", "deleted", None, "etcd-1"), ("leader", "set", "postgres-2", "etcd-1")]
    assert watch._next_revision == 43  # a watch opened again resumes after what was seen


def test_haproxy_server_state_changes() -> None:
    before = {"api1": ("UP", "10.231.1.1:8101"), "api2": ("UP", "10.231.2.1:8102")}
    now = {"api1": ("DOWN", "10.231.1.1:8101", "L4TOUT"), "api2": ("UP", "10.231.2.1:8102", "L7OK"),
           "api4": ("DOWN", "10.231.3.1:8104", "L7STS")}
    assert server_changes(before, now) == [
        {"server": "api1", "address": "10.231.1.1:8101", "status": "DOWN", "previous": "UP", "check": "L4TOUT"},
        {"server": "api4", "address": "10.231.3.1:8104", "status": "DOWN", "previous": None, "check": "L7STS"}]


def test_what_to_watch_comes_from_the_supervisors_state(tmp_path: Path) -> None:
    rows = [{"name": "sentinel-1", "kind": "sentinel", "address": "10.231.1.1:26391"},
            {"name": "etcd-1", "kind": "etcd", "address": "10.231.1.1:2391"},
            {"name": "redis-1", "kind": "redis", "address": "10.231.1.1:6391"}]
    (tmp_path / "state.json").write_text(json.dumps({"components": rows}))
    (tmp_path / "secrets.json").write_text(json.dumps({"redis": "pw"}))
    watched = watched_from_state(tmp_path, "/service/rsl-meals/leader")
    assert watched.sentinels == [("sentinel-1", "10.231.1.1:26391")] and watched.etcd == [("etcd-1", "10.231.1.1:2391")]
    assert watched.sentinel_password == "pw" and watched.haproxy_socket is None
    empty = watched_from_state(tmp_path / "nothing", "/k")  # no stack: nothing to watch, no error
    assert empty.sentinels == [] and empty.etcd == []


def test_a_watch_with_nothing_to_watch_starts_and_stops_cleanly() -> None:
    watch = SignalWatch(Watched())
    watch.start()
    watch.stop()
    watch.stop()
    assert [e.op for e in watch.events] == ["watching"]


def test_signals_keep_their_source_in_the_history() -> None:
    from resilience.history import History

    history = History(origin_monotonic=100.0)
    record = as_record(PlatformEvent(101.5, "signal", "leader", {"event": "deleted"}), history)
    assert (record.source, record.op, record.t) == ("signal", "leader", 1.5)


def test_the_local_platform_hands_the_signals_over_and_stops_the_watch(tmp_path: Path) -> None:
    import dataclasses

    from resilience.config import Settings
    from resilience.targets.local import LocalPlatform

    settings = Settings()
    platform = LocalPlatform(dataclasses.replace(settings, stack=dataclasses.replace(settings.stack,
                                                                                       state_dir=str(tmp_path))))
    platform.signals = SignalWatch(watched_from_state(tmp_path, "/service/rsl-meals/leader"))
    platform.signals.start()
    platform.signals.add("leader", {"event": "deleted"})
    platform.stop_observing()
    assert [e.op for e in platform.events_since(0.0)] == ["watching", "leader"]  # nothing watched: no threads
