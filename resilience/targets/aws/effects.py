"""What shows that an RDS or ElastiCache failover took effect, and how long AWS documents it to take.

Both calls return at once; the failover comes later. RDS: the writer changes and
RDS-EVENT-0071 "Completed failover" is recorded; the outage began at RDS-EVENT-0073
(or -0072) "Started ... failover", whose time the effect reports. ElastiCache: the node
group's primary changes (TestFailover's "Failover from primary node ... completed").
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..clock import to_monotonic
from ..fault_module import Documented, Effect

if TYPE_CHECKING:
    from .nemesis import AwsNemesis

# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/multi-az-db-clusters-concepts-failover.html
RDS_CLUSTER_FAILOVER = Documented(35.0, "RDS Multi-AZ DB cluster failover: typically under 35 s (RDS User Guide)")
RDS_DEADLINE_S = 180.0  # the documented 35 s (a Multi-AZ instance: 60-120 s), with margin for DNS and events
# https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/AutoFailover.html: promotion, then the old primary recovers
CACHE_FAILOVER = Documented(30.0, "ElastiCache TestFailover: the replica is promoted in about 30 s, the old "
                                  "primary recovers over minutes (ElastiCache User Guide)")
CACHE_DEADLINE_S = 180.0
LOOK_BACK = timedelta(seconds=5)  # events dated a little before the effect was asked for still count


def rds_failover(nemesis: "AwsNemesis", writer_before: str | None) -> Effect:
    """The writer is no longer `writer_before` and RDS recorded the failover as completed."""
    services, cluster = nemesis.services, nemesis.aws.rds_cluster
    since = datetime.now(timezone.utc) - LOOK_BACK

    def look() -> dict[str, Any] | None:
        writer = services.roles().get("postgres")
        if not writer or writer == writer_before:
            return None
        events = services.client("rds").describe_events(SourceIdentifier=cluster, SourceType="db-cluster",
                                                        StartTime=since).get("Events", [])
        done = [e for e in events if str(e.get("Message", "")).startswith("Completed failover")]
        if not done:
            return None
        started = [e for e in events if str(e.get("Message", "")).startswith("Started")
                   and "failover" in str(e.get("Message", ""))]
        facts: dict[str, Any] = {"writer": writer, "was": writer_before, "completed": str(done[-1].get("Message"))}
        began = to_monotonic(started[0]["Date"]) if started else None
        if began is not None:
            facts.update(began_monotonic=began, started=str(started[0].get("Message")))
        return facts
    return Effect(f"the RDS writer changed from {writer_before} and RDS-EVENT-0071 (failover completed) was "
                  f"recorded", RDS_DEADLINE_S, look, in_call=False)


def cache_failover(nemesis: "AwsNemesis", node_group: str, before: str | None = None) -> Effect:
    """The node group's primary is no longer the one it had when the failover was asked for (`before`: read
    before the request, as a FIS experiment may act before this is asked; else read now)."""
    services = nemesis.services
    key = f"redis/{node_group}"
    before = before or services.roles().get(key)

    def look() -> dict[str, Any] | None:
        primary = services.roles().get(key)
        return {"node_group": node_group, "primary": primary, "was": before} if primary and primary != before else None
    return Effect(f"the ElastiCache primary of node group {node_group} changed from {before}", CACHE_DEADLINE_S, look,
                  in_call=False)
