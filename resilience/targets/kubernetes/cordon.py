"""The nodes a zone loss may cordon, the mark it leaves on each, and the guard that keeps the zone lost.

- **Allow-list**: only nodes matching `kubernetes.node_selector` (e.g. a node group's label) are
  cordoned; the zone's other nodes are reported and left alone.
- **Mark**: every node this run cordons carries the annotation `resilience.dev/cordoned-by: <mark>`,
  written in the same PATCH as the cordon. The mark is new for each injection and is in rollback.json.
  An undo (a rollback, or `resilience rollback` replaying a file) uncordons a node only if it carries
  that mark, so a node cordoned by someone else (no mark, or another) is never uncordoned, whatever a
  rollback.json says.
- **Guard**: while the zone is lost, a thread lists the zone's nodes every second and cordons (and
  marks) any new schedulable one: Cluster Autoscaler or Karpenter may start fresh nodes in the "lost"
  zone for the evicted pods. A new node registers with the `node.kubernetes.io/not-ready` taint and
  takes pods only once Ready (tens of seconds later), so a 1 s poll cordons it before the scheduler
  can use it; pods that got there anyway are evicted. Why this and not a node affinity on the pods:
  docs/targets.md, "Zone loss on Kubernetes".
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Callable

from ...config import Settings
from . import plan

CORDONED_BY = "resilience.dev/cordoned-by"
GUARD_POLL_S = 1.0
MERGE_PATCH = "application/merge-patch+json"


def new_mark() -> str:
    """This injection's mark: when, and a random part (two runs in one second do not share it)."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"


def allowed_selector(settings: Settings, zone: str) -> str:
    """The zone's nodes that may be cordoned: the zone label, plus kubernetes.node_selector if set."""
    extra = settings.kubernetes.node_selector
    return plan.zone_selector(zone) + (f",{extra}" if extra else "")


def zone_nodes(core: Any, settings: Settings, zone: str) -> tuple[dict[str, bool], list[str]]:
    """({allowed node: already cordoned}, [the zone's nodes outside kubernetes.node_selector])."""
    every = [n.metadata.name for n in core.list_node(label_selector=plan.zone_selector(zone)).items]
    allowed = {n.metadata.name: bool(n.spec and n.spec.unschedulable)
               for n in core.list_node(label_selector=allowed_selector(settings, zone)).items}
    return allowed, sorted(name for name in every if name not in allowed)


def cordon(core: Any, node: str, mark: str) -> None:
    """Cordon and mark in one PATCH: a node is never cordoned by us without our mark."""
    core.patch_node(node, {"metadata": {"annotations": {CORDONED_BY: mark}}, "spec": {"unschedulable": True}},
                    _content_type=MERGE_PATCH)


def uncordon_if_marked(core: Any, node: str, mark: str) -> bool:
    """Uncordon `node` and remove the mark, only if it carries `mark`; conditional on what was read (409: again)."""
    from kubernetes.client.rest import ApiException
    for _ in range(3):
        try:
            found = core.read_node(node)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        if not mark or (found.metadata.annotations or {}).get(CORDONED_BY) != mark:
            return False
        patch = {"metadata": {"resourceVersion": found.metadata.resource_version, "annotations": {CORDONED_BY: None}},
                 "spec": {"unschedulable": False}}
        try:
            core.patch_node(node, patch, _content_type=MERGE_PATCH)
            return True
        except ApiException as exc:
            if exc.status != 409:
                raise
    return False


def marked_in_zone(core: Any, zone: str, mark: str) -> list[str]:
    """The zone's nodes carrying `mark` (the guard's as well as the injection's)."""
    return sorted(n.metadata.name for n in core.list_node(label_selector=plan.zone_selector(zone)).items
                  if mark and (n.metadata.annotations or {}).get(CORDONED_BY) == mark)


def cordon_line(node: str) -> str:
    return (f"PATCH /api/v1/nodes/{node} (merge patch) {{\"metadata\": {{\"annotations\": {{\"{CORDONED_BY}\": "
            f"\"<mark>\"}}}}, \"spec\": {{\"unschedulable\": true}}}}")


def uncordon_lines(zone: str) -> list[str]:
    return [f"GET /api/v1/nodes?labelSelector={plan.zone_selector(zone)}: the nodes carrying {CORDONED_BY}=<mark> "
            f"(this injection's, from rollback.json); no other node is ever uncordoned",
            f"PATCH /api/v1/nodes/<node> (merge patch, conditional on its resourceVersion) removing {CORDONED_BY} "
            f"and setting spec.unschedulable false, for each of them"]


class ZoneGuard:
    """Cordons and marks new schedulable nodes in a lost zone until stopped (see the module docstring)."""

    def __init__(self, core: Any, settings: Settings, zone: str, mark: str, known: set[str], ours: int,
                 evict: Callable[[list[str]], object], poll_s: float = GUARD_POLL_S) -> None:
        self.core, self.settings, self.zone, self.mark = core, settings, zone, mark
        self.known = set(known)  # the zone's nodes at the start (cordoned by us or by someone else)
        self.ours = ours  # how many nodes this run has cordoned so far (kubernetes.max_cordoned_nodes counts them)
        self.evict = evict
        self.poll_s = poll_s
        self.cordoned: list[str] = []  # nodes that appeared and were cordoned
        self.outside: list[str] = []  # nodes that appeared outside kubernetes.node_selector: left alone
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"zone-guard-{zone}", daemon=True)

    def start(self) -> "ZoneGuard":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - a failed sweep is retried next second
                self.problems.append(f"{type(exc).__name__}: {exc}")

    def sweep(self) -> None:
        """One look at the zone: cordon, mark and drain each new schedulable node within the limits."""
        allowed, outside = zone_nodes(self.core, self.settings, self.zone)
        self.outside = sorted(set(self.outside) | {n for n in outside if n not in self.known})
        new = sorted(n for n, cordoned in allowed.items() if n not in self.known and not cordoned)
        limit = self.settings.kubernetes.max_cordoned_nodes
        for node in new:
            if self.ours >= limit:
                self.problems.append(f"node {node} appeared in the lost zone {self.zone} but the run has cordoned "
                                     f"kubernetes.max_cordoned_nodes ({limit}) nodes: left schedulable")
                self.known.add(node)
                continue
            cordon(self.core, node, self.mark)
            self.ours += 1
            self.known.add(node)
            self.cordoned.append(node)
        if new:
            self.evict(new)
