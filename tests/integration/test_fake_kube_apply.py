"""The fake API server's field ownership: managedFields, server-side apply conflicts and force, the HPA's
hand-over of spec.replicas (https://kubernetes.io/docs/reference/using-api/server-side-apply/)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.fakes

from tests.fakes.kube import FakeKubeApi  # noqa: E402
from tests.fakes.kube.testing import api_client, deployment, hpa, namespace  # noqa: E402

NS = "meals"
APP = "web"
APPLY = "application/apply-patch+yaml"


@pytest.fixture
def fake() -> Iterator[FakeKubeApi]:
    with FakeKubeApi(manual_clock=True) as server:
        yield server


def apis(fake: FakeKubeApi) -> tuple[Any, Any]:
    from kubernetes import client
    c = api_client(fake)
    client.CoreV1Api(c).create_namespace(namespace(NS))
    return client.AppsV1Api(c), client.AutoscalingV2Api(c)


def apply(apps: Any, body: dict[str, Any], manager: str, force: bool = False) -> Any:
    return apps.patch_namespaced_deployment(APP, NS, body, field_manager=manager, force=force, _content_type=APPLY)


def owners(fake: FakeKubeApi) -> dict[str, dict[str, Any]]:
    found = fake.get("deployments", APP, NS)
    assert found is not None
    return {f"{e['manager']}/{e['operation']}": e["fieldsV1"] for e in found["metadata"]["managedFields"]}


def test_an_apply_owns_what_it_sent_and_an_update_what_it_changed(fake: FakeKubeApi) -> None:
    apps, _ = apis(fake)
    apply(apps, deployment(APP, 3), "deployer")
    mine = owners(fake)["deployer/Apply"]
    assert mine["f:spec"]["f:replicas"] == {} and "f:template" in mine["f:spec"]
    apps.patch_namespaced_deployment(APP, NS, {"spec": {"replicas": 4}})  # a merge patch: an Update
    entries = owners(fake)
    assert "f:replicas" not in entries["deployer/Apply"]["f:spec"]
    assert [k for k, v in entries.items() if k.endswith("/Update") and v["f:spec"].get("f:replicas") == {}]


def test_applying_replicas_the_hpa_owns_is_a_conflict_unless_forced(fake: FakeKubeApi) -> None:
    """After the HPA controller scaled the Deployment, an applier still sending spec.replicas gets the 409 a
    real API server sends; force takes the field back (and the HPA would fight it): hand it over instead."""
    from kubernetes.client.rest import ApiException
    apps, autoscaling = apis(fake)
    apply(apps, deployment(APP, 3), "deployer")
    autoscaling.create_namespaced_horizontal_pod_autoscaler(NS, hpa(APP, APP, min_replicas=6, max_replicas=20))
    assert apps.read_namespaced_deployment(APP, NS).spec.replicas == 6  # below min: to the bound at once
    assert owners(fake)["kube-controller-manager/Update"]["f:spec"] == {"f:replicas": {}}
    with pytest.raises(ApiException) as refused:
        apply(apps, deployment(APP, 3), "deployer")
    assert refused.value.status == 409
    status = json.loads(refused.value.body)
    assert status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "kube-controller-manager" using apps/v1: ' \
                                '.spec.replicas'
    apply(apps, deployment(APP, 6), "deployer")  # the same value: shared, no conflict
    apply(apps, deployment(APP, 3), "deployer", force=True)
    assert apps.read_namespaced_deployment(APP, NS).spec.replicas == 3
    assert "kube-controller-manager/Update" not in owners(fake)


def test_a_field_no_longer_applied_is_removed_unless_someone_else_owns_it(fake: FakeKubeApi) -> None:
    apps, _ = apis(fake)
    body = deployment(APP, 3)
    body["metadata"]["labels"] = {"app": APP, "tier": "web"}
    apply(apps, body, "deployer")
    without = deployment(APP, 3)
    apply(apps, without, "deployer")
    assert apps.read_namespaced_deployment(APP, NS).metadata.labels == {"app": APP}
    apps.patch_namespaced_deployment(APP, NS, {"metadata": {"labels": {"team": "meals"}}})  # someone else's
    body["metadata"]["labels"] = {"app": APP, "team": "meals"}
    apply(apps, body, "deployer")
    apply(apps, without, "deployer")
    assert apps.read_namespaced_deployment(APP, NS).metadata.labels == {"app": APP, "team": "meals"}


def test_apply_needs_a_field_manager(fake: FakeKubeApi) -> None:
    from kubernetes.client.rest import ApiException
    apps, _ = apis(fake)
    with pytest.raises(ApiException) as refused:
        apps.patch_namespaced_deployment(APP, NS, deployment(APP, 1), _content_type=APPLY)
    assert refused.value.status == 422
