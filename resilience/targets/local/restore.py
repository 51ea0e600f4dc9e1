"""The restore runbook as code (issue 19): a whole database cluster brought back from a backup repository.

Done in the supervisor, on `StackParts`, one step after the other, each step a `recovery`
event (the run's history keeps them as `recovery` records, docs/recovery-records.md):

1. detect/target/decide: the disaster's recorded time, the recovery target (just before
   it, or the latest archived WAL), the backup set (`pgbackrest info`; pgBackRest compares
   whole seconds, so only a backup stopped in an earlier second serves a time target);
2. every member stopped (Patroni and PostgreSQL), the cluster removed from the DCS
   (`patronictl remove`'s keys: else `initialize` stays and Patroni waits forever), every
   data directory wiped;
3. `pgbackrest restore --set=<label>` into the first member (restore-start, restore-done);
4. WAL replayed by a private PostgreSQL on that data directory (own socket, no TCP, trust
   only for local postgres): promoted at the target (`--target-action=promote`) or at the
   end of the archive (replay-done, with the WAL bytes/segments and the last replayed
   commit); an archive that ended before the target is replayed to its end instead and
   said so (outcome `ended-early`, status fail);
5. Patroni started on it (it takes the existing data directory and becomes leader), the
   other members started empty (they clone from it), cluster-whole once all stream;
6. serving: the load balancer's /health/ready answers and the leader commits a write.

One restore runs at a time (`RUNNING`); a heal waits for a running one, then makes sure
the cluster is whole, re-bootstrapping from the latest backup when it is not (`ensure`).
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ...errors import HarnessError
from . import backup_config as bc
from . import db_members as db
from .pitr import ENDED_EARLY, REACHED, recovery_outcome, target_text
from .probes import http_get
from .scratch_pg import PG_BIN, chown_postgres, free_port, run_as_postgres
from .stack_parts import StackParts

RECOVERY = "recovery"  # the event source (resilience.history.RECOVERY)
RUNNING = threading.Lock()  # one restore at a time in this supervisor
LATEST = "latest"
RESTORE_TIMEOUT_S = 900.0  # pgbackrest restore and the replay, each (RTO target 15 min)
LEADER_TIMEOUT_S = 120.0
SEGMENT = 16 * 1024 * 1024
PGBACKREST_RECOVERY = re.compile(r"^\s*(restore_command|recovery_target\w*)\s*=")


class Runbook:
    """One restore of the cluster; `source` "recovery" for the experiment's, "platform" for a heal's."""

    def __init__(self, parts: StackParts, to: str, repo: int, source: str = RECOVERY) -> None:
        self.parts = parts
        self.to = to
        self.repo = repo
        self.source = source
        self.first = db.members(parts)[0]

    def say(self, op: str, status: str = "info", **detail: Any) -> None:
        if self.source == RECOVERY:
            self.parts.events(RECOVERY, op, status=status, **detail)
        else:
            self.parts.events("platform", f"heal-{op}", status=status, **detail)

    # -- the runbook ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        found = db.disaster(self.parts)
        disaster_wall = found["wall"] if found else time.time()
        self.say("detect", fault=found["fault"] if found else None,
                 disaster_m=found["m"] if found else None)
        target_wall = disaster_wall if self.to == "before-fault" else None
        target_m = found["m"] if (found and target_wall is not None) else None
        self.say("target", kind="time" if target_wall is not None else LATEST, target_m=target_m,
                 target_utc=_utc(target_wall) if target_wall is not None else None, repo=self.repo)
        flushed = self._flush_archive()
        sets = db.backups(self.parts, self.first, self.repo)
        chosen = db.choose(sets, target_wall)
        if chosen is None:
            raise HarnessError(f"repo{self.repo} holds no backup that stopped before "
                               f"{_utc(target_wall) if target_wall else 'now'} ({len(sets)} backups): nothing to "
                               f"restore from. Wait for the first backup (`resilience status`) before the fault.")
        self.say("decide", repo=self.repo, backup_label=chosen.label, backups=len(sets), archive_flushed=flushed)
        stopped = db.stop_all(self.parts)
        deleted = db.remove_from_dcs(self.parts)
        db.wipe(self.parts)
        self.parts.events("platform", "cluster-removed", members=stopped, dcs_keys=deleted)
        self.say("restore-start", repo=self.repo, backup_label=chosen.label, backup_type=chosen.type,
                 backup_stop_m=db.wall_to_monotonic(chosen.stop),
                 backup_age_s=round(disaster_wall - chosen.stop, 3))
        seconds = self._restore(chosen, target_wall)
        self.say("restore-done", status="ok", seconds=round(seconds, 3), bytes=chosen.size_bytes,
                 throughput_mb_s=round(chosen.size_bytes / 1e6 / max(seconds, 1e-3), 3))
        replay = self._replay(chosen, target_wall)
        self.say("replay-done", status="ok" if replay["outcome"] != ENDED_EARLY else "fail", **replay)
        whole = self._reform()
        db.resolve(self.parts)
        self._serving()
        return {"backup_label": chosen.label, "restore_s": round(seconds, 3), **replay, **whole}

    def _flush_archive(self) -> bool | None:
        """A primary still running (a logical corruption): its WAL up to now archived before it is stopped.

        With asynchronous archiving the last segment waits for `archive_timeout`; stopped
        before, the restore would end early, before the target (seen: 2.4 s of orders lost).
        `pgbackrest check` switches the WAL and waits until it is archived. None: no primary.
        """
        leader = self.parts.topology.find(_leader(self.parts) or "")
        if leader is None:
            return None
        h = db.home(self.parts, leader)
        out = run_as_postgres(bc.command(db.conf(self.parts, leader), "check"), timeout=120,
                              env={"PGPASSFILE": str(h / "pgbackrest" / "pgpass")})
        if out.returncode != 0:
            self.parts.events("platform", "archive-flush-failed", member=leader.name, code=out.returncode,
                              output=out.stdout.strip()[-400:])
        return out.returncode == 0

    def _restore(self, chosen: db.Backup, target_wall: float | None) -> float:
        data = db.empty_data_dir(self.parts, self.first)
        args = ["restore", f"--repo={self.repo}", f"--set={chosen.label}", f"--pg1-path={data}"]
        if target_wall is not None:
            target = datetime.fromtimestamp(target_wall, timezone.utc)
            args += ["--type=time", f"--target={target_text(target)}", "--target-exclusive",
                     "--target-action=promote"]
        t0 = time.monotonic()
        out = run_as_postgres(bc.command(db.conf(self.parts, self.first), *args), timeout=RESTORE_TIMEOUT_S)
        seconds = time.monotonic() - t0
        if out.returncode != 0:
            self.say("restore-done", status="fail", seconds=round(seconds, 3), bytes=0, throughput_mb_s=0.0,
                     error=f"pgbackrest restore exit {out.returncode}: {out.stdout.strip()[-400:]}")
            raise HarnessError(f"pgbackrest restore from repo{self.repo} ({chosen.label}) failed with exit "
                               f"{out.returncode}: {out.stdout.strip()[-400:]}")
        return seconds

    def _replay(self, chosen: db.Backup, target_wall: float | None) -> dict[str, Any]:
        """WAL replayed by a private PostgreSQL until it promotes; what it replayed; then stopped cleanly."""
        pg = PrivatePostgres(db.data_dir(self.parts, self.first), db.home(self.parts, self.first) / "restore")
        outcome = pg.recover()
        if outcome == ENDED_EARLY:  # the archive ended before the target: replay what there is, and say so
            pg.without_target()
            pg.recover()
        try:
            row = pg.sql("SELECT pg_last_wal_replay_lsn(), pg_walfile_name(pg_last_wal_replay_lsn()), "
                         "to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', "
                         "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                         f"pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{chosen.lsn_start or '0/0'}')").split("|")
        finally:
            pg.stop()
        strip_recovery_settings(db.data_dir(self.parts, self.first))
        last, first = db.wal_segment_number(row[1]), db.wal_segment_number(chosen.wal_start)
        segments = (last - first + 1) if last is not None and first is not None else 0
        return {"outcome": ENDED_EARLY if outcome == ENDED_EARLY else (REACHED if target_wall else LATEST),
                "wal_bytes": int(float(row[3] or 0)), "wal_segments": max(segments, 0),
                "replayed_to_utc": row[2] or None, "replayed_lsn": row[0],
                "replayed_to_m": _monotonic(row[2]) if row[2] else None}

    def _reform(self) -> dict[str, Any]:
        """Patroni on the restored member (it becomes leader), then the others (they clone from it)."""
        parts = self.parts
        parts.restart(self.first)
        leader = _wait(lambda: _leader(parts) == self.first.name, LEADER_TIMEOUT_S,
                       f"Patroni on {self.first.name} to lead the restored cluster")
        for c in db.members(parts)[1:]:
            db.empty_data_dir(parts, c)
            parts.restart(c)
        n = len(db.members(parts))
        ok = leader and _wait(lambda: _streaming(parts) >= n - 1, parts.settings.heal_timeout_s,
                              "the other members to clone and stream")
        self.say("cluster-whole", status="ok" if ok else "fail", members=_streaming(parts) + (1 if leader else 0),
                 leader=_leader(parts) or "")
        if not ok:
            raise HarnessError(f"the restored cluster did not re-form: leader {_leader(parts)}, "
                               f"{_streaming(parts)} of {n - 1} replicas streaming (see logs/postgres-*.log)")
        return {"members": n, "leader": self.first.name}

    def _serving(self) -> None:
        parts, url = self.parts, self.parts.processes.layout.url

        def answers() -> bool:
            if http_get(url.rstrip("/") + "/health/ready", 2.0)[0] != 200:
                return False
            leader = parts.topology.find(_leader(parts) or "")
            try:
                return leader is not None and bool(db.sql(parts, leader, "SELECT txid_current()", db="postgres"))
            except HarnessError:
                return False
        if _wait(answers, parts.settings.heal_timeout_s, "the API to serve from the restored cluster"):
            self.say("serving")


def ensure(parts: StackParts, why: str) -> dict[str, Any]:
    """A heal: wait for a running restore, put repo1 back, and make the cluster whole.

    With a leader, only the members that are down are started again (empty: they clone).
    Without one, and only after a disaster of ours (or with a data directory gone), the
    cluster is re-bootstrapped from the latest backup of repo1, else repo2, else a new
    empty cluster: whatever was cut short, a whole working cluster is left.
    """
    with RUNNING:
        back = db.bring_back_repo1(parts)
        if back:
            parts.events("platform", "repo1-back", path=str(db.repo1(parts)))
        if whole(parts):
            return {"whole": True, "repo1_back": back}
        ms = db.members(parts)
        if _leader(parts) is not None:
            for c in ms:
                if not parts.processes.running(c):
                    db.empty_data_dir(parts, c)
                    parts.restart(c)
            return {"whole": _wait(lambda: whole(parts), parts.settings.heal_timeout_s, "the members"),
                    "repo1_back": back}
        found = db.disaster(parts)
        if not (found and not found.get("resolved")) and all((db.data_dir(parts, c) / "PG_VERSION").exists()
                                                              for c in ms):
            return {"whole": False, "repo1_back": back, "left_to": "the heal (no disaster of ours)"}
        for repo in (1, 2):
            try:
                if db.backups(parts, ms[0], repo):
                    result = Runbook(parts, LATEST, repo, source="platform").run()
                    return {"whole": True, "repo1_back": back, "rebootstrapped_from": repo, **result}
            except HarnessError as exc:
                parts.events("platform", "heal-restore-failed", repo=repo, why=why, error=str(exc)[:500])
        db.resolve(parts)
        fresh(parts)  # no backup anywhere: a new, empty cluster (the data is gone; better than none)
        return {"whole": whole(parts), "repo1_back": back, "rebootstrapped_from": None}


def restore(parts: StackParts, to: str, repo: int) -> dict[str, Any]:
    """The experiment's restore (one at a time), of a disaster recorded and not yet restored from."""
    with RUNNING:
        found = db.disaster(parts)
        if found is None or found.get("resolved"):
            raise HarnessError("restore_database: no disaster to restore from (the fault before it was not injected, "
                               "or a restore already brought the cluster back)")
        return Runbook(parts, to, repo).run()


