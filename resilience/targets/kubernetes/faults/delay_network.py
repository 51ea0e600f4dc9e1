"""delay_network on Kubernetes: delay_ms +- jitter_ms added to every packet from the API pods to the database (Chaos Mesh action delay, tc netem).
Refused when Chaos Mesh's CRDs are absent; the rollback deletes the NetworkChaos (kubernetes/netchaos.py)."""

from __future__ import annotations

from ..netchaos import NetworkChaosFault
from . import FAULTS


@FAULTS.register
class DelayNetwork(NetworkChaosFault):
    fault = "delay_network"
    steps = ("delete_chaos_delay",)
