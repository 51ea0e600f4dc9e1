"""Issue 2's must-shows, on the real local stack: processes, zones, failovers, teardown."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from resilience.fault_registry import fault_call
from resilience.targets.local.target import LocalTarget

from resilience.errors import HarnessError
from stack_helpers import place_order, stack_settings, wait_until, whole

pytestmark = pytest.mark.stack


def test_up_is_healthy_in_three_zones_and_orders_read_back(stack: LocalTarget) -> None:
    status = stack.status()
    assert status.healthy, [c for c in status.components if not c.healthy]
    assert status.zone_mode == "netns"
    assert status.zones() == {"zone-a", "zone-b", "zone-c"}
    kinds = sorted(c.kind for c in status.components)
    assert kinds.count("etcd") == 3 and kinds.count("sentinel") == 3 and kinds.count("postgres") == 2
    assert {c.zone for c in status.components if c.kind == "api"} == {"zone-a", "zone-b", "zone-c"}
    with httpx.Client(base_url=status.url or "", timeout=5) as client:
        created = [place_order(client, f"up-{i}") for i in range(5)]
        assert all(r.status_code == 201 for r in created)
        seqs = [r.json()["seq"] for r in created]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        for r in created:
            got = client.get(f"/orders/{r.json()['order_id']}")
            assert got.status_code == 200 and got.json()["idempotency_key"] == r.json()["idempotency_key"]


def test_up_on_a_running_stack_reports_it_instead_of_starting_another(stack: LocalTarget) -> None:
    pid_before = stack.local.supervisor_pid()
    status = stack.up()
    assert status.running and stack.local.supervisor_pid() == pid_before


def test_killed_replica_is_replaced_and_requests_keep_succeeding(stack: LocalTarget, traffic) -> None:
    wait_until(lambda: stack.ready_replicas() >= 3, 30, "3 ready replicas")
    before = {c.pid for c in stack.status().components if c.kind == "api"}

    def replaced() -> bool:
        api = [c for c in stack.status().components if c.kind == "api"]
        new = [c for c in api if c.pid is not None and c.pid not in before]
        return bool(new) and all(c.healthy for c in api) and len(api) >= 3

    with traffic() as t:
        time.sleep(1.0)
        t0 = time.monotonic()
        stack.inject(fault_call("kill_replicas", {"count": 1, "seed": 7}))
        took = wait_until(replaced, 30, "the controller to replace the killed replica, ready in the load balancer")
        time.sleep(1.0)
    assert t.successes_since(t0) > 20
    # only requests in flight on the killed replica may fail
    assert t.failures_since(t0) <= 3, t.failures_since(t0)
    events = [e for e in stack.events_since(t0 - 0.5) if e.op == "replace"]
    assert events, "the controller recorded no replace event"
    print(f"replica replaced and ready in {took:.2f} s; {t.failures_since(t0)} failed requests")


def test_postgres_primary_kill_promotes_replica_and_loses_no_acknowledged_order(stack: LocalTarget, traffic) -> None:
    leader_before = stack.status().detail["pg_leader"]
    with traffic() as t:
        time.sleep(2.0)
        t0 = time.monotonic()
        step = stack.inject(fault_call("fail_over_database", {"mode": "kill"}))
        took = wait_until(lambda: stack.status().detail["pg_leader"] not in (None, leader_before), 60,
                          "Patroni to promote the replica")
        wait_until(lambda: t.successes_since(time.monotonic() - 0.5) > 0, 30, "orders to succeed again")
        time.sleep(1.0)
    acked = dict(t.acked)
    assert len(acked) > 50
    with httpx.Client(base_url=stack.url(), timeout=10) as client:
        found = client.post("/orders/lookup", json={"keys": list(acked)}).json()["found"]
    lost = [k for k in acked if k not in found]
    assert lost == [], f"{len(lost)} acknowledged orders lost with synchronous replication"
    print(f"promoted in {took:.1f} s; {t.failures_since(t0)} failed requests; {len(acked)} acknowledged, 0 lost")
    t_heal = time.monotonic()
    stack.rollback(step)  # returns once the old primary has rejoined: streaming, and the synchronous standby again
    status = stack.status()
    assert status.healthy, status.detail["problems"]
    roles = {c.name: c.role for c in status.components if c.kind == "postgres"}
    assert roles[leader_before] == "replica", roles
    heals = [e for e in stack.events_since(t_heal) if e.op == "heal"]
    assert heals, "the heal was not recorded as an event"
    rejoined = heals[0].detail["components"][leader_before]
    assert rejoined["action"] in ("rejoin", "rewind", "reinit") and 0 < rejoined["seconds"] < 120, rejoined
    print(f"{leader_before} rejoined in {rejoined['seconds']} s ({rejoined['action']})")


def test_redis_master_kill_fails_over_and_orders_keep_succeeding(stack: LocalTarget, traffic) -> None:
    master_before = stack.status().detail["redis_master"]
    with traffic() as t:
        time.sleep(1.0)
        t0 = time.monotonic()
        step = stack.inject(fault_call("stop_cache", {"mode": "failover"}))
        wait_until(lambda: stack.status().detail["redis_master"] not in (None, master_before), 30,
                   "Sentinel to promote the Redis replica")
        time.sleep(1.0)
    total = t.successes_since(t0) + t.failures_since(t0)
    assert total > 20 and t.failures_since(t0) / total < 0.02, (t.failures_since(t0), total)
    stack.rollback(step)  # returns once the old master is a linked replica of the new one
    status = stack.status()
    assert status.healthy, status.detail["problems"]
    assert {c.name: c.role for c in status.components if c.kind == "redis"}[master_before] == "slave"


def test_cut_zone_leaves_the_load_balancer_and_traffic_continues(stack: LocalTarget, traffic) -> None:
    status = stack.status()
    busy = {c.zone for c in status.components if c.role in ("primary", "master")}
    zone = next(z for z in ("zone-c", "zone-b", "zone-a") if z not in busy)
    zone_replicas = {c.name for c in status.components if c.kind == "api" and c.zone == zone}
    assert zone_replicas
    with traffic() as t:
        time.sleep(1.0)
        t0 = time.monotonic()
        step = stack.inject(fault_call("lose_zone", {"zone": zone}))
        wait_until(lambda: not any(c.healthy for c in stack.status().components if c.name in zone_replicas),
                   10, f"{zone}'s replicas to leave the load balancer")
        took = wait_until(lambda: t.successes_since(time.monotonic() - 1.0) > 10, 15, "orders to flow again")
    assert t.failures_since(t0) <= 5, t.failures_since(t0)
    print(f"orders flowing again {took:.2f} s after the cut; {t.failures_since(t0)} failed")
    stack.rollback(step)
    wait_until(lambda: stack.status().healthy, 60, f"{zone} to come back")
    assert stack.ready_replicas() >= 3


def test_port_in_use_is_a_clear_error_and_starts_nothing(tmp_path) -> None:
    """A second stack on a port that is taken: exit 2 naming the port and the setting, nothing left running."""
    config = tmp_path / "resilience.yaml"
    config.write_text("stack:\n  state_dir: /var/lib/resilience-porttest\n  ports: {lb: 18080}\n")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 18080))
        blocker.listen()
        proc = subprocess.run([sys.executable, "-m", "resilience.cli", "up", "--config", str(config)], capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 2
    assert "18080" in proc.stderr and "stack.ports.lb" in proc.stderr
    assert not (tmp_path / "state.json").exists()


def test_losing_the_cache_zone_leaves_redis_usable_through_sentinel(stack: LocalTarget) -> None:
    """After the zone holding the Redis master (and one Sentinel) is lost, the API finds the new master:
    menus come from the cache again, fast (a dead first Sentinel once made every cache call time out)."""
    wait_until(lambda: stack.status().healthy, 60, "a healthy stack")
    master = stack.status().detail["redis_master"]
    zone = next(c.zone for c in stack.status().components if c.name == master)
    step = stack.inject(fault_call("lose_zone", {"zone": zone}))
    try:
        with httpx.Client(base_url=stack.url(), timeout=3) as client:
            def cached_and_fast() -> bool:
                t0 = time.monotonic()
                resp = client.get("/menu")
                return (resp.status_code == 200 and resp.headers.get("x-cache") == "hit"
                        and time.monotonic() - t0 < 0.25)
            took = wait_until(cached_and_fast, 40, "menus served from Redis again after the failover")
            slow = 0
            for _ in range(40):
                t0 = time.monotonic()
                client.get("/menu")
                slow += time.monotonic() - t0 > 0.5
                time.sleep(0.05)
        assert slow <= 2, f"{slow} of 40 menu requests took over 0.5 s after the cache failed over"
        print(f"menus cached again {took:.1f} s after losing {zone}")
    finally:
        stack.rollback(step)
    wait_until(lambda: stack.status().healthy, 90, f"{zone} back")


@pytest.mark.own_stack
def test_a_heal_that_cannot_complete_says_so_with_the_log_and_fails_the_rollback() -> None:
    """A stack whose heal deadline is shorter than any rejoin: the rollback raises, naming the member and
    quoting its log, and the history gets a heal_failed event. Never a silent degraded stack."""
    short = LocalTarget(stack_settings(heal_timeout_s=1.0, reinit_after_s=0.5))
    try:
        short.up()
        step = short.inject(fault_call("fail_over_database", {"mode": "kill"}))
        wait_until(lambda: short.status().detail["pg_leader"] not in (None, step.arguments["member"]), 60,
                   "Patroni to promote the standby")
        t0 = time.monotonic()
        with pytest.raises(HarnessError) as failed:
            short.rollback(step)
        message = str(failed.value)
        assert "did not heal within 1 s" in message and step.arguments["member"] in message
        assert "ends with:" in message  # the member's log excerpt
        events = [e for e in short.events_since(t0) if e.op == "heal_failed"]
        assert events and step.arguments["member"] in events[0].detail["components"]
        # nothing is left broken for good: with time, the member rejoins
        wait_until(lambda: whole(short), 120, "the member to rejoin after all")
    finally:
        short.down()