def whole(parts: StackParts) -> bool:
    """A running leader, every member running with a data directory, the replicas streaming."""
    ms = db.members(parts)
    if any(not parts.processes.running(c) or not (db.data_dir(parts, c) / "PG_VERSION").exists() for c in ms):
        return False
    return _leader(parts) is not None and _streaming(parts) >= len(ms) - 1


def fresh(parts: StackParts) -> None:
    """A new empty cluster: members stopped, DCS cleared, data wiped, Patroni started (it runs initdb)."""
    db.stop_all(parts)
    db.remove_from_dcs(parts)
    db.wipe(parts)
    for c in db.members(parts):
        parts.restart(c)
        _wait(lambda: _leader(parts) is not None, LEADER_TIMEOUT_S, "a leader")
    parts.events("platform", "heal-fresh-cluster", note="no backup in any repository: a new empty cluster")


# -- the private PostgreSQL that replays the WAL ---------------------------------------------------------
class PrivatePostgres:
    """PostgreSQL on the restored data directory: own socket directory, no TCP, local trust for postgres only."""

    def __init__(self, data: Path, work: Path) -> None:
        self.data = data
        self.work = work
        self.port = free_port()

    def recover(self) -> str:
        """Start it and wait until recovery ended: REACHED/LATEST (promoted) or ENDED_EARLY (it shut down)."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(mode=0o700)
        (self.work / "hba.conf").write_text("local all postgres trust\n")
        chown_postgres(self.work)
        opts = (f"-c listen_addresses='' -c port={self.port} -c unix_socket_directories='{self.work}' "
                f"-c hba_file='{self.work / 'hba.conf'}' -c synchronous_standby_names='' "
                f"-c cluster_name=restore")
        r = run_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts,
                             "-w", "-t", str(int(RESTORE_TIMEOUT_S)), "start"], timeout=RESTORE_TIMEOUT_S + 10)
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.log_text()
            if recovery_outcome(text) == ENDED_EARLY:
                self._wait_down()
                return ENDED_EARLY
            try:
                if self.sql("SELECT pg_is_in_recovery()") == "f":
                    return REACHED
            except HarnessError:
                if r.returncode != 0 and "FATAL" in text and not self._alive():
                    raise HarnessError(f"PostgreSQL did not replay the restored WAL: {text[-800:]}") from None
            time.sleep(0.3)
        raise HarnessError(f"the WAL replay did not end within {RESTORE_TIMEOUT_S:.0f} s: {self.log_text()[-600:]}")

    @property
    def log(self) -> Path:
        return self.work / "postgres.log"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def without_target(self) -> None:
        """After an archive that ended before the target: recover to its end instead (recovery.signal again)."""
        strip_recovery_settings(self.data, keep_restore_command=True)
        signal = self.data / "recovery.signal"
        signal.touch()
        chown_postgres(signal)
        self.log.unlink(missing_ok=True)

    def sql(self, query: str) -> str:
        r = run_as_postgres([str(PG_BIN / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(self.work),
                             "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-c", query], timeout=30)
        if r.returncode != 0:
            raise HarnessError(r.stdout.strip()[-300:])
        return r.stdout.strip()

    def _alive(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def _wait_down(self) -> None:
        _wait(lambda: not self._alive(), 30, "PostgreSQL to shut down after the archive ended")

    def stop(self) -> None:
        run_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"],
                        timeout=70)
        shutil.rmtree(self.work, ignore_errors=True)


def strip_recovery_settings(data: Path, keep_restore_command: bool = False) -> None:
    """Remove pgBackRest's recovery settings from postgresql.auto.conf: a replica cloned later copies the file,
    and a recovery target there would stop its replay."""
    auto = data / "postgresql.auto.conf"
    try:
        lines = auto.read_text().splitlines()
    except OSError:
        return
    kept = [line for line in lines if not (PGBACKREST_RECOVERY.match(line) and
                                           not (keep_restore_command and line.lstrip().startswith("restore_command")))]
    auto.write_text("\n".join(kept) + "\n")
    chown_postgres(auto)


# -- looks -----------------------------------------------------------------------------------------------
def _members_seen(parts: StackParts) -> list[dict[str, Any]]:
    return list((parts.monitor.refresh().observation.cluster or {}).get("members", []))


def _leader(parts: StackParts) -> str | None:
    return parts.monitor.refresh().observation.pg_leader


def _streaming(parts: StackParts) -> int:
    return sum(1 for m in _members_seen(parts)
               if m.get("role") in ("replica", "sync_standby", "standby") and m.get("state") in ("running", "streaming"))


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> bool:
    """Poll `condition` every 0.5 s until true (True) or `timeout` (False); `what` names it for the reader."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def _monotonic(utc: str) -> float:
    """An ISO UTC time ("...Z") on the monotonic clock (the history shows it as `<name>_t`, on the run clock)."""
    return db.wall_to_monotonic(datetime.fromisoformat(utc.replace("Z", "+00:00")).timestamp())


def _utc(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
