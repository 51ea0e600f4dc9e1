"""A CloudNativePG operator for the fake API server: its `clusters` served only once "installed", recoveries that
take minutes and move through the documented phases, and the webhook's refusals.

Off by default: the API serves postgresql.cnpg.io/v1 (discovery and `clusters`) only after
`fake.install_cnpg()`, as a cluster serves it only once the operator's CRDs are installed; before that
`GET /apis/postgresql.cnpg.io/v1` is 404, as for any group the API server does not know.

What it does, after https://cloudnative-pg.io/documentation/current/ :
- recovery.md: a recovery "must be performed on a new cluster", bootstrapped with `bootstrap.recovery`
  whose `source` names an `externalClusters` entry (its `barmanObjectStore` and `serverName`); the
  validating webhook refuses a `source` no external cluster defines (422 Invalid here);
- the Cluster's `status.phase` goes "Setting up primary" (the `<name>-1-full-recovery` job restores the
  base backup and replays WAL: `recovery_s`, 300 fake seconds by default, the fake's assumption; the
  docs give no figure, it grows with the data), then "Creating a new replica" for each further
  instance (`replica_s`, 60, each), then "Cluster in healthy state" with `readyInstances` equal to
  `spec.instances` and `currentPrimary` `<name>-1`;
- a Cluster bootstrapped with `initdb` is healthy after `initdb_s` (30);
- `status.firstRecoverabilityPoint` / `lastSuccessfulBackup` of a cluster with a `spec.backup` are what
  the test sets (`set_backups`): the operator reports them from the object store.
Time is the fake's clock (tests/fakes/clock.py).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .store import ApiError, Key, Obj

if TYPE_CHECKING:
    from .server import FakeKubeApi

PREFIX = "apis/postgresql.cnpg.io/v1"
HEALTHY = "Cluster in healthy state"


class CnpgOperator:
    def __init__(self, fake: "FakeKubeApi", recovery_s: float = 300.0, replica_s: float = 60.0,
                 initdb_s: float = 30.0) -> None:
        self.fake = fake
        self.recovery_s, self.replica_s, self.initdb_s = recovery_s, replica_s, initdb_s
        self.phases: dict[str, list[str]] = {}  # cluster name -> the phases it went through

    def discovery(self) -> Obj:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "postgresql.cnpg.io/v1",
                "resources": [{"name": "clusters", "singularName": "cluster", "namespaced": True, "kind": "Cluster",
                               "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                              {"name": "backups", "singularName": "backup", "namespaced": True, "kind": "Backup",
                               "verbs": ["create", "delete", "get", "list"]}]}

    def validate(self, body: Obj) -> None:
        """The operator's validating webhook, for what a recovery needs."""
        spec = body.get("spec") or {}
        recovery = (spec.get("bootstrap") or {}).get("recovery")
        if recovery is None:
            return
        names = {c.get("name") for c in spec.get("externalClusters") or []}
        source = recovery.get("source")
        if source and source not in names:
            raise ApiError(422, "Invalid", f'admission webhook "vcluster.cnpg.io" denied the request: '
                                           f'spec.bootstrap.recovery.source: Invalid value: "{source}": '
                                           f"External cluster {source} not found")

    def set_backups(self, namespace: str, name: str, first_point: str, last_backup: str) -> None:
        self._status((PREFIX, "clusters", namespace, name), firstRecoverabilityPoint=first_point,
                     lastSuccessfulBackup=last_backup)

    def sync(self) -> None:
        """Start the life of every Cluster that has no phase yet (called in the fake's settle loop)."""
        for key, obj in list(self.fake.store.items("clusters", prefix=PREFIX)):
            if (obj.get("status") or {}).get("phase"):
                continue
            spec = obj.get("spec") or {}
            instances = int(spec.get("instances") or 1)
            name = key[3]
            if (spec.get("bootstrap") or {}).get("recovery") is not None:
                self._phase(key, "Setting up primary")
                self._later(self.recovery_s, key, lambda k=key, n=instances: self._primary_ready(k, n))
            else:
                self._phase(key, "Setting up primary")
                self._later(self.initdb_s, key, lambda k=key, n=instances: self._primary_ready(k, n))
            self.phases.setdefault(name, [])

    def _primary_ready(self, key: Key, instances: int) -> None:
        self._status(key, currentPrimary=f"{key[3]}-1", readyInstances=1, instances=instances)
        self._replicas(key, 1, instances)

    def _replicas(self, key: Key, ready: int, instances: int) -> None:
        if ready >= instances:
            self._phase(key, HEALTHY)
            return
        self._phase(key, "Creating a new replica")
        self._later(self.replica_s, key, lambda: (self._status(key, readyInstances=ready + 1),
                                                  self._replicas(key, ready + 1, instances)))

    # -- writing status under the fake's lock
    def _later(self, seconds: float, key: Key, fn: Any) -> None:
        def locked() -> None:
            with self.fake._lock:
                if self.fake.store.get(key) is not None:
                    fn()
        self.fake.clock.call_later(seconds, locked)

    def _phase(self, key: Key, phase: str) -> None:
        self._status(key, phase=phase)
        self.phases.setdefault(key[3], []).append(phase)

    def _status(self, key: Key, **fields: Any) -> None:
        with self.fake._lock:
            obj = self.fake.store.get(key)
            if obj is None:
                return
            updated = copy.deepcopy(obj)
            updated.setdefault("status", {}).update(fields)
            self.fake.store.put(key, updated)
