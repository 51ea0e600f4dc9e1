"""One writable primary at every moment: the primaries checker on hand-built pg_writable rounds."""

from resilience.checkers import compute
from resilience.checkers.primaries import measurements
from resilience.config import Targets
from resilience.history import Record


def poll(t: float, one: str, two: str) -> Record:
    members = {"postgres-1": one, "postgres-2": two}
    return Record(t, "platform", "pg_writable", "info",
                  detail={"members": members, "writable": [n for n, a in members.items() if a == "writable"]})


def partition_history(overlap: bool = False) -> list[Record]:
    """Rounds every 0.5 s; the cut at 10 s; postgres-1 demoted at 16 s, postgres-2 promoted at 18 s
    (or at 15 s, while postgres-1 is still writable, when `overlap`)."""
    records = [Record(0.0, "phase", "steady", "info"), Record(10.0, "phase", "fault", "info"),
               Record(10.0, "fault", "effect", "ok"), Record(30.0, "phase", "recovery", "info")]
    for i in range(80):
        t = i * 0.5
        one = "writable" if t < 16 else ("unreachable" if t < 17 else "replica")
        two = "writable" if t >= (15 if overlap else 18) else "replica"
        records.append(poll(t, one, two))
    return records


def by_name(ms) -> dict:
    return {m.name: m for m in ms}


def test_one_writable_primary_at_every_moment_is_met_and_the_handover_is_timed():
    result = by_name(measurements(partition_history(), fault_t=10.0))
    two = result["two_writable_primaries"]
    assert two.value == 0 and two.target == 0 and two.status == "met"
    assert two.detail["rounds"] == 80 and two.detail["rounds_with_an_unreachable_member"] == 2
    assert result["primary_demoted_s"].value == 6.0 and result["primary_demoted_s"].detail["old_primary"] == "postgres-1"
    assert result["new_primary_s"].value == 8.0


def test_two_writable_members_in_one_round_is_a_split_brain():
    result = by_name(compute(partition_history(overlap=True), targets=Targets(), measures=["primaries"]))
    two = result["two_writable_primaries"]
    assert two.value == 2 and two.status == "breached"  # rounds at 15.0 and 15.5
    assert two.detail["split_brain_rounds_t"] == [15.0, 15.5]


def test_without_rounds_the_check_is_inconclusive():
    result = by_name(measurements([Record(0.0, "phase", "steady", "info")], fault_t=None))
    assert result["two_writable_primaries"].status == "inconclusive"


def test_without_a_round_before_the_fault_the_first_round_names_the_old_primary():
    records = [r for r in partition_history() if not (r.op == "pg_writable" and r.t < 10.2)]
    result = by_name(measurements(records, fault_t=10.0))
    assert result["primary_demoted_s"].value == 6.0 and result["new_primary_s"].value == 8.0


def test_a_primary_that_never_demotes_is_reported_with_why():
    records = [poll(t / 2, "writable", "replica") for t in range(40)]
    result = by_name(measurements(records, fault_t=5.0))
    assert result["primary_demoted_s"].value is None
    assert "every round after the fault" in result["primary_demoted_s"].detail["reason"]
