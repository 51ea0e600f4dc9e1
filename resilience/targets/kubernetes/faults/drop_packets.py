"""drop_packets on Kubernetes: percent of the packets from the API pods to the database dropped (Chaos Mesh action loss, tc netem).
Refused when Chaos Mesh's CRDs are absent; the rollback deletes the NetworkChaos (kubernetes/netchaos.py)."""

from __future__ import annotations

from ..netchaos import NetworkChaosFault
from . import FAULTS


@FAULTS.register
class DropNetwork(NetworkChaosFault):
    fault = "drop_packets"
    steps = ("delete_chaos_loss",)
