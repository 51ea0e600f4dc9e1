"""blackhole_network on AWS: an AWS FIS experiment of aws:eks:pod-network-packet-loss with lossPercent 100 on the API pods towards the RDS endpoints (every packet silently dropped).
FIS reverts it when the action's duration ends; the rollback stops it sooner (aws/fis_network.py)."""

from __future__ import annotations

from ..fis_network import FisPodNetworkFault
from . import FAULTS


@FAULTS.register
class BlackholeNetwork(FisPodNetworkFault):
    fault = "blackhole_network"
    steps = ("stop_fis_blackhole",)
