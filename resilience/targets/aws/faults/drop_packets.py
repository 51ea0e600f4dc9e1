"""drop_packets on AWS: an AWS FIS experiment of aws:eks:pod-network-packet-loss on the API pods towards the RDS endpoints (lossPercent).
FIS reverts it when the action's duration ends; the rollback stops it sooner (aws/fis_network.py)."""

from __future__ import annotations

from ..fis_network import FisPodNetworkFault
from . import FAULTS


@FAULTS.register
class DropNetwork(FisPodNetworkFault):
    fault = "drop_packets"
    steps = ("stop_fis_loss",)
