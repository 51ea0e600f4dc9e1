"""The faults the kubernetes nemesis cannot inject, and why (what `resilience faults` prints)."""

from . import FAULTS

NOT_ON_KUBERNETES = "the API replicas are pods: the kubelet and the Deployment controller own their processes"

FAULTS.refuse("stop_cache", "Redis is AWS ElastiCache, not a pod: use --target aws "
                            "(chaosaws.elasticache.actions.test_failover)")
FAULTS.refuse("pause_replicas", f"freezing processes needs the node: {NOT_ON_KUBERNETES} (use kill_replicas)")
FAULTS.refuse("hold_replication", "holding WAL senders needs the database host: the local target only")
FAULTS.refuse("corrupt_orders", "not yet: see issue 19 (the database is outside the cluster or a CloudNativePG one)")
FAULTS.refuse("lose_database", "not yet: see issue 19 (a CloudNativePG cluster's loss and bootstrap.recovery)")
FAULTS.refuse("lose_region", "not yet: see issue 19 (needs the backup repositories of the cluster's database)")
FAULTS.refuse("restore_database", "not yet: see issue 19 (CloudNativePG bootstrap.recovery with a recoveryTarget)")
