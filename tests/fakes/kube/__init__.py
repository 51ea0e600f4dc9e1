"""The fake Kubernetes API server, split by noun: server (HTTP, routing, watch), store (objects,
resourceVersions, history, conflicts), workloads (Deployments, kubelet, graceful termination),
scheduler, disruption (PDBs, eviction), hpa, selectors. Import `FakeKubeApi` from here or from
tests.fakes.kube_api."""

from .server import FakeKubeApi, RecordedRequest
from .store import ApiError

__all__ = ["ApiError", "FakeKubeApi", "RecordedRequest"]
