"""The faults the kubernetes nemesis cannot inject, and why (what `resilience faults` prints)."""

from . import FAULTS

NOT_ON_KUBERNETES = "the API replicas are pods: the kubelet and the Deployment controller own their processes"

FAULTS.refuse("stop_cache", "Redis is AWS ElastiCache, not a pod: use --target aws "
                            "(chaosaws.elasticache.actions.test_failover)")
FAULTS.refuse("pause_replicas", f"freezing processes needs the node: {NOT_ON_KUBERNETES} (use kill_replicas)")
FAULTS.refuse("hold_replication", "holding WAL senders needs the database host: the local target only")
FAULTS.refuse("corrupt_orders", "needs SQL inside the database (RDS, or the CloudNativePG cluster) with the app's "
                                "credentials: not built (the local target injects it)")
FAULTS.refuse("lose_database", "deleting the CloudNativePG Cluster and its volumes cannot be undone by a rollback "
                               "(only recovered from its object store): the harness does not do it. Rehearse the "
                               "recovery with restore_database (to=latest)")
FAULTS.refuse("lose_region", "a cluster is one region: losing it takes the harness's own way in with it; the "
                             "second region is a CloudNativePG replica cluster this target does not model")
FAULTS.refuse("reject_network", "Chaos Mesh NetworkChaos has no reset action (partition drops packets silently: that is blackhole_network); a TCP reset on the path is the local target only")
FAULTS.refuse("partition_primary", "the local target only for now: on a cluster this is Chaos Mesh NetworkChaos partition of the CNPG primary (not built yet, issue 21; docs/gray-failures.md, 'On Kubernetes and AWS')")
FAULTS.refuse("starve_cpu", "the local target only for now: on a cluster this is Chaos Mesh StressChaos or a lower CPU limit on the Deployment (not built yet, issue 21; docs/gray-failures.md, 'On Kubernetes and AWS')")
FAULTS.refuse("limit_bandwidth", "the local target only for now: on a cluster this is Chaos Mesh NetworkChaos bandwidth (not built yet, issue 21; docs/gray-failures.md, 'On Kubernetes and AWS')")
FAULTS.refuse("pressure_memory", "the local target only for now: on a cluster this is Chaos Mesh StressChaos memory stressors (not built yet, issue 21; docs/gray-failures.md, 'On Kubernetes and AWS')")
FAULTS.refuse("throttle_disk_io", "the local target only for now: on a cluster this is Chaos Mesh IOChaos latency on the CNPG volume (not built yet, issue 21; docs/gray-failures.md, 'On Kubernetes and AWS')")
