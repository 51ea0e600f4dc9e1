"""blackhole_network on Kubernetes: every packet between the API pods and the database dropped silently (Chaos Mesh action partition: clients wait for their timeouts).
Refused when Chaos Mesh's CRDs are absent; the rollback deletes the NetworkChaos (kubernetes/netchaos.py)."""

from __future__ import annotations

from ..netchaos import NetworkChaosFault
from . import FAULTS


@FAULTS.register
class BlackholeNetwork(NetworkChaosFault):
    fault = "blackhole_network"
    steps = ("delete_chaos_partition",)
