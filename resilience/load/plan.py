"""The run's load plan, decided once: which scenario, how many Locust processes, and where they run.

`plan_load` decides it when the run is built (`runbuild.build_run`); the run, the load factory and
the result read the `LoadPlan` instead of deciding again. Also here: what a run needs of a load
(`LoadHandle`) and how one is made (`LoadFactory`), so that `load/` never imports the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Protocol

from ..config import Settings
from ..errors import UserError
from ..history import Record
from .shape import IN_CLUSTER_WORKERS, LoadSettings, default_workers

if TYPE_CHECKING:
    from .clock_sync import ClockSync
    from .process import LoadStats

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding scenarios/
# one Locust process here | a master and N worker processes here | a master Job and N worker pods in the cluster
Where = Literal["process", "master+workers", "in-cluster"]


class LoadHandle(Protocol):
    """What a run needs of its load generator (`LoadProcess` here, `ClusterLoad` in a cluster)."""

    def start(self) -> None: ...
    def running(self) -> bool: ...
    def stats(self) -> "LoadStats | None": ...
    def stop(self) -> object: ...
    def records(self) -> list[Record]: ...
    def log_tail(self) -> str: ...
    def clock_sync(self) -> "ClockSync": ...


# (target URL, load settings, run directory, history origin on the monotonic clock, run id) -> a load not started
LoadFactory = Callable[[str, LoadSettings, Path, float, str], LoadHandle]


@dataclass(frozen=True)
class LoadPlan:
    """The load one run makes. `settings` are the experiment's with the locustfile found and `workers` set."""

    settings: LoadSettings
    where: Where

    @property
    def locustfile(self) -> Path:
        return Path(self.settings.locustfile)

    @property
    def user_class(self) -> str:
        return self.settings.user_class

    @property
    def workers(self) -> int:
        """Locust processes (or pods) that make requests."""
        return self.settings.worker_count()

    def to_json(self) -> dict[str, object]:
        return {"locustfile": str(self.locustfile), "user_class": self.user_class, "workers": self.workers,
                "where": self.where}


def plan_load(load: LoadSettings, settings: Settings, *, target: str, on_kubernetes: bool, stack_here: bool,
              context: str | None, cpus: int) -> LoadPlan:
    """The plan for `load` on `target`, whose platform is a Kubernetes cluster (`on_kubernetes`, reached
    with `context`) or runs on this machine (`stack_here`, which keeps cores for it).

    `kubernetes.load_generator: in-cluster` needs a cluster and its context (a UserError otherwise).
    Without `workers`, the cluster gets IN_CLUSTER_WORKERS pods and a machine one process per core the
    platform leaves. A relative locustfile is looked up in the current directory, then in the checkout.
    """
    in_cluster = settings.kubernetes.load_generator == "in-cluster"
    if in_cluster and not (on_kubernetes and context):
        raise UserError(f"{settings.source}: 'kubernetes.load_generator' is in-cluster, which needs a target on a "
                        f"Kubernetes cluster and its --context (kubernetes or aws); this target is not one or has "
                        f"no --context. Set kubernetes.load_generator to local, or run on a cluster.")
    if not Path(load.locustfile).is_absolute() and not Path(load.locustfile).exists():
        load = dataclasses.replace(load, locustfile=str(PROJECT_ROOT / load.locustfile))
    if load.workers is None:
        load = dataclasses.replace(load, workers=IN_CLUSTER_WORKERS if in_cluster else default_workers(
            cpus, stack_here=stack_here))
    where: Where = "in-cluster" if in_cluster else ("process" if load.worker_count() == 1 else "master+workers")
    return LoadPlan(load, where)
