"""Contract: restore_database on a real account and cluster, the scenarios of tests/integration/test_aws_restore.py
and test_kubernetes_cnpg_restore.py, and a check of what the fakes assume.

FakeAws (tests/fakes/aws_restore.py) assumes things the RDS documentation does not say outright: which error
code a RestoreToTime outside the window gets (InvalidRestoreFault), and how far LatestRestorableTime lags
("typically within 5 minutes"). The cheap tests here ask real RDS, creating nothing: a restore into the
source's own identifier (DBClusterAlreadyExistsFault) and to a time after LatestRestorableTime. The full
restore creates a DB cluster and its writer (tens of minutes, billed by the hour) and needs the EKS
platform to swap the app: it runs only with RESILIENCE_CONTRACT_AWS_RESTORE=1 as well.

Kubernetes: on a cluster without CloudNativePG the restore is refused with the reason (what kind gives);
with RESILIENCE_CONTRACT_CNPG=1 the settings' CloudNativePG Cluster (`school-meals-db`, with
spec.backup.barmanObjectStore) is recovered into `school-meals-db-restored` and the app moved and back.

Skipped unless RESILIENCE_CONTRACT_AWS=1 / RESILIENCE_CONTRACT_CONTEXT (contract_support.py).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timezone
from typing import Any

import pytest

import contract_support as cs
from contract_support import needs_aws, needs_cluster
from resilience.fault_registry import fault_call

RESTORE_VAR = "RESILIENCE_CONTRACT_AWS_RESTORE"
CNPG_VAR = "RESILIENCE_CONTRACT_CNPG"
RESTORE_TIMEOUT_S = 4 * 3600.0

NEITHER = cs.cluster_skip_reason(os.environ) is not None and cs.aws_skip_reason(os.environ) is not None
pytestmark = [pytest.mark.skipif(NEITHER, reason=f"restore contract tests need a real cluster or account: set "
                                                 f"{cs.CONTEXT_VAR} and/or {cs.AWS_VAR}=1 (each test says which)"),
              pytest.mark.timeout(int(RESTORE_TIMEOUT_S) + 600)]


@pytest.fixture(scope="module")
def aws_settings() -> Any:
    from resilience.config import load_settings
    loaded = load_settings()
    if not loaded.aws.allowed_accounts:
        pytest.fail(f"{cs.AWS_VAR}=1 but the settings ({loaded.source}) allow no AWS account (aws.allowed_accounts)")
    return loaded


@pytest.fixture(scope="module")
def services(aws_settings: Any) -> Any:
    from resilience.targets.aws.services import AwsServices
    return AwsServices(aws_settings)


@needs_aws
def test_posture_reads_retention_the_window_and_cross_region_copies(services: Any) -> None:
    """Mirrors test_posture_shows_retention_the_lagging_window_and_no_cross_region_copy."""
    from resilience.targets.aws.restore import read_posture
    posture = read_posture(services)
    assert posture.retention_days >= 1, "automated backups are off on the DB cluster: no point-in-time restore"
    assert posture.earliest is not None and posture.latest is not None and posture.earliest <= posture.latest
    assert posture.lag_s is not None and 0 <= posture.lag_s < 15 * 60, \
        f"LatestRestorableTime lags {posture.lag_s} s: the fake assumes about 300 s (USER_PIT.html: within 5 minutes)"
    assert set(posture.replications) == {m["DBInstanceIdentifier"] for m in services.cluster()["DBClusterMembers"]}


@needs_aws
def test_rds_refuses_a_restore_into_an_existing_identifier_and_after_the_latest_time(services: Any) -> None:
    """Mirrors test_a_restore_into_an_existing_identifier_conflicts and test_rds_refuses_a_time_outside_the_window:
    what FakeAws answers is what RDS answers. Neither call creates anything."""
    from botocore.exceptions import ClientError
    rds, source = services.client("rds"), services.aws.rds_cluster
    with pytest.raises(ClientError) as conflict:
        rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier=source, SourceDBClusterIdentifier=source,
                                                UseLatestRestorableTime=True)
    assert conflict.value.response["Error"]["Code"] == "DBClusterAlreadyExistsFault"
    with pytest.raises(ClientError) as late:
        rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier=source, SourceDBClusterIdentifier=source,
                                                RestoreToTime=datetime.now(timezone.utc))
    # the fake answers InvalidRestoreFault for an out-of-window time; AWS may check the identifier first
    assert late.value.response["Error"]["Code"] in ("InvalidRestoreFault", "DBClusterAlreadyExistsFault")


@needs_cluster
@needs_aws
@pytest.mark.skipif(os.environ.get(RESTORE_VAR) != "1",
                    reason=f"a real RDS restore costs a DB cluster for tens of minutes: set {RESTORE_VAR}=1 (with "
                           f"{cs.AWS_VAR}=1 and {cs.CONTEXT_VAR})")
def test_a_restore_to_latest_swaps_the_app_and_the_rollback_deletes_it(settings: Any, contract_context: str) -> None:
    """Mirrors test_restore_to_latest_makes_a_tagged_cluster_through_the_documented_states_and_swaps_the_app."""
    from resilience.targets import make_target
    from resilience.targets.aws.restore import restored_name
    t = make_target("aws", settings, context=contract_context)
    services = t.services[0]
    name = restored_name(services.aws.rds_cluster)
    assert name in services.aws.allowed_resources, f"add {name!r} to aws.allowed_resources for this test"
    step = t.inject(fault_call("restore_database", {"to": "latest", "repo": 1}))
    try:
        aws_step = step if step.capability == "undo_restore" else None
        assert aws_step is not None and aws_step.arguments["swapped"]
        restored = services.client("rds").describe_db_clusters(DBClusterIdentifier=name)["DBClusters"][0]
        assert restored["Status"] == "available" and restored["Endpoint"] == aws_step.arguments["endpoint"]
        ops = [e.op for e in services.events_since(0.0) if e.source == "recovery"]
        assert ops[:6] == ["target", "decide", "restore-start", "restore-done", "replay-done", "cluster-whole"]
    finally:
        t.rollback(step)
    cs.wait_until(lambda: name not in {c["DBClusterIdentifier"] for c in
                                       services.client("rds").describe_db_clusters()["DBClusters"]
                                       if c.get("Status") != "deleting"}, 3600, f"{name} to be deleted", 30)


@needs_cluster
def test_without_cloudnativepg_the_restore_is_refused_and_with_it_a_recovery_cluster_moves_the_app(
        settings: Any, contract_context: str) -> None:
    """Mirrors test_without_cloudnativepg_crds_the_restore_is_refused_with_the_reason and
    test_a_recovery_to_before_the_fault_is_a_new_cluster_through_the_documented_phases_then_the_app_moves."""
    from resilience.targets import make_target
    from resilience.targets.kubernetes.cnpg import CnpgRestore
    cnpg = dataclasses.replace(settings, kubernetes=dataclasses.replace(settings.kubernetes, database="cloudnativepg"))
    t = make_target("kubernetes", cnpg, context=contract_context)
    restore = CnpgRestore(t.platform, t.platform.recovery)  # type: ignore[arg-type]
    if os.environ.get(CNPG_VAR) != "1":
        if restore.installed():
            pytest.skip(f"CloudNativePG is installed: set {CNPG_VAR}=1 to run a real recovery")
        assert "CRDs are absent" in (restore.refusal() or "")
        return
    step = t.inject(fault_call("restore_database", {"to": "latest", "repo": 1}))
    try:
        assert step.arguments["swapped"] and step.arguments["restored_cluster"] == restore.name
    finally:
        t.rollback(step)
