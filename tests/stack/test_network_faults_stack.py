"""Issue 21 on the real local stack: the network proxy in the API <-> database path costs little when it
only passes bytes; each network fault shows on the path while it is on and is gone after its undo; and
slow-database (short profile) records the injected latency it measured and the P99 it caused."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

import pytest

from resilience.history import History
from resilience.targets.local import netproxy
from resilience.targets.local.netfaults import NFT_TABLE, ping
from resilience.targets.local.target import LocalTarget

from stack_helpers import assert_path_fault_showed
from test_experiments import check_evidence, run, values

pytestmark = pytest.mark.stack


def _routes(stack: LocalTarget) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    stats = netproxy.ask(stack.root / "netproxy" / "control.sock", {"op": "stats"})
    out = []
    for route in stats["routes"]:
        listen, upstream = route.split("=")
        out.append((netproxy._address(listen), netproxy._address(upstream)))
    return out


def test_the_pass_through_proxy_costs_little(stack: LocalTarget) -> None:
    (listen, upstream), *_ = _routes(stack)
    via, direct = [], []
    for _ in range(200):
        via.append(ping(*listen)[1] * 1000)
        direct.append(ping(*upstream)[1] * 1000)
    added = statistics.median(via) - statistics.median(direct)
    print(f"\nSSLRequest round trip incl. connect, median of 200: direct {statistics.median(direct):.3f} ms, "
          f"through the proxy {statistics.median(via):.3f} ms (+{added:.3f} ms)")
    assert added < 2.0


def _fault(stack: LocalTarget, fault: str, phase: str, **args: Any) -> dict[str, Any]:
    return stack.local.request("fault", timeout=60, fault=fault, phase=phase, path="api-database", **args)


def _nft_table_present() -> bool:
    return subprocess.run(["nft", "list", "table", "inet", NFT_TABLE], capture_output=True).returncode == 0


@pytest.mark.parametrize("fault,args", [("delay_network", {"delay_ms": 100, "jitter_ms": 20}),
                                        ("drop_packets", {"percent": 20}),
                                        ("blackhole_network", {}), ("reject_network", {})])
def test_each_network_fault_shows_on_the_path_and_is_gone_after_its_undo(stack: LocalTarget, fault: str,
                                                                        args: dict[str, Any]) -> None:
    injected = _fault(stack, fault, "inject", **args)
    try:
        during = _fault(stack, fault, "measure")
    finally:
        _fault(stack, fault, "undo")
    after = _fault(stack, fault, "measure")
    print(f"\n{fault}: mechanism {injected['mechanism']} (netem {injected['netem']}); "
          f"baseline {injected['baseline']}; during {during}; after {after}")
    assert_path_fault_showed(fault, injected["baseline"], during, after)
    assert not _nft_table_present()
    assert netproxy.ask(stack.root / "netproxy" / "control.sock", {"op": "stats"})["toxics"]["mode"] == "pass"


def test_slow_database_records_the_injected_latency_and_the_p99_it_causes(stack: LocalTarget, capsys: Any,
                                                                          tmp_path: Path) -> None:
    code, summary = run(capsys, tmp_path, "slow-database")
    assert code in (0, 1), summary  # pass or fail on its targets, never inconclusive: the delay took effect
    check_evidence(summary)
    records = History.load(Path(summary["run_dir"]) / "history.jsonl").sorted()
    [effect] = [r for r in records if r.source == "fault" and r.op == "effect"]
    assert effect.status == "ok", effect
    observed = effect.detail["observed"]  # type: ignore[index]
    assert 60 <= observed["injected_rtt_ms"] <= 160 and observed["mechanism"] == "proxy", observed
    v = values(summary)
    print(f"\nslow-database: injected {observed['injected_rtt_ms']} ms (path p50 {observed['during']['rtt_p50_ms']} ms, "
          f"baseline {observed['baseline']['rtt_p50_ms']} ms); P99 steady {v['p99_ms_steady']} ms, fault "
          f"{v['p99_ms_fault']} ms, recovery {v['p99_ms_recovery']} ms; availability fault {v['availability_fault']}, "
          f"longest {v.get('longest_request_ms')} ms, recovered after {v.get('recovered_after_fault_s')} s, "
          f"verdict {summary['verdict']}")
    assert v["p99_ms_fault"] > v["p99_ms_steady"] + 50, v  # the delay shows in the P99 it causes
    assert v["p99_ms"] is not None and "p99_ms" in (Path(summary["run_dir"]) / "result.json").read_text()


def test_a_sweep_prints_a_breaking_point_with_a_plot(stack: LocalTarget, capsys: Any, tmp_path: Path) -> None:
    from resilience.cli import main
    code = main(["sweep", "delay-database", "--from", "0ms", "--to", "300ms", "--steps", "2", "--keep-up", "--json",
                 "--quiet", "--reports-dir", str(tmp_path), "--seed", "3"])
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{"):])
    assert code == 0, result
    print("\nsweep:", json.dumps(result["points"]), "breaking point", result["breaking_point"])
    assert [p["size"] for p in result["points"]] == [0, 150, 300]
    assert all(p["injected"] is not None and p["injected"] >= 0.5 * p["size"] for p in result["points"][1:])
    assert result["breaking_point"] is not None and Path(result["plot"]).stat().st_size > 1000
