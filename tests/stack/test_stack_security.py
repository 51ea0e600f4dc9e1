"""The local stack closes its doors: another user on the machine can neither read its secrets nor
use its services (PostgreSQL, Redis, Sentinel, Patroni's REST API for changes)."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from resilience.targets.local.target import LocalTarget

pytestmark = pytest.mark.stack

# Runs as 'nobody'; prints one JSON object: what each attempt got.
ATTEMPTS = textwrap.dedent('''
    import json, socket, sys, urllib.request, urllib.error
    state_dir, pg, pg_home, redis_addr, sentinel_addr, patroni = sys.argv[1:7]
    out = {}

    def attempt(name, fn):
        try:
            out[name] = "ALLOWED: " + str(fn())[:200]
        except Exception as exc:
            out[name] = "refused: " + type(exc).__name__ + ": " + str(exc)[:200]

    def read(path):
        with open(path) as f:
            return f.read(50)

    def pg_startup(host, port, unix_dir=None):
        """A PostgreSQL startup packet as user postgres; the first answer byte: R (auth request) or E."""
        if unix_dir:
            s = socket.socket(socket.AF_UNIX)
            s.connect(unix_dir + "/.s.PGSQL." + port)
        else:
            s = socket.create_connection((host, int(port)), timeout=3)
        params = b"user\\0postgres\\0database\\0postgres\\0\\0"
        body = (196608).to_bytes(4, "big") + params
        s.sendall((len(body) + 4).to_bytes(4, "big") + body)
        kind = s.recv(1)
        code = int.from_bytes(s.recv(8)[4:8], "big") if kind == b"R" else None
        s.close()
        if kind == b"R" and code == 0:
            return "logged in without a password"
        raise PermissionError(f"server asked for authentication (message {kind!r}, method {code})")

    def redis_ping(address):
        host, port = address.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=3)
        s.sendall(b"PING\\r\\n")
        answer = s.recv(200).decode()
        s.close()
        if answer.startswith("+PONG"):
            return answer
        raise PermissionError(answer.strip())

    def patroni_restart():
        req = urllib.request.Request(patroni + "/restart", data=b"{}", method="POST")
        return urllib.request.urlopen(req, timeout=3).status

    host, port = pg.rsplit(":", 1)
    attempt("read secrets.json", lambda: read(state_dir + "/secrets.json"))
    attempt("read patroni.yml", lambda: read(pg_home + "/patroni.yml"))
    attempt("list the state directory", lambda: __import__("os").listdir(state_dir))
    attempt("postgres over TCP without a password", lambda: pg_startup(host, port))
    attempt("postgres over its Unix socket", lambda: pg_startup(None, port, pg_home))
    attempt("redis PING", lambda: redis_ping(redis_addr))
    attempt("sentinel PING", lambda: redis_ping(sentinel_addr))
    attempt("patroni POST /restart", patroni_restart)
    print(json.dumps(out))
''')


def test_an_unprivileged_user_can_neither_read_secrets_nor_use_the_services(stack: LocalTarget) -> None:
    status = stack.status()
    by_name = {c.name: c for c in status.components}
    pg, redis_server, sentinel = by_name["postgres-1"], by_name["redis-1"], by_name["sentinel-1"]
    patroni = f"http://{pg.address.split(':')[0]}:{stack.s.ports.patroni_base + 1}"
    # the system's Python: the harness's may live where 'nobody' cannot enter (e.g. under /root)
    proc = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", ATTEMPTS, str(stack.root),
                           pg.address, str(stack.root / "postgres-1"), redis_server.address, sentinel.address,
                           patroni], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    allowed = {name: what for name, what in outcomes.items() if what.startswith("ALLOWED")}
    assert allowed == {}, allowed
    assert "NOAUTH" in outcomes["redis PING"] and "NOAUTH" in outcomes["sentinel PING"], outcomes
    assert "401" in outcomes["patroni POST /restart"], outcomes
    assert "method 10" in outcomes["postgres over TCP without a password"], outcomes  # 10: SASL (scram-sha-256)
    print(json.dumps(outcomes, indent=1))
