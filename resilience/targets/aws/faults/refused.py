"""The faults the aws nemesis cannot inject, and why (what `resilience faults` prints)."""

from . import FAULTS

ON_EKS = "API replicas are pods on EKS: the kubernetes nemesis handles them (target aws does)"

FAULTS.refuse("kill_replicas", ON_EKS)
FAULTS.refuse("pause_replicas", ON_EKS)
FAULTS.refuse("hold_replication", "RDS gives no hold on its replication: the local target only")
