"""The faults the aws nemesis cannot inject, and why (what `resilience faults` prints)."""

from . import FAULTS

ON_EKS = "API replicas are pods on EKS: the kubernetes nemesis handles them (target aws does)"

FAULTS.refuse("kill_replicas", ON_EKS)
FAULTS.refuse("pause_replicas", ON_EKS)
FAULTS.refuse("hold_replication", "RDS gives no hold on its replication: the local target only")
FAULTS.refuse("corrupt_orders", "not yet: see issue 19 (a write into RDS through the app's credentials)")
FAULTS.refuse("lose_database", "not yet: see issue 19 (RDS instances are deleted only by a restore's swap)")
FAULTS.refuse("lose_region", "not yet: see issue 19 (cross-region automated backups, not a deletion)")
FAULTS.refuse("restore_database", "not yet: see issue 19 (RDS RestoreDBClusterToPointInTime and the swap)")
