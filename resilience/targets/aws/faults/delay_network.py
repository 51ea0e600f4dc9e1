"""delay_network on AWS: an AWS FIS experiment of aws:eks:pod-network-latency on the API pods towards the RDS endpoints (delayMilliseconds, jitterMilliseconds).
FIS reverts it when the action's duration ends; the rollback stops it sooner (aws/fis_network.py)."""

from __future__ import annotations

from ..fis_network import FisPodNetworkFault
from . import FAULTS


@FAULTS.register
class DelayNetwork(FisPodNetworkFault):
    fault = "delay_network"
    steps = ("stop_fis_delay",)
