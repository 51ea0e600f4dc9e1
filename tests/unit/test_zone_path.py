"""The path between two zones (issue 21, `path: zone-zone`), without a stack: the nftables ruleset text, which zones
it joins, the registry's arguments, the local modules' requests, refusals and effects, the cloud targets' refusals,
and (as root, in scratch namespaces) that the rules hit exactly the two zones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from resilience.errors import HarnessError, UserError
from resilience.fault_registry import FAULTS as REGISTRY
from resilience.fault_registry import fault_call
from resilience.targets.fault_module import InjectContext
from resilience.targets.local import netfaults, zonepath
from resilience.targets.local.faults import FAULTS
from resilience.targets.local.nemesis import LocalNemesis
from resilience.targets.local.zonepath import ZONE_PATH, pair, subnet, zone_script
from test_network_faults import BASELINE, ScriptedSupervisor

ZONES = ["zone-a", "zone-b", "zone-c"]


def test_the_drop_table_samples_packets_both_ways_to_and_from_the_other_zone_only() -> None:
    script = zone_script("drop", "10.231.2.0/24", 30)
    assert script.startswith("table inet rsl-zonefault {}\ndelete table inet rsl-zonefault\n")
    assert 'ip daddr 10.231.2.0/24 numgen random mod 100 < 30 counter drop comment "dropped"' in script
    assert 'ip saddr 10.231.2.0/24 numgen random mod 100 < 30 counter drop comment "dropped"' in script
    assert script.count('counter comment "seen"') == 2
    assert "hook output" in script and "hook input" in script and "reject" not in script
    assert "numgen" not in zone_script("drop", "10.231.2.0/24", 100)  # nft refuses `mod 100 < 100`: all is a drop


def test_the_blackhole_drops_every_packet_and_the_reject_answers_with_resets_it_lets_through() -> None:
    blackhole = zone_script("blackhole", "10.231.3.0/24")
    assert 'ip daddr 10.231.3.0/24 counter drop comment "dropped"' in blackhole and "numgen" not in blackhole
    reject = zone_script("reject", "10.231.3.0/24")
    assert "ip saddr 10.231.3.0/24 meta l4proto tcp counter reject with tcp reset" in reject
    assert "reject with icmpx type port-unreachable" in reject and " drop" not in reject
    # the resets and unreachables the rules make cross the other chain: they must pass, or the reject is a blackhole
    assert reject.index("tcp flags & rst == rst accept") < reject.index("reject with tcp reset")
    with pytest.raises(HarnessError):
        zone_script("delay", "10.231.3.0/24")


def test_a_zones_subnet_is_its_slash_24() -> None:
    assert subnet("10.231.2.1") == "10.231.2.0/24"


def test_the_pair_defaults_to_the_primarys_zone_and_the_next_one() -> None:
    assert pair(ZONES, "zone-b", None, None) == ("zone-b", "zone-c")
    assert pair(ZONES, "zone-c", "primary", None) == ("zone-c", "zone-a")  # wraps around
    assert pair(ZONES, "zone-c", "zone-a", "zone-b") == ("zone-a", "zone-b")
    assert pair(ZONES, None, "zone-a", None) == ("zone-a", "zone-b")
    with pytest.raises(UserError, match="not a zone"):
        pair(ZONES, "zone-a", None, "zone-x")
    with pytest.raises(UserError, match="two different zones"):
        pair(ZONES, "zone-a", None, "zone-a")
    with pytest.raises(HarnessError, match="from_zone"):
        pair(ZONES, None, None, None)


def test_the_registry_takes_zone_zone_and_its_two_zones_only_with_it() -> None:
    assert ZONE_PATH in REGISTRY["delay_network"].argument("path").choices
    call = fault_call("drop_packets", {"path": ZONE_PATH, "percent": 30, "to_zone": "zone-c"})
    assert call.get("from_zone") is None and call.get("to_zone") == "zone-c"
    with pytest.raises(UserError, match="zone-zone only"):
        fault_call("reject_network", {"path": "api-database", "from_zone": "zone-a"})
    with pytest.raises(UserError, match="two different zones"):
        fault_call("blackhole_network", {"path": ZONE_PATH, "from_zone": "zone-a", "to_zone": "zone-a"})
    with pytest.raises(UserError, match="percent"):
        fault_call("drop_packets", {"path": ZONE_PATH})
    assert "from_zone" not in {a.name for a in REGISTRY["delay_network"].arguments}


def test_delay_and_bandwidth_between_zones_are_refused_at_plan_time_with_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfaults, "_netem", (False, "`qdisc add dev probe0 root netem delay 1ms` failed: "
                                                     "Error: Specified qdisc kind is unknown."))
    nemesis = LocalNemesis(ScriptedSupervisor({}))
    modules = FAULTS.load().modules
    delay = modules["delay_network"].refusal(nemesis, fault_call("delay_network", {"path": ZONE_PATH}))
    assert delay is not None and "sch_netem" in delay and "qdisc kind is unknown" in delay
    assert all(p in delay for p in ("api-database", "api-cache", "lb-replica"))
    bandwidth = modules["limit_bandwidth"].refusal(nemesis, fault_call("limit_bandwidth", {"path": ZONE_PATH}))
    assert bandwidth is not None and "htb" in bandwidth and "api-database" in bandwidth
    for fault, args in (("drop_packets", {"percent": 30}), ("blackhole_network", {}), ("reject_network", {})):
        assert modules[fault].refusal(nemesis, fault_call(fault, {"path": ZONE_PATH, **args})) is None
    unknown = fault_call("drop_packets", {"path": ZONE_PATH, "percent": 5, "from_zone": "zone-x"})
    assert "not a zone" in str(modules["drop_packets"].refusal(nemesis, unknown))


def _injected(fault: str, arguments: dict[str, Any], during: dict[str, Any]) -> tuple[Any, ScriptedSupervisor, Any]:
    platform = ScriptedSupervisor(during)
    nemesis = LocalNemesis(platform)
    call = fault_call(fault, {"path": ZONE_PATH, **arguments})
    module = FAULTS.load().modules[fault]
    assert "rsl-zonefault" in " ".join(module.plan(nemesis, call))
    step = module.inject(nemesis, call, InjectContext())
    return module.effect(nemesis, call, step), platform, (module, nemesis, step)


def test_loss_between_zones_is_seen_in_the_tables_counters_and_names_the_zones_in_each_request() -> None:
    effect, platform, (module, nemesis, step) = _injected(
        "drop_packets", {"percent": 30, "to_zone": "zone-c"}, {**BASELINE, "nft": {"seen": 200, "dropped": 61}})
    facts = effect.look()
    assert facts is not None and facts["observed_loss_pct"] == 30.5 and facts["path"] == ZONE_PATH
    assert platform.requests[0] == ("drop_packets/inject", {"path": ZONE_PATH, "percent": 30.0, "to_zone": "zone-c"})
    nemesis.rollback(step)
    assert platform.requests[-1] == ("drop_packets/undo", {"path": ZONE_PATH})
    nothing, _, _ = _injected("drop_packets", {"percent": 30}, {**BASELINE, "nft": {"seen": 200, "dropped": 0}})
    assert nothing.look() is None  # no packet dropped: the fault did not take effect


def test_blackhole_and_reject_between_zones_are_seen_in_the_connects_from_the_first_zone() -> None:
    held = {"samples": 3, "answered": 0, "timeout": 3, "reset": 0, "refused": 0, "closed": 0}
    assert _injected("blackhole_network", {}, held)[0].look() is not None
    refused = {"samples": 4, "answered": 0, "timeout": 0, "reset": 0, "refused": 4, "closed": 0}
    assert _injected("reject_network", {}, refused)[0].look() is not None
    assert _injected("reject_network", {}, held)[0].look() is None  # timeouts are a blackhole, not a reject


def test_the_cloud_targets_refuse_the_zone_path_naming_their_documented_mechanism() -> None:
    from resilience.targets.aws.faults import FAULTS as AWS_FAULTS
    from resilience.targets.kubernetes.faults import FAULTS as KUBE_FAULTS
    call = fault_call("drop_packets", {"path": ZONE_PATH, "percent": 5})
    kube = KUBE_FAULTS.load().modules["drop_packets"].refusal(SimpleNamespace(aws=None), call)
    assert kube is not None and "NetworkChaos" in kube and "topology.kubernetes.io/zone" in kube
    aws = AWS_FAULTS.load().modules["drop_packets"].refusal(SimpleNamespace(aws=None), call)
    assert aws is not None and "aws:network:disrupt-connectivity" in aws and "zone-zone" in aws


# -- the rules in real namespaces (root, nft and ip needed) -------------------------------------------
def _sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=10)


@pytest.fixture
def three_zones() -> Iterator[list[str]]:
    """Three scratch namespaces on a bridge (in a fourth), 10.98.k.1/16, each listening on port 9999."""
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        pytest.skip("needs root, nft and ip")
    tag = f"zpt{os.getpid() % 100000}"
    names, listeners = [f"{tag}{k}" for k in (1, 2, 3)], []
    try:
        _sh("ip", "netns", "add", f"{tag}b")
        _sh("ip", "-n", f"{tag}b", "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", f"{tag}b", "link", "set", "br0", "up")
        for k, ns in enumerate(names, 1):
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", f"{tag}b", "link", "add", f"v{k}", "type", "veth", "peer", "name", "in", "netns", ns)
            _sh("ip", "-n", f"{tag}b", "link", "set", f"v{k}", "master", "br0", "up")
            _sh("ip", "-n", ns, "addr", "add", f"10.98.{k}.1/16", "dev", "in")
            _sh("ip", "-n", ns, "link", "set", "in", "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")  # as zones.py does: a reset made for a local socket crosses lo
            listeners.append(subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                                               "import socket; s = socket.create_server(('0.0.0.0', 9999)); "
                                               "[s.accept()[0].close() for _ in iter(int, 1)]"]))
        for _ in range(50):  # until the listeners are up
            if all(zonepath.probe(ns, f"10.98.{k}.1", 9999, 1)["answered"] for k, ns in enumerate(names, 1)):
                break
            time.sleep(0.1)
        yield names
    finally:
        for p in listeners:
            p.kill()
            p.wait()
        for ns in [*names, f"{tag}b"]:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def _nft_in(ns: str, script: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, check=True, timeout=10)


def _connects(src: str, dst_zone: int) -> dict[str, Any]:
    return zonepath.probe(src, f"10.98.{dst_zone}.1", 9999, 3, timeout=0.3)


def test_in_namespaces_the_rules_hit_exactly_the_two_zones(three_zones: list[str]) -> None:
    a, b, c = three_zones
    _nft_in(a, zone_script("blackhole", "10.98.2.0/24"))
    assert _connects(a, 2)["timeout"] == 3 and _connects(b, 1)["timeout"] == 3
    assert _connects(c, 1)["answered"] == _connects(c, 2)["answered"] == _connects(a, 3)["answered"] == 3
    _nft_in(a, zone_script("reject", "10.98.2.0/24"))  # replaces the table
    rejected = [_connects(a, 2), _connects(b, 1)]
    assert [r["refused"] for r in rejected] == [3, 3]  # reset both ways, fast
    counts = zonepath.counters(a)
    assert counts["rejected"] >= 6 and counts["dropped"] == 0
    _nft_in(a, zone_script("drop", "10.98.2.0/24", 100))
    assert _connects(a, 2)["answered"] == 0 and zonepath.counters(a)["dropped"] > 0
    subprocess.run(["ip", "netns", "exec", a, "nft", "delete", "table", "inet", zonepath.NFT_TABLE], check=True)
    assert _connects(a, 2)["answered"] == 3 and zonepath.counters(a) == {}
