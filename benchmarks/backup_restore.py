"""Benchmark (not a test): what backup and restore cost as the orders table grows (issue 19, item 6).

For each size (default 100 MB, 500 MB and 2 GB of orders) a scratch PostgreSQL 15 is seeded with
orders shaped like the platform's (random uuid, idempotency key, student, jsonb items with 1-4 menu
items and quantities, total, timestamps, and a payment row each: random enough that lz4 compresses
it like real data, unlike pgbench's blank-padded rows), archived with pgBackRest exactly as a stack
member is (its pgbackrest.conf from `backup_config.render_conf`: lz4, process-max=1, async archiving
into two repositories). Then, for that size:
  full backup into repo1: time and repository size;
  new orders after the backup until a known amount of WAL (default a quarter of the database size,
  at least 64 MB) is written and archived;
  the instance stopped (the disaster) and a point-in-time restore (`pitr.restore_to_time`, the
  harness's own) into a new scratch instance, to a time just after the last of those orders;
  restore time (files out of the repository) and throughput, WAL replay time and rate (PostgreSQL's
  own "redo starts at / redo done at ... elapsed" log lines), the rest of the start (consistency,
  promotion, end-of-recovery checkpoint), and an RTO estimate = restore + start (replay included).
The restored copy's order count is checked against the count at the target time.

Every scratch instance and folder is removed at the end, also on failure or Ctrl-C.
Needs root, PostgreSQL 15 and pgbackrest; uses no port or folder of the stack.
Usage: sudo .venv/bin/python benchmarks/backup_restore.py [--sizes 100,500,2048] [--wal-fraction 0.25] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from resilience.config import BackupSettings, StackSettings
from resilience.platform.db import MENU_SEED, SCHEMA_SQL
from resilience.targets.local import backup_config as bc
from resilience.targets.local.backups import prepare_repos, write_member_files
from resilience.targets.local.pitr import REACHED, first_usable_target, recovery_outcome, restore_to_time
from resilience.targets.local.scratch_pg import PG_BIN, ScratchPostgres, chown_postgres, run_as_postgres

MB = 1024 * 1024
DB = "meals"

# One batch of orders shaped like the platform's, each with its payment. `{n}` rows.
ORDERS_BATCH = """
WITH o AS (
  INSERT INTO orders (order_id, idempotency_key, student_id, items, total_paise, served_by, created_at)
  SELECT gen_random_uuid(), 'order-' || md5(g::text || random()::text),
         'student-' || lpad((random() * 40000)::int::text, 5, '0'), l.items, l.total,
         'api-' || (1 + g % 3), now() - random() * interval '90 days'
  FROM generate_series(1, {n}) g
  CROSS JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_object('item_id', i.item_id, 'qty', i.qty)) AS items,
           sum(i.qty * m.price_paise) AS total
    FROM (SELECT 1 + floor(random() * 12)::int AS item_id, 1 + floor(random() * 3)::int AS qty
          FROM generate_series(1, 1 + (g * 7919) % 4) WHERE g > 0) i
    JOIN menu_items m USING (item_id)) l
  RETURNING order_id, total_paise, created_at)
INSERT INTO payments (order_id, amount_paise, method, created_at)
SELECT order_id, total_paise, (ARRAY['upi', 'card', 'cash', 'wallet'])[1 + floor(random() * 4)::int], created_at FROM o
"""


def machine(where: Path) -> dict[str, Any]:
    """Cores, CPU model, memory and the disk under `where` (device, filesystem, rotational or not)."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    device, fstype = "?", "?"
    best = ""
    for line in Path("/proc/mounts").read_text().splitlines():
        dev, mount, fs = line.split()[:3]
        if str(where).startswith(mount) and len(mount) > len(best):
            best, device, fstype = mount, dev, fs
    rotational = Path(f"/sys/block/{Path(device).name}/queue/rotational")
    kind = f"rotational={rotational.read_text().strip()}" if rotational.exists() else "?"
    disk = shutil.disk_usage(where)
    return {"cores": os.cpu_count(), "cpu": model, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "disk": f"{device} ({fstype}, {kind}, {disk.free / 1024 ** 3:.0f} GB free)",
            "postgresql": run_as_postgres([str(PG_BIN / "postgres"), "--version"]).stdout.strip(),
            "pgbackrest": run_as_postgres([bc.PGBACKREST, "version"]).stdout.strip()}


