"""The platform app against a real PostgreSQL 15 and Redis: orders, idempotency, degradation, readiness.

Starts a throwaway PostgreSQL (port 15432), redis-server (16379) and the app
(18000) as child processes in their own sessions, and stops them by process
group in `finally`. The DSN lists a dead host first (18009) so every
connection also exercises the multi-host fallback, and a standby port (18001)
that the last test fills with a streaming replica, then promotes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_PORT = 15432
REDIS_PORT = 16379
APP_PORT = 18000
STANDBY_PORT = 18001
DEAD_PORT = 18009  # nothing listens here: the first host of the DSN is unreachable
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (PG_BIN / "postgres").exists() or shutil.which("redis-server") is None or os.geteuid() != 0,
    reason="needs root, PostgreSQL 15 in /usr/lib/postgresql/15/bin and redis-server (scripts/bootstrap.sh)")


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> float:
    """Poll `condition` until true; returns the seconds it took, fails the test at the deadline."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Service:
    """One child process in its own session, stopped by process group."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env, cwd=self.cwd, start_new_session=True)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
            except ProcessLookupError:
                pass
        # The group may still hold children of a process that has exited (e.g. runuser's postgres).
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        pg_dir = root / "pg"
        self.postgres = Service("postgres", [
            "runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(pg_dir / "data"),
            "-p", str(PG_PORT), "-k", str(pg_dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
        ], root / "postgres.log")
        self.standby = Service("standby", [
            "runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(pg_dir / "standby"),
            "-p", str(STANDBY_PORT), "-k", str(pg_dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
        ], root / "standby.log")
        self.redis = Service("redis", [
            "redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(root),
        ], root / "redis.log")
        env = {**os.environ,
               "RSL_PG_DSN": f"postgresql://postgres@127.0.0.1:{DEAD_PORT},127.0.0.1:{PG_PORT},"
                             f"127.0.0.1:{STANDBY_PORT}/postgres?target_session_attrs=read-write",
               "RSL_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
               "RSL_REPLICA": "api-test", "RSL_ZONE": "zone-a", "RSL_STARTUP_WAIT_S": "5"}
        for name in ("RSL_REDIS_SENTINELS",):
            env.pop(name, None)
        self.app = Service("app", [sys.executable, "-m", "resilience.platform", "--host", "127.0.0.1",
                                   "--port", str(APP_PORT)], root / "app.log", env=env, cwd=REPO)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{APP_PORT}", timeout=5.0)

    def init_postgres(self) -> None:
        pg_dir = self.root / "pg"
        pg_dir.mkdir()
        shutil.chown(pg_dir, "postgres", "postgres")
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(pg_dir / "data"),
                        "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)

    def start_postgres(self) -> None:
        self.postgres.start()
        wait_until(lambda: port_open(PG_PORT), 15, f"PostgreSQL on port {PG_PORT}\n{self.postgres.log_tail()}")

    def stop_postgres(self) -> None:
        self.postgres.stop(signal.SIGINT)  # fast shutdown: clients are disconnected at once

    def sql(self, port: int, query: str) -> str:
        return subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "psql"), "-h", "127.0.0.1",
                               "-p", str(port), "-U", "postgres", "-Atc", query],
                              check=True, capture_output=True, text=True, timeout=10).stdout.strip()

    def start_standby(self) -> None:
        """A streaming replica of the primary, as Patroni would build it."""
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1",
                        "-p", str(PG_PORT), "-U", "postgres", "-D", str(self.root / "pg" / "standby"),
                        "-R", "-X", "stream"], check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        self.standby.start()
        wait_until(lambda: port_open(STANDBY_PORT), 15, f"the standby on port {STANDBY_PORT}")

    def standby_caught_up(self) -> bool:
        sent = self.sql(PG_PORT, "SELECT pg_current_wal_lsn()")
        return self.sql(STANDBY_PORT, f"SELECT pg_last_wal_replay_lsn() >= '{sent}'::pg_lsn") == "t"

    def start_redis(self) -> None:
        self.redis.start()
        wait_until(lambda: port_open(REDIS_PORT), 10, f"redis-server on port {REDIS_PORT}\n{self.redis.log_tail()}")

    def ready(self) -> bool:
        if not self.app.running():
            pytest.fail(f"the app exited:\n{self.app.log_tail()}")
        try:
            return self.client.get("/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def order(self, key: str | None = None, **extra: object) -> httpx.Response:
        body = {"idempotency_key": key or f"k-{uuid.uuid4()}", "student_id": "stu-42",
                "items": [{"item_id": 1, "qty": 2}, {"item_id": 11, "qty": 1}], **extra}
        return self.client.post("/orders", json=body)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="rsl-platform-test-"))
    root.chmod(0o755)  # postgres must reach its data and socket directory inside
    stack = Stack(root)
    try:
        stack.init_postgres()
        stack.start_postgres()
        stack.start_redis()
        if port_open(APP_PORT):
            pytest.fail(f"port {APP_PORT} is already in use; stop whatever listens there")
        stack.app.start()
        wait_until(stack.ready, 20, "the app to become ready")
        yield stack
    finally:
        stack.client.close()
        stack.app.stop(signal.SIGTERM)
        stack.redis.stop(signal.SIGTERM)
        stack.stop_postgres()
        stack.standby.stop(signal.SIGINT)
        shutil.rmtree(root, ignore_errors=True)


def test_orders_are_acknowledged_once_with_increasing_seq(stack: Stack) -> None:
    key = f"k-{uuid.uuid4()}"
    first = stack.order(key)
    assert first.status_code == 201, first.text
    assert first.headers["x-replica"] == "api-test"
    order = first.json()
    assert set(order) >= {"order_id", "seq", "idempotency_key", "total", "created_at"}
    assert order["idempotency_key"] == key
    assert order["total"] == 2 * 45.0 + 25.0  # two Bisi Bele Bath and one Kesari Bath

    replay = stack.order(key)
    assert replay.status_code == 200
    assert replay.json()["order_id"] == order["order_id"] and replay.json()["seq"] == order["seq"]

    via_header = stack.client.post("/orders", headers={"Idempotency-Key": key},
                                   json={"student_id": "stu-42", "items": [{"item_id": 1, "qty": 2}]})
    assert via_header.status_code == 200 and via_header.json()["order_id"] == order["order_id"]

    later = [stack.order().json()["seq"] for _ in range(5)]
    assert later == sorted(later) and len(set(later)) == 5 and later[0] > order["seq"]

    assert stack.client.get(f"/orders/{order['order_id']}").json()["seq"] == order["seq"]
    assert stack.client.get(f"/orders/by-key/{key}").json()["order_id"] == order["order_id"]
    assert stack.client.get(f"/orders/{uuid.uuid4()}").status_code == 404
    assert stack.client.get("/orders/not-a-uuid").status_code == 404
    assert stack.client.get("/orders/by-key/never-used").status_code == 404

    lookup = stack.client.post("/orders/lookup", json={"keys": [key, "never-used"]}).json()
    assert lookup["found"][key] == {"order_id": order["order_id"], "seq": order["seq"],
                                    "created_at": order["created_at"], "items": order["items"],
                                    "total_paise": round(order["total"] * 100)}
    assert lookup["missing"] == ["never-used"]
    assert stack.client.post("/orders/lookup", json={"keys": ["x"] * 5001}).status_code == 422

    assert stack.order(items=[{"item_id": 999, "qty": 1}]).status_code == 422
    assert stack.order(items=[]).status_code == 422
    assert stack.client.post("/orders", json={"student_id": "s", "items": [{"item_id": 1, "qty": 1}]}
                             ).status_code == 422  # no idempotency key at all

    paid = stack.client.post("/payments", json={"order_id": order["order_id"], "amount": 115.0, "method": "upi"})
    assert paid.status_code == 201 and paid.json()["amount"] == 115.0
    again = stack.client.post("/payments", json={"order_id": order["order_id"], "amount": 115.0, "method": "upi"})
    assert again.status_code == 200
    unknown = stack.client.post("/payments", json={"order_id": str(uuid.uuid4()), "amount": 1, "method": "upi"})
    assert unknown.status_code == 404

    metrics = stack.client.get("/metrics").text
    assert 'rsl_orders_total{outcome="created",replica="api-test",zone="zone-a"}' in metrics
    assert 'route="/orders/{order_id}"' in metrics


def test_menu_is_cached_and_served_without_redis(stack: Stack) -> None:
    first = stack.client.get("/menu")
    assert first.status_code == 200 and len(first.json()) == 12
    assert first.json()[0] == {"item_id": 1, "name": "Bisi Bele Bath", "price": 45.0, "currency": "INR",
                               "vegetarian": True, "description": first.json()[0]["description"]}
    cached = stack.client.get("/menu")
    assert cached.headers["x-cache"] == "hit" and cached.json() == first.json()

    stack.redis.stop(signal.SIGKILL)
    try:
        degraded = stack.client.get("/menu")
        assert degraded.status_code == 200 and degraded.headers["x-cache"] == "bypass"
        assert degraded.json() == first.json()
        for _ in range(3):
            placed = stack.order()
            assert placed.status_code == 201, placed.text
        assert stack.ready()
    finally:
        stack.start_redis()
    # Once the breaker closes again the cache is used again.
    wait_until(lambda: stack.client.get("/menu").headers["x-cache"] in ("miss", "hit"), 5, "the cache to return")


def test_postgres_outage_makes_the_replica_unready_and_it_recovers(stack: Stack) -> None:
    before = stack.order()
    assert before.status_code == 201
    stack.stop_postgres()
    try:
        wait_until(lambda: not stack.ready(), 4, "/health/ready to fail after PostgreSQL stopped")
        failed = stack.order()
        assert failed.status_code == 503 and failed.headers["retry-after"] == "1"
        assert failed.json() == {"detail": "database unavailable, retry later"}
        assert stack.client.get("/health/live").status_code == 200
    finally:
        stack.start_postgres()
    wait_until(stack.ready, 10, "/health/ready to pass after PostgreSQL restarted")
    after = stack.order()
    assert after.status_code == 201, after.text
    assert after.json()["seq"] > before.json()["seq"]
    assert stack.client.get(f"/orders/by-key/{before.json()['idempotency_key']}").status_code == 200
    assert "Traceback" not in stack.app.log_tail(200), stack.app.log_tail(200)


def test_orders_follow_the_primary_to_a_promoted_standby(stack: Stack) -> None:
    """Runs last: it leaves the standby as the only primary."""
    stack.start_standby()
    acked = []
    for _ in range(20):
        placed = stack.order()
        assert placed.status_code == 201, placed.text
        acked.append(placed.json())
    wait_until(stack.standby_caught_up, 10, "the standby to replay the primary's WAL")

    stack.postgres.stop(signal.SIGQUIT)  # immediate shutdown: the primary is gone, as in a crash
    subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "promote", "-w",
                    "-D", str(stack.root / "pg" / "standby")], check=True, capture_output=True, timeout=30)

    wait_until(lambda: stack.order().status_code == 201, 10, "an order to succeed on the promoted standby")
    wait_until(stack.ready, 5, "/health/ready to pass against the new primary")
    after = stack.order()
    assert after.status_code == 201 and after.json()["seq"] > max(order["seq"] for order in acked)
    lookup = stack.client.post("/orders/lookup", json={"keys": [o["idempotency_key"] for o in acked]}).json()
    assert lookup["missing"] == []
    assert {key: found["order_id"] for key, found in lookup["found"].items()} == {
        o["idempotency_key"]: o["order_id"] for o in acked}
