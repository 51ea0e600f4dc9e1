"""The heal's release of a leader lock held by a member that cannot lead: etcd's compare-and-delete, against
a tiny etcd v3 JSON gateway stand-in that keeps one key (what the transaction compares is what counts)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from resilience.targets.local import leader_lock


class FakeEtcd:
    def __init__(self) -> None:
        self.kv: dict[str, str] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/v3/kv/range":
                    key = base64.b64decode(body["key"]).decode()
                    kvs = [{"key": body["key"], "value": base64.b64encode(fake.kv[key].encode()).decode()}] \
                        if key in fake.kv else []
                    reply: dict[str, Any] = {"kvs": kvs} if kvs else {}
                else:  # /v3/kv/txn: one VALUE EQUAL compare, one delete
                    [cmp] = body["compare"]
                    key = base64.b64decode(cmp["key"]).decode()
                    ok = cmp["target"] == "VALUE" and cmp["result"] == "EQUAL" and \
                        fake.kv.get(key) == base64.b64decode(cmp["value"]).decode()
                    if ok:
                        fake.kv.pop(key, None)
                    reply = {"succeeded": ok} if ok else {}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def etcd() -> Iterator[FakeEtcd]:
    fake = FakeEtcd()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_the_key_is_deleted_only_while_it_names_the_member(etcd: FakeEtcd) -> None:
    etcd.kv[leader_lock.LEADER_KEY] = "postgres-2"  # the new primary took the lock meanwhile
    assert leader_lock.holder([etcd.address]) == "postgres-2"
    assert leader_lock.release([etcd.address], "postgres-1") is False
    assert etcd.kv[leader_lock.LEADER_KEY] == "postgres-2"  # never the other member's lock
    etcd.kv[leader_lock.LEADER_KEY] = "postgres-1"  # the returning member overwrote it (Patroni 3.0.2)
    assert leader_lock.release([etcd.address], "postgres-1") is True
    assert leader_lock.holder([etcd.address]) is None


def test_an_unreachable_etcd_member_is_skipped_and_none_answering_releases_nothing(etcd: FakeEtcd) -> None:
    etcd.kv[leader_lock.LEADER_KEY] = "postgres-1"
    gone = "127.0.0.1:9"  # nothing listens on the discard port here
    assert leader_lock.holder([gone, etcd.address]) == "postgres-1"
    assert leader_lock.release([gone], "postgres-1") is False and leader_lock.holder([gone]) is None


def test_the_refusal_postgresql_logs_on_a_forked_off_timeline_is_counted() -> None:
    log = ("FATAL:  requested timeline 2 is not a child of this server's history\n"
           "DETAIL:  Latest checkpoint is at 0/8000028 on timeline 1\n"
           "FATAL:  requested timeline 2 is not a child of this server's history\n")
    assert leader_lock.cannot_lead(log) == 2 and leader_lock.cannot_lead("INFO: no action") == 0


def test_a_startup_that_panics_on_the_new_timelines_wal_is_counted_too() -> None:
    """The second way it showed (CI, primary-partition): the old primary holds the lock, restores the new
    timeline's WAL from the archive and finds no valid checkpoint in it, again and again."""
    attempt = ('LOG:  restored log file "0000000B000000000000004D" from archive\n'
               "LOG:  invalid xl_info in primary checkpoint record\n"
               "PANIC:  could not locate a valid checkpoint record\n"
               "LOG:  startup process (PID 5365) was terminated by signal 6: Aborted\n"
               "LOG:  terminating any other active server processes\n"
               "LOG:  shutting down due to startup process failure\n"
               "LOG:  database system is shut down\n")
    assert leader_lock.cannot_lead(attempt) == 1 and leader_lock.cannot_lead(attempt * 3) == 3
    refused = ("FATAL:  requested timeline 2 is not a child of this server's history\n"
               "LOG:  startup process (PID 7) exited with exit code 1\n"
               "LOG:  aborting startup due to startup process failure\n")
    assert leader_lock.cannot_lead(refused * 2) == 2  # one attempt counts once, whichever lines it logged
    assert leader_lock.cannot_lead("LOG:  database system is ready to accept connections\n") == 0