class Bench:
    """One size: a live instance archiving into its own two repositories, all under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = StackSettings(state_dir=str(root / "state"), backup=BackupSettings(
            region2_path=str(root / "region2"), archive_timeout_s=10))
        (root / "state" / "logs").mkdir(parents=True)
        os.chmod(root / "state", 0o711)
        prepare_repos(self.settings)
        self.live = ScratchPostgres(root / "state" / "pg-1")
        self.restored: ScratchPostgres | None = None
        self.conf = Path()

    def start_live(self) -> None:
        """initdb, the stack's PostgreSQL settings, schema and menu; archiving is switched on after seeding."""
        pg = self.live
        pg.initdb()
        self.conf = write_member_files(self.settings, pg.home, pg.port, "unused")
        chown_postgres(pg.home)
        pg.configure(wal_level="replica", wal_log_hints="on", shared_buffers="64MB", archive_mode="off")
        pg.start()
        pg.sql(f"CREATE DATABASE {DB}")
        pg.sql(SCHEMA_SQL, db=DB)
        values = ", ".join(f"({i}, '{n}', '{d}', {p}, {str(v).lower()})" for i, n, d, p, v in MENU_SEED)
        pg.sql(f"INSERT INTO menu_items VALUES {values}", db=DB)

    def db_bytes(self) -> int:
        return int(self.live.sql(f"SELECT pg_database_size('{DB}')"))

    def seed(self, target_bytes: int) -> tuple[int, float]:
        """Orders until the database holds `target_bytes`; (orders, seconds)."""
        t, orders, batch = time.monotonic(), 0, 20_000
        while (size := self.db_bytes()) < target_bytes:
            if orders:  # aim at the target from the bytes per order so far, in batches of at most 200k
                batch = max(5_000, min(200_000, int((target_bytes - size) / (size / orders)) + 1))
            self.live.sql(ORDERS_BATCH.format(n=batch), db=DB, timeout=1800)
            orders += batch
        return orders, time.monotonic() - t

    def enable_archiving(self) -> None:
        """The member's archive settings (as Patroni sets them), a restart, the stanza."""
        self.live.sql("CHECKPOINT")
        self.live.configure(**bc.archive_parameters(self.conf, self.settings))
        self.stop_live_fast()
        self.live.start()
        self.pgbackrest("stanza-create")

    def stop_live_fast(self) -> None:
        run_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.live.data), "-m", "fast", "-w", "-t", "120", "stop"],
                        timeout=150)
        self.live.stop()  # nothing left to stop unless the fast stop failed

    def pgbackrest(self, *args: str, timeout: float = 3600) -> str:
        out = run_as_postgres(bc.command(self.conf, *args), timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"pgbackrest {' '.join(args)} failed ({out.returncode}): {out.stdout[-800:]}")
        return out.stdout

    def wal_after_backup(self, wal_bytes: int) -> tuple[int, int, float]:
        """New orders until `wal_bytes` of WAL were written since now; (orders, WAL bytes written, seconds)."""
        start_lsn = self.live.sql("SELECT pg_current_wal_lsn()")
        t, written, orders = time.monotonic(), 0, 0
        while written < wal_bytes:
            self.live.sql(ORDERS_BATCH.format(n=20_000), db=DB, timeout=600)
            orders += 20_000
            written = int(self.live.sql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start_lsn}')"))
        return orders, written, time.monotonic() - t

    def wait_archived(self, timeout: float = 600) -> None:
        """Switch to a new segment and wait until the one holding everything so far is in the repositories."""
        segment = self.live.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        self.live.sql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + timeout
        while self.live.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
            if time.monotonic() > deadline:
                raise RuntimeError(f"WAL segment {segment} not archived within {timeout:.0f} s")
            time.sleep(0.2)

    def cleanup(self) -> None:
        """Stop both instances by PID, wait for their pgBackRest helpers, remove the folder."""
        for pg in (self.restored, self.live):
            if pg is not None:
                try:
                    pg.stop()
                except Exception as exc:  # keep cleaning up
                    print(f"  (stopping {pg.data}: {exc})", file=sys.stderr)
        wait_for_helpers(str(self.root))
        shutil.rmtree(self.root, ignore_errors=True)


def wait_for_helpers(marker: str, timeout: float = 30.0) -> None:
    """pgBackRest's async archive processes outlive PostgreSQL briefly: wait for ours (by PID), then end them."""
    deadline = time.monotonic() + timeout
    while True:
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                        pids.append(int(proc.name))
                except OSError:
                    continue
        if not pids:
            return
        if time.monotonic() > deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            return
        time.sleep(0.2)


REDO_STARTS = re.compile(r"redo starts at ([0-9A-F]+/[0-9A-F]+)")
REDO_DONE = re.compile(r"redo done at ([0-9A-F]+/[0-9A-F]+) system usage: .*elapsed: ([0-9.]+) s")


def lsn_bytes(lsn: str) -> int:
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def replay_from_log(log_text: str) -> tuple[int, float]:
    """(WAL bytes replayed, replay seconds) from PostgreSQL's own redo log lines."""
    starts, done = REDO_STARTS.search(log_text), REDO_DONE.search(log_text)
    if not starts or not done:
        raise RuntimeError("no 'redo starts' / 'redo done' lines in the restored instance's log")
    return lsn_bytes(done.group(1)) - lsn_bytes(starts.group(1)), float(done.group(2))


