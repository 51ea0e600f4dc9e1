"""limit_bandwidth on the local stack: every connection on the path carries at most kbit_s each way, paced by the
network proxy in the API <-> database path (netproxy.py's `rate_kbps`, sent in 20 ms slices; `tbf` would shape a
whole link, and the path is the proxy's ports, not a link).

Seen when a known-size transfer through the path is limited: psql asks the primary, through the proxy and as the
API's own user, for a result of `transfer_bytes(kbit_s)` bytes (about one second's worth at the limit) and for one
byte; the bytes over the time difference is the throughput the path gave (connection set-up cancels out). The
throughput must be at most THROUGHPUT_SLACK times the limit; the baseline is measured the same way just before."""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING, Any

from ....errors import HarnessError
from ....fault_registry import FaultCall
from ..netfaults import NetworkFault
from ..services import DB_NAME, DB_USER, PG_BIN
from . import FAULTS

if TYPE_CHECKING:
    from ..stack_parts import StackParts

THROUGHPUT_SLACK = 1.5  # measured throughput up to this times the limit still counts as limited
MIN_TRANSFER, MAX_TRANSFER = 16 * 1024, 4 * 1024 * 1024
PSQL_TIMEOUT_S = 20.0


def transfer_bytes(kbit_s: float) -> int:
    """About one second's worth of bytes at the limit, within [16 KiB, 4 MiB]."""
    return int(min(MAX_TRANSFER, max(MIN_TRANSFER, kbit_s * 125.0)))


def throughput_kbit_s(size: int, big_s: float, small_s: float) -> float | None:
    """kbit/s of a `size`-byte result that took big_s against a one-byte one that took small_s (None: unmeasurable)."""
    spent = big_s - small_s
    return None if spent <= 0 else round(size * 8 / 1000.0 / spent, 1)


def limited(kbit_s: float, measured: float | None) -> bool:
    """Whether a measured throughput shows the limit (a throughput we could not measure shows nothing)."""
    return measured is not None and measured <= THROUGHPUT_SLACK * kbit_s


@FAULTS.register
class LimitBandwidth(NetworkFault):
    fault = "limit_bandwidth"
    steps = ("clear_bandwidth_limit",)
    paths = ("api-database",)  # its measurement is a psql transfer: the database path only
    what = "limit every connection to kbit_s each way"
    samples = 4

    def signal(self, call: FaultCall) -> str:
        return (f"a transfer on {call.get('path')} at most {THROUGHPUT_SLACK:g}x {call.get('kbit_s'):g} kbit/s "
                f"(psql through the path, measured)")

    def toxics(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"rate_kbps": request["kbit_s"]}

    def took_effect(self, call: FaultCall, baseline: dict[str, Any], during: dict[str, Any],
                    facts: dict[str, Any]) -> bool:
        measured = (during.get("transfer") or {}).get("kbit_s")
        facts["throughput_kbit_s"] = measured
        return limited(float(call.get("kbit_s")), measured)

    # -- in the supervisor -------------------------------------------------------------------------
    def start(self, parts: "StackParts", request: dict[str, Any]) -> dict[str, Any]:
        size = transfer_bytes(float(request["kbit_s"]))
        with parts.lock:
            parts.state[f"{self.fault}/size"] = size
        before = self.transfer(parts, size)
        out = super().start(parts, request)
        out["baseline"]["transfer"] = before
        return out

    def measure_now(self, parts: "StackParts", request: dict[str, Any]) -> dict[str, Any]:
        during = super().measure_now(parts, request)
        with parts.lock:
            size = int(parts.state.get(f"{self.fault}/size") or MIN_TRANSFER)
        during["transfer"] = self.transfer(parts, size)
        return during

    def stop(self, parts: "StackParts", request: dict[str, Any]) -> dict[str, Any]:
        with parts.lock:
            parts.state.pop(f"{self.fault}/size", None)
        return super().stop(parts, request)

    def transfer(self, parts: "StackParts", size: int) -> dict[str, Any]:
        """Time a `size`-byte and a one-byte result through the path; the throughput between them."""
        big, small = _psql_seconds(parts, size), _psql_seconds(parts, 1)
        return {"bytes": size, "big_s": round(big, 3), "small_s": round(small, 3),
                "kbit_s": throughput_kbit_s(size, big, small)}


def _psql_seconds(parts: "StackParts", size: int) -> float:
    """Seconds for psql to fetch `repeat('x', size)` from the primary through the proxy, as the API's user."""
    layout = parts.probes.layout
    hosts = ",".join(listen.address for listen, _ in layout.netproxy_routes())
    dsn = f"postgresql://{DB_USER}@{hosts}/{DB_NAME}?target_session_attrs=read-write&connect_timeout=5"
    env = {**os.environ, "PGPASSWORD": layout.secrets.postgres_app}  # never in argv: `ps` shows argv
    t0 = time.perf_counter()
    try:
        done = subprocess.run([str(PG_BIN / "psql"), "-X", "-At", dsn, "-c", f"SELECT repeat('x', {int(size)})"],
                              capture_output=True, env=env, timeout=PSQL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"limit_bandwidth: a {size}-byte transfer through the path took over "
                           f"{PSQL_TIMEOUT_S:g} s") from None
    spent = time.perf_counter() - t0
    if done.returncode != 0 or len(done.stdout) < size:
        raise HarnessError(f"limit_bandwidth: psql through the path failed: "
                           f"{done.stderr.decode(errors='replace').strip()[-300:]}")
    return spent
