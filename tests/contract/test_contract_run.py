"""Contract: experiments from the CLI on a real cluster (`resilience run NAME --target T --context C --yes`).

What tests/stack/test_experiments.py shows on the local stack, and the fake-based end-to-end tests on
the fakes, here on a real cluster: a run directory with a verdict (pass, fail, or inconclusive with its
reason) whose evidence re-checks and verifies, the observations streamed into the history while the
fault was on, every node the run cordoned uncordoned again; and a fault the target refuses exits 2 in
the dry run and in the run alike. The platform is deployed by the `k8s` fixture first (`up` on the
`kubernetes` target alone resolves the database through AWS; see docs/eks-walkthrough.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import contract_support as cs
from contract_support import needs_aws, needs_cluster

pytestmark = [needs_cluster, pytest.mark.timeout(1800)]


def run_cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    from resilience.cli import main
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def history(run_dir: Path) -> list[list[Any]]:
    """history.jsonl: a header object, then one [t, source, op, status, latency, key, detail] array per record."""
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[1:] if line.strip()]


EVIDENCE = ("result.json", "history.jsonl", "rollback.json", "report.html", "report.pdf", "junit.xml")


def check_evidence(summary: dict[str, Any], target: str) -> Path:
    """The run's evidence stands on its own: sealed (manifest, ledger), re-checkable offline, every rollback done."""
    from resilience.evidence import verify
    from resilience.recheck import recheck
    assert summary["target"] == target and summary["verdict"] in ("pass", "fail", "inconclusive"), summary
    run_dir = Path(summary["run_dir"])
    missing = [name for name in EVIDENCE if not (run_dir / name).is_file()]
    assert not missing, f"{run_dir} lacks {missing}"
    integrity = verify(run_dir)
    assert integrity.ok, integrity
    assert recheck(run_dir)[1], "resilience check recomputed different measurements from the stored history"
    steps = json.loads((run_dir / "rollback.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["done"] * len(steps), steps
    return run_dir


def phase_start(records: list[list[Any]], phase: str) -> float:
    return next(r[0] for r in records if r[1] == "phase" and r[2] == phase)


@pytest.fixture
def reachable(k8s: Any) -> Any:
    """The platform, once its URL answers from here: a new ALB or NLB takes minutes (kind's Ingress: seconds)."""
    import httpx

    def answers() -> bool:
        url = k8s.platform.public_url()
        return bool(url) and httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
    cs.wait_until(answers, 600, "the load URL (kubernetes.url, or the Ingress / LoadBalancer status) to answer "
                                "/health/ready with 200 from here", interval_s=5)
    return k8s


def test_status_from_the_cli(k8s: Any, contract_context: str, capsys: Any) -> None:
    code, out, _ = run_cli(capsys, "status", "--target", "kubernetes", "--context", contract_context, "--json")
    data = json.loads(out)
    assert code == 0 and data["running"] and data["healthy"] and data["target"] == "kubernetes"
    assert {c["kind"] for c in data["components"]} == {"api"}


def test_the_dry_run_of_zone_failure_prints_the_plan(contract_context: str, capsys: Any) -> None:
    code, out, _ = run_cli(capsys, "run", "zone-failure", "--target", "kubernetes", "--context", contract_context,
                           "--profile", "short", "--dry-run")
    assert code == 0
    assert "PATCH /api/v1/nodes/<node> (merge patch)" in out and "/eviction" in out
    assert "removing resilience.dev/cordoned-by" in out


@pytest.mark.parametrize("experiment", ["pod-kill", "zone-failure"])
def test_an_experiment_runs_end_to_end_from_the_cli(experiment: str, reachable: Any, api: Any, contract_context: str,
                                                    reports_dir: Path, capsys: Any) -> None:
    from resilience.checkers.measurement import EXIT_CODES
    cordons_before = cs.cordoned(api)
    code, out, err = run_cli(capsys, "run", experiment, "--target", "kubernetes", "--context", contract_context,
                             "--profile", "short", "--yes", "--json", "--quiet", "--seed", "3",
                             "--reports-dir", str(reports_dir))
    assert "{" in out, f"exit {code}, no JSON summary; stderr:\n{err}"
    summary = json.loads(out[out.index("{"):])
    assert code == EXIT_CODES[summary["verdict"]], err
    run_dir = check_evidence(summary, "kubernetes")
    records = history(run_dir)
    fault_t, end_t = phase_start(records, "fault"), phase_start(records, "end")
    observed = [r for r in records if r[1] == "controller" and r[2] == "replicas" and fault_t <= r[0] <= end_t]
    assert observed, "no controller/replicas record between the fault and the end: the watches did not stream"
    if experiment == "zone-failure":
        node_events = [r[6] for r in records if r[1] == "platform" and r[2] == "node"]
        assert any(d["unschedulable"] for d in node_events), "the cordons were not observed"
        assert any(not d["unschedulable"] for d in node_events), "the uncordons were not observed"
    assert cs.cordoned(api) == cordons_before, "the rollback did not leave the nodes as they were"


def test_a_fault_the_target_refuses_exits_2_in_the_dry_run_and_in_the_run(
        k8s: Any, api: Any, settings: Any, contract_context: str, reports_dir: Path, capsys: Any) -> None:
    """redis-outage stops the cache, which is ElastiCache, not a pod: the kubernetes target refuses it, with the
    same words in the dry run and in the run, and the run touches nothing."""
    ns = settings.kubernetes.namespace
    args = ("run", "redis-outage", "--target", "kubernetes", "--context", contract_context, "--profile", "short")
    dry_code, _, dry_err = run_cli(capsys, *args, "--dry-run")
    pods, generation = cs.live_pod_names(api, ns), cs.deployment(api, ns).metadata.generation
    code, _, err = run_cli(capsys, *args, "--yes", "--reports-dir", str(reports_dir))
    assert dry_code == 2 and code == 2
    refusal = "stop_cache cannot run on the kubernetes target"
    assert refusal in dry_err and refusal in err
    assert cs.live_pod_names(api, ns) == pods and cs.deployment(api, ns).metadata.generation == generation


@needs_aws
def test_zone_failure_on_the_aws_target_fails_over_the_writer_from_the_cli(
        reachable: Any, api: Any, contract_context: str, reports_dir: Path, capsys: Any) -> None:
    """The composed target: the zone of the RDS writer loses its app pods and nodes, and the writer (and the
    ElastiCache primary, when there) fails over; the observer records the new writer as it happens."""
    from resilience.checkers.measurement import EXIT_CODES
    cordons_before = cs.cordoned(api)
    code, out, err = run_cli(capsys, "run", "zone-failure", "--target", "aws", "--context", contract_context,
                             "--profile", "short", "--yes", "--json", "--quiet", "--reports-dir", str(reports_dir))
    assert "{" in out, f"exit {code}, no JSON summary; stderr:\n{err}"
    summary = json.loads(out[out.index("{"):])
    assert code == EXIT_CODES[summary["verdict"]], err
    run_dir = check_evidence(summary, "aws")
    failovers = [r[6] for r in history(run_dir) if r[1] == "platform" and r[2] == "failover"]
    assert any(d.get("component") == "postgres" for d in failovers), "the RDS writer change was not observed"
    assert cs.cordoned(api) == cordons_before