def run_size(root: Path, size_mb: int, wal_fraction: float) -> dict[str, Any]:
    bench = Bench(root)
    try:
        bench.start_live()
        orders, seed_s = bench.seed(size_mb * MB)
        db_bytes = bench.db_bytes()
        print(f"  seeded {orders:,} orders ({db_bytes / MB:.0f} MB) in {seed_s:.0f} s", flush=True)
        bench.enable_archiving()
        t = time.monotonic()
        bench.pgbackrest("backup", "--type=full", "--repo=1")
        backup_s = time.monotonic() - t
        full = bc.parse_info(bench.pgbackrest("info", "--output=json", "--repo=1"))[1].last("full")
        assert full is not None
        print(f"  full backup {backup_s:.1f} s, repository {full.repo_bytes / MB:.0f} MB", flush=True)
        wal_orders, wal_bytes, wal_s = bench.wal_after_backup(max(64 * MB, int(db_bytes * wal_fraction)))
        time.sleep(max(0.0, first_usable_target(full.stop) - time.time()))  # pgBackRest's whole-second rule
        target = datetime.now(timezone.utc)
        expected = orders + wal_orders  # counted, not scanned: a scan would set hint bits, WAL-logged as full pages
        time.sleep(0.01)
        bench.live.sql(ORDERS_BATCH.format(n=1), db=DB)  # a commit after the target: recovery stops before it
        bench.wait_archived()
        print(f"  {wal_bytes / MB:.0f} MB of WAL after the backup in {wal_s:.0f} s, archived", flush=True)
        bench.stop_live_fast()  # the disaster: the live instance is gone
        bench.restored = restored = ScratchPostgres(root / "restored")
        restored.prepare_home()
        t = time.monotonic()
        restore_to_time(bench.conf, restored.data, target, repo=1, timeout=3600)
        restore_s = time.monotonic() - t
        restored.configure(archive_mode="off")
        t = time.monotonic()
        restored.start(timeout=600)
        restored.wait_promoted(timeout=3600)
        start_s = time.monotonic() - t
        log = (restored.home / "postgres.log").read_text(errors="replace")
        if recovery_outcome(log) != REACHED:
            raise RuntimeError(f"recovery did not stop at the target:\n{restored.log_tail()}")
        replayed, replay_s = replay_from_log(log)
        got = int(restored.sql("SELECT count(*) FROM orders", db=DB))
        if got != expected:
            raise RuntimeError(f"the restored copy holds {got} orders, {expected} were committed before the target")
        return {"size_mb": size_mb, "orders": orders, "db_mb": db_bytes / MB, "seed_s": seed_s,
                "backup_s": backup_s, "backup_mb": full.size_bytes / MB, "repo_mb": full.repo_bytes / MB,
                "wal_written_mb": wal_bytes / MB, "restore_s": restore_s,
                "restore_mb_s": full.size_bytes / MB / restore_s, "wal_replayed_mb": replayed / MB,
                "replay_s": replay_s, "replay_mb_s": replayed / MB / replay_s if replay_s else None,
                "start_s": start_s, "other_start_s": start_s - replay_s, "rto_s": restore_s + start_s,
                "orders_restored": got}
    finally:
        bench.cleanup()


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| database | full backup | repository (lz4) | restore (throughput) | WAL replayed (written after "
            "the backup) | replay (rate) "
            "| rest of start | RTO estimate |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        rate = f"{r['replay_mb_s']:.0f} MB/s" if r["replay_mb_s"] else "-"
        lines.append(f"| {r['db_mb']:,.0f} MB ({r['orders']:,} orders) | {r['backup_s']:.1f} s | {r['repo_mb']:,.0f} MB "
                     f"| {r['restore_s']:.1f} s ({r['restore_mb_s']:.0f} MB/s) | {r['wal_replayed_mb']:,.0f} MB "
                     f"({r['wal_written_mb']:,.0f} MB) "
                     f"| {r['replay_s']:.1f} s ({rate}) | {r['other_start_s']:.1f} s | {r['rto_s']:.0f} s |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,500,2048", help="database sizes in MB, comma-separated")
    parser.add_argument("--wal-fraction", type=float, default=0.25,
                        help="WAL written after the backup, as a fraction of the database size (at least 64 MB)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists() or not shutil.which("pgbackrest"):
        print("needs root, PostgreSQL 15 and pgbackrest (scripts/bootstrap.sh installs them)", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill cleans up like Ctrl-C
    info = machine(Path(tempfile.gettempdir()))
    print(f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gb']} GB memory, disk {info['disk']}; "
          f"{info['postgresql']}, {info['pgbackrest']}")
    rows = []
    try:
        for size in sizes:
            print(f"{size} MB:", flush=True)
            root = Path(tempfile.mkdtemp(prefix="rsl-drbench-"))
            os.chmod(root, 0o755)
            rows.append(run_size(root, size, args.wal_fraction))
    except KeyboardInterrupt:
        print("interrupted: scratch instances stopped and folders removed", file=sys.stderr)
        return 130
    finally:
        if rows:
            print(table(rows))
    print("RTO estimate = restore + start (WAL replay, consistency, promotion); add detection and the cluster "
          "re-forming for the stack's RTO. The point-in-time target is at least one whole second after the "
          "backup's stop (pitr.first_usable_target: pgBackRest compares whole seconds).")
    if args.json:
        print(json.dumps({"machine": info, "sizes": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
