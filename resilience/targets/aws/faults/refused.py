"""The faults the aws nemesis cannot inject, and why (what `resilience faults` prints)."""

from . import FAULTS

ON_EKS = "API replicas are pods on EKS: the kubernetes nemesis handles them (target aws does)"

FAULTS.refuse("kill_replicas", ON_EKS)
FAULTS.refuse("pause_replicas", ON_EKS)
FAULTS.refuse("hold_replication", "RDS gives no hold on its replication: the local target only")
FAULTS.refuse("corrupt_orders", "the harness has no SQL path to RDS: the cluster is in private subnets, reached only by "
                                "the app's pods with the app's credentials; a corruption would be a Job running SQL "
                                "there, which is not built (the local target injects it)")
FAULTS.refuse("lose_database", "deleting the DB cluster (rds:DeleteDBCluster) cannot be undone by a rollback and, "
                               "unless its automated backups are retained, deletes them too; the harness does not do "
                               "it. Rehearse the recovery with restore_database (to=latest) beside the live cluster")
FAULTS.refuse("lose_region", "AWS FIS has no region-loss action, and a DB cluster's automated backups stay in its "
                             "region (cross-region automated backup replication is for DB instances); nothing here "
                             "can stand for the region's loss")
FAULTS.refuse("reject_network", "AWS FIS has no action that resets connections (its EKS pod network actions add latency, drop packets or blackhole ports: silent drops, which is blackhole_network); a TCP reset on the path is the local target only")
FAULTS.refuse("partition_primary", "RDS/Aurora manage their own failover: the primary cannot be partitioned from its consensus from outside (the local target only)")
FAULTS.refuse("starve_cpu", "the local target only for now: on EKS this is AWS FIS aws:eks:pod-cpu-stress (not built yet, issue 21; docs/gray-failures.md, 'On Kubernetes and AWS')")
FAULTS.refuse("limit_bandwidth", "the local target only for now: AWS FIS has no pod bandwidth action (its EKS pod network actions are latency and packet loss; issue 21; docs/gray-failures.md, 'On Kubernetes and AWS')")
FAULTS.refuse("pressure_memory", "the local target only for now: on EKS this is AWS FIS aws:eks:pod-memory-stress (not built yet, issue 21; docs/gray-failures.md, 'On Kubernetes and AWS')")
FAULTS.refuse("throttle_disk_io", "RDS storage cannot be throttled from outside; on EKS pods this is AWS FIS aws:eks:pod-io-stress (not built yet, issue 21; docs/gray-failures.md, 'On Kubernetes and AWS')")
