"""Field ownership: managedFields, server-side apply and its conflicts.

Every write records which manager set which fields, in `metadata.managedFields` (one entry per
manager and operation, fieldsType FieldsV1: `{"f:spec": {"f:replicas": {}}}`):
- an **update** (POST, PUT, a merge or strategic-merge PATCH, a controller's write) makes its
  manager (`?fieldManager=`, else the client's User-Agent product, as the API server does; the
  HPA controller writes as `kube-controller-manager`) the owner of every field whose value it
  changed, taking it from the others; never a conflict;
- an **apply** (PATCH `application/apply-patch+yaml`, `fieldManager` required) owns exactly the
  fields in its body. A field another manager owns with a different value is a **conflict**: 409
  Conflict, "Apply failed with 1 conflict: conflict with \"kube-controller-manager\" using apps/v1:
  .spec.replicas", unless `force=true`, which takes the field over. A field with the same value is
  shared. A field the manager applied before and omits now is removed, unless someone else owns it.

So handing `spec.replicas` to the HPA works as on a cluster: apply the Deployment without
replicas, and an applier that still sends `spec.replicas` after the HPA has scaled gets a 409.

Simplifications: lists are atomic (one field; real SSA merges `containers`, `ports`... by key),
status is not tracked, a `managedFields` sent by a client is ignored.

Docs followed:
- https://kubernetes.io/docs/reference/using-api/server-side-apply/ (field management, conflicts,
  "Using server-side apply in a controller", "Transferring ownership": the HPA and spec.replicas)
- https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/#System (managedFields)
"""

from __future__ import annotations

import copy
from typing import Any

from .selectors import merge
from .store import ApiError, Obj, now_iso

Path = tuple[str, ...]
UNOWNED_META = {"name", "namespace", "resourceVersion", "uid", "generation", "creationTimestamp", "managedFields",
                "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"}
CONTROLLER_MANAGER = "kube-controller-manager"


def fields_of(obj: Any, prefix: Path = ()) -> set[Path]:
    """The leaf fields an object (or a patch) sets; lists and empty objects are leaves; null is not a field."""
    found: set[Path] = set()
    if not isinstance(obj, dict) or (not obj and prefix):
        return {prefix} if prefix and obj is not None else set()
    for key, value in obj.items():
        if not prefix and key in ("apiVersion", "kind", "status"):
            continue
        if prefix == ("metadata",) and key in UNOWNED_META:
            continue
        found |= fields_of(value, (*prefix, key))
    return found


def value_at(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _remove(obj: Obj, path: Path) -> None:
    parent = value_at(obj, path[:-1])
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def _encode(paths: set[Path]) -> Obj:
    tree: Obj = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def _decode(tree: Any, prefix: Path = ()) -> set[Path]:
    if not isinstance(tree, dict) or not tree:
        return {prefix} if prefix else set()
    found: set[Path] = set()
    for key, value in tree.items():
        if key.startswith("f:"):
            found |= _decode(value, (*prefix, key[2:]))
    return found


class Ownership:
    """The managedFields of one object as (manager, operation) -> (apiVersion, fields)."""

    def __init__(self, obj: Obj | None) -> None:
        self.entries: dict[tuple[str, str], tuple[str, set[Path]]] = {}
        for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
            key = (entry.get("manager", ""), entry.get("operation", "Update"))
            self.entries[key] = (entry.get("apiVersion", ""), _decode(entry.get("fieldsV1")))

    def take(self, manager: str, operation: str, api_version: str, fields: set[Path], add: bool = True) -> None:
        """`manager` owns `fields` (added to what it had, or instead of it); nobody else does."""
        for key, (version, owned) in self.entries.items():
            if key != (manager, operation):
                self.entries[key] = (version, owned - fields)
        _, mine = self.entries.get((manager, operation), (api_version, set()))
        self.entries[(manager, operation)] = (api_version, (mine | fields) if add else set(fields))

    def others(self, manager: str) -> list[tuple[str, str, set[Path]]]:
        return [(m, version, owned) for (m, op), (version, owned) in self.entries.items() if m != manager]

    def write(self, obj: Obj) -> Obj:
        stamp = now_iso()
        obj.setdefault("metadata", {})["managedFields"] = [
            {"manager": m, "operation": op, "apiVersion": version, "time": stamp, "fieldsType": "FieldsV1",
             "fieldsV1": _encode(owned)}
            for (m, op), (version, owned) in sorted(self.entries.items()) if owned]
        return obj


def _without_managed(obj: Obj) -> Obj:
    clean = copy.deepcopy(obj)
    (clean.get("metadata") or {}).pop("managedFields", None)
    return clean


def record_update(existing: Obj | None, result: Obj, manager: str) -> Obj:
    """An update by `manager`: it owns what it changed; fields that are gone are nobody's. Returns `result`."""
    ownership = Ownership(existing)
    before, after = fields_of(_without_managed(existing or {})), fields_of(_without_managed(result))
    changed = {p for p in after if existing is None or value_at(existing, p) != value_at(result, p)}
    for key, (version, owned) in list(ownership.entries.items()):
        ownership.entries[key] = (version, owned - (before - after))
    if changed:
        ownership.take(manager, "Update", str(result.get("apiVersion", "")), changed)
    return ownership.write(result)


def apply(existing: Obj, body: Obj, manager: str, force: bool) -> Obj:
    """Server-side apply of `body` by `manager` onto `existing`: the new object, or ApiError 409 on conflicts."""
    body = _without_managed(body)
    ownership = Ownership(existing)
    applied = fields_of(body)
    conflicts = sorted({(m, version, p) for m, version, owned in ownership.others(manager) for p in applied & owned
                        if value_at(existing, p) != value_at(body, p)})
    if conflicts and not force:
        lines = [f'conflict with "{m}" using {version}: .{".".join(p)}' for m, version, p in conflicts]
        message = (f"Apply failed with {len(lines)} conflict{'s' if len(lines) > 1 else ''}: " + "\n".join(lines))
        raise ApiError(409, "Conflict", message, {"causes": [
            {"reason": "FieldManagerConflict", "message": line, "field": "." + ".".join(p)}
            for line, (_, _, p) in zip(lines, conflicts)]})
    previous = ownership.entries.get((manager, "Apply"), ("", set()))[1]
    result = merge(_without_managed(existing), body)
    if force:
        ownership.take(manager, "Apply", str(body.get("apiVersion", "")), {p for _, _, p in conflicts})
    shared = set().union(*(owned for m, _, owned in ownership.others(manager))) if ownership.entries else set()
    for path in previous - applied - shared:
        _remove(result, path)
    ownership.entries[(manager, "Apply")] = (str(body.get("apiVersion", "")), applied)
    return ownership.write(result)


def created_by_apply(body: Obj, manager: str) -> Obj:
    """A create through apply: the manager owns every field it sent."""
    obj = _without_managed(body)
    ownership = Ownership(None)
    ownership.entries[(manager, "Apply")] = (str(body.get("apiVersion", "")), fields_of(obj))
    return ownership.write(obj)
