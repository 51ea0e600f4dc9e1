"""The faults the aws nemesis cannot inject, and why (what `resilience faults` prints)."""

from . import FAULTS

ON_EKS = "API replicas are pods on EKS: the kubernetes nemesis handles them (target aws does)"

FAULTS.refuse("kill_replicas", ON_EKS)
FAULTS.refuse("pause_replicas", ON_EKS)
FAULTS.refuse("hold_replication", "RDS gives no hold on its replication: the local target only")
FAULTS.refuse("delay_network", "the local target only for now: on EKS this is AWS FIS aws:eks:pod-network-latency/-packet-loss (not built yet, issue 21)")
FAULTS.refuse("drop_packets", "the local target only for now: on EKS this is AWS FIS aws:eks:pod-network-latency/-packet-loss (not built yet, issue 21)")
FAULTS.refuse("blackhole_network", "the local target only for now: on EKS this is AWS FIS aws:eks:pod-network-latency/-packet-loss (not built yet, issue 21)")
FAULTS.refuse("reject_network", "the local target only for now: on EKS this is AWS FIS aws:eks:pod-network-latency/-packet-loss (not built yet, issue 21)")
FAULTS.refuse("partition_primary", "RDS/Aurora manage their own failover: the primary cannot be partitioned from its consensus from outside (the local target only)")
FAULTS.refuse("starve_cpu", "the local target only for now: on EKS this is AWS FIS aws:eks:pod-cpu-stress (not built yet, issue 21)")
