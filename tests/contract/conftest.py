"""Fixtures of the contract suite: the operator's settings, a client, and the platform deployed on the cluster.

Fixtures run only for tests that are not skipped, so without RESILIENCE_CONTRACT_CONTEXT none of this
touches anything (see contract_support.py).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # contract_support, for the test modules

import contract_support as cs  # noqa: E402

HEALTHY_TIMEOUT_AFTER_FAILURE_S = 60.0  # once the platform did not come back, later tests fail sooner
_state = {"unhealthy": False}


@pytest.fixture(scope="session")
def contract_context() -> str:
    return cs.context()


@pytest.fixture(scope="session")
def settings(contract_context: str) -> Any:
    """The operator's settings file (RESILIENCE_CONFIG, or ./resilience.yaml): it must allow the context too."""
    from resilience.config import load_settings
    loaded = load_settings()
    if contract_context not in loaded.kubernetes.allowed_contexts:
        pytest.fail(f"{cs.CONTEXT_VAR}={contract_context} but the settings ({loaded.source}) do not list it in "
                    f"kubernetes.allowed_contexts: a contract run needs both. Point RESILIENCE_CONFIG at the settings "
                    f"file for this cluster (deploy/kind/run-contract.sh writes one for kind).")
    return loaded


@pytest.fixture(scope="session")
def api(contract_context: str) -> Any:
    """Our own client for the context: what an operator does by hand (cordon, create a PDB) goes through it."""
    from kubernetes import config
    path = os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config"))
    return config.new_client_from_config(config_file=path, context=contract_context)


@pytest.fixture(scope="session")
def backends(settings: Any) -> Any:
    """Where the API finds PostgreSQL and Redis: in-cluster services (kind) or RDS / ElastiCache (AWS)."""
    from resilience.targets.kubernetes.manifests import BackendEndpoints
    pg, redis = os.environ.get(cs.POSTGRES_HOST_VAR), os.environ.get(cs.REDIS_HOST_VAR)
    if pg and redis:
        return BackendEndpoints(postgres_host=pg, redis_host=redis)
    if cs.aws_skip_reason(os.environ) is None:
        from resilience.targets.aws.services import AwsServices
        return AwsServices(settings).backend_endpoints()
    pytest.fail(f"no database for the API: set {cs.POSTGRES_HOST_VAR} and {cs.REDIS_HOST_VAR} (in-cluster services, "
                f"as deploy/kind/run-contract.sh does), or {cs.AWS_VAR}=1 to use the RDS and ElastiCache endpoints.")


@pytest.fixture(scope="session")
def session_target(settings: Any, contract_context: str, backends: Any) -> Any:
    return cs.kubernetes_target(settings, contract_context, backends)


@pytest.fixture
def k8s(session_target: Any, api: Any, settings: Any) -> Iterator[Any]:
    """The platform deployed (`up` when it is not) and every replica ready before each test, as a `Target`."""
    if not session_target.status().running:
        session_target.up()
    timeout = HEALTHY_TIMEOUT_AFTER_FAILURE_S if _state["unhealthy"] else cs.HEALTHY_TIMEOUT_S
    try:
        cs.wait_until(lambda: cs.platform_healthy(api, settings.kubernetes.namespace), timeout,
                      f"every replica of the platform in {settings.kubernetes.namespace} to be ready before the test")
    except BaseException:
        _state["unhealthy"] = True
        raise
    _state["unhealthy"] = False
    yield session_target


@pytest.fixture
def reports_dir(tmp_path: Path) -> Path:
    """Where the CLI tests write run directories: $RESILIENCE_CONTRACT_REPORTS (CI uploads it) or a temp dir."""
    base = os.environ.get(cs.REPORTS_VAR)
    if not base:
        return tmp_path / "reports"
    path = Path(base) / time.strftime("%Y%m%dT%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path
