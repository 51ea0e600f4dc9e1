"""The partition's nft table: what it cuts and what it leaves open (the stack test applies it)."""

import shutil
import subprocess

import pytest

from resilience.fault_registry import FAULTS
from resilience.targets.local.partition import NFT_TABLE, partition_script


SCRIPT = partition_script("10.231.1.1", ["10.231.2.1", "10.231.3.1"], [5433, 5434, 8009, 8010, 2380, 2379],
                          [2379, 2380, 2381])


def test_the_zone_is_cut_on_the_database_and_coordination_ports_both_ways_and_from_every_etcd_client_port():
    assert f"table inet {NFT_TABLE}" in SCRIPT
    assert 'tcp dport { 2379, 2380, 2381 } counter drop comment "etcd"' in SCRIPT
    peers = [line.strip() for line in SCRIPT.splitlines() if 'comment "peers"' in line]
    assert len(peers) == 4  # out and in, by destination and by source port
    assert all("{ 10.231.2.1, 10.231.3.1 }" in line and "{ 2379, 2380, 5433, 5434, 8009, 8010 }" in line
               for line in peers)
    assert "10.231.0.1" not in SCRIPT  # the root namespace (proxy, supervisor) keeps its path


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft not installed")
def test_nft_accepts_the_script():
    done = subprocess.run(["nft", "-c", "-f", "-"], input=SCRIPT, capture_output=True, text=True)
    if "Operation not permitted" in done.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN here")
    assert done.returncode == 0, done.stderr


def test_the_fault_is_registered_with_only_a_hold():
    assert [a.name for a in FAULTS["partition_primary"].arguments] == ["hold_s"]
