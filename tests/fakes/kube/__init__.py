"""The fake Kubernetes API server, split by noun: server (HTTP, routing), watch, store (objects,
resourceVersions, history, conflicts), workloads (Deployments, kubelet, graceful termination), jobs,
scheduler, disruption (PDBs, eviction), hpa, selectors, proxy (service proxy, pod logs) and
process_kubelet (pods as local processes, when enabled). Import `FakeKubeApi` from here or from
tests.fakes.kube_api."""

from .server import FakeKubeApi, RecordedRequest
from .store import ApiError

__all__ = ["ApiError", "FakeKubeApi", "RecordedRequest"]
