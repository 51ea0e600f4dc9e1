"""The fake Kubernetes API server (tests/fakes/kube/): this module keeps the import path the tests use."""

from .kube.selectors import matches_fields, matches_labels, merge
from .kube.server import MUTATING, ZONE_LABEL, FakeKubeApi, RecordedRequest
from .kube.store import CLUSTER_SCOPED, KIND_OF, ApiError, Key, Obj

__all__ = ["CLUSTER_SCOPED", "KIND_OF", "MUTATING", "ZONE_LABEL", "ApiError", "FakeKubeApi", "Key", "Obj",
           "RecordedRequest", "matches_fields", "matches_labels", "merge"]
