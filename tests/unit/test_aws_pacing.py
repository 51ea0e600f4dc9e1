"""The aws game-day pacer: a cool-down, then until RDS and ElastiCache are available again; the TestFailover quota."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from resilience.config import AwsSettings
from resilience.fault_registry import FaultCall
from resilience.targets.aws.observer import AwsSnapshot
from resilience.targets.aws.pacing import TEST_FAILOVER_EVENT, TEST_FAILOVER_QUOTA, AwsPacer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Services:
    """What the pacer reads: the observer's round, the replication group, ElastiCache's events (paged)."""

    def __init__(self, aws: AwsSettings, states: list[tuple[str, str]], events: int = 0) -> None:
        self.aws = aws
        self.states = states  # (cluster status, group status), one per round; the last one repeats
        self.events = events
        self.observer = self
        self.calls: list[dict[str, Any]] = []

    def read(self) -> AwsSnapshot:
        cluster, group = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return AwsSnapshot(0.0, {"Status": cluster}, {"db-1": {"DBInstanceStatus": "available"}},
                           {"Status": group, "NodeGroups": [{"NodeGroupId": "0001", "Status": group}]})

    def replication_group(self) -> dict[str, Any]:
        return {"NodeGroups": [{"NodeGroupId": "0001"}, {"NodeGroupId": "0002"}]}

    def client(self, service: str) -> "Services":
        return self

    def describe_events(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        page = 0 if "Marker" not in kwargs else 1
        mine = [{"Message": f"{TEST_FAILOVER_EVENT} 0001"}] * (self.events // 2 if page == 0 else self.events
                                                               - self.events // 2)
        return {"Events": mine + [{"Message": "Finished recovery for cache nodes 0001"}],
                **({"Marker": "next"} if page == 0 else {})}


AWS = AwsSettings(gameday_cooldown_s=60, settle_timeout_s=600)


def pacer(services: Services, clock: Clock) -> AwsPacer:
    return AwsPacer(services, sleep=clock.sleep, clock=lambda: clock.now)  # type: ignore[arg-type]


def test_the_next_experiment_waits_for_the_cool_down_and_for_everything_available() -> None:
    clock = Clock()
    services = Services(AWS, [("available", "available"), ("failing-over", "modifying"), ("available", "modifying"),
                              ("available", "available")])
    paced = pacer(services, clock)
    assert paced.before("db-failover", []) is None and clock.slept == []  # the first: no cool-down, all available
    assert paced.before("redis-failover", []) is None
    assert clock.slept == [60, 5.0, 5.0]  # the cool-down, then two rounds still busy


def test_a_platform_still_busy_after_the_timeout_skips_the_experiment_with_what_is_busy() -> None:
    clock = Clock()
    paced = pacer(Services(replace(AWS, settle_timeout_s=20), [("available", "modifying")]), clock)
    reason = paced.before("redis-failover", [])
    assert reason and "after 20 s" in reason and "replication group school-meals-cache is modifying" in reason
    assert "node group 0001 is modifying" in reason


def test_the_test_failover_quota_is_counted_from_the_last_24_hours_of_events() -> None:
    stop_cache = [FaultCall("stop_cache", {"mode": "failover"})]
    lose_zone = [FaultCall("lose_zone", {"zone": "a"})]
    direct = replace(AWS, injection="chaosaws")
    services = Services(direct, [("available", "available")], events=TEST_FAILOVER_QUOTA - 1)
    assert pacer(services, Clock()).before("redis-failover", stop_cache) is None  # 14 used + 1
    assert services.calls[0] == {"SourceType": "replication-group", "Duration": 1440}
    assert services.calls[1]["Marker"] == "next"  # every page read
    reason = pacer(services, Clock()).before("zone-failure", lose_zone)  # 14 used + 2 node groups
    assert reason and f"14 of the {TEST_FAILOVER_QUOTA} node groups" in reason
    fis = Services(AWS, [("available", "available")], events=TEST_FAILOVER_QUOTA)
    assert pacer(fis, Clock()).before("zone-failure", lose_zone) is None and fis.calls == []  # FIS calls none
