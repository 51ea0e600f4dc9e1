"""Targets: where the platform runs and what can be broken there. `make_target` builds one by name.

Every target is built one way: its composition (targets/target.py) names a platform,
managed services and nemeses; the tables below say where each lives ("module:Class",
imported only when used, so `--target local` never imports a cloud client), and each
class builds itself from a `Build`. A new target is a composition entry and, for new
parts, a row here.
"""

from __future__ import annotations

import dataclasses
import importlib

from ..config import Settings
from ..errors import UserError
from .base import Build, Nemesis, Platform, Services
from .target import COMPOSITIONS, Composition, Target, support_of

TARGET_NAMES = tuple(COMPOSITIONS)

PLATFORMS = {"local": "resilience.targets.local:LocalPlatform",
             "kubernetes": "resilience.targets.kubernetes.platform:KubernetesPlatform"}
SERVICES = {"aws": "resilience.targets.aws.services:AwsServices"}
NEMESES = {"local": "resilience.targets.local.nemesis:LocalNemesis",
           "kubernetes": "resilience.targets.kubernetes.nemesis:KubernetesNemesis",
           "aws": "resilience.targets.aws.nemesis:AwsNemesis"}

def composition(name: str) -> Composition:
    try:
        return COMPOSITIONS[name]
    except KeyError:
        raise UserError(f"unknown target {name!r}. Choose one of: {', '.join(TARGET_NAMES)} (default: local); "
                        f"`resilience faults` shows what each can inject.") from None


def _imported(table: dict[str, str], kind: str, name: str) -> object:
    """What a table row names ("module:Class"), imported now."""
    if name not in table:
        raise UserError(f"unknown {kind} {name!r} in a target composition; known: {', '.join(table)}.")
    module, _, attribute = table[name].partition(":")
    return vars(importlib.import_module(module))[attribute]


def platform_class(name: str) -> type[Platform]:
    found = _imported(PLATFORMS, "platform", name)
    assert isinstance(found, type) and issubclass(found, Platform), PLATFORMS[name]
    return found


def services_class(name: str) -> type[Services]:
    found = _imported(SERVICES, "managed services", name)
    assert isinstance(found, type) and issubclass(found, Services), SERVICES[name]
    return found


def nemesis_class(name: str) -> type[Nemesis]:
    found = _imported(NEMESES, "nemesis", name)
    assert isinstance(found, type) and issubclass(found, Nemesis), NEMESES[name]
    return found


def compose(chosen: Composition, parts: Build) -> tuple[Platform, dict[str, Nemesis], list[Services]]:
    """The platform, the nemeses and the services of a composition, each built from `parts`."""
    services = {name: services_class(name).build(parts) for name in chosen.services}
    parts = dataclasses.replace(parts, services=services)
    platform = platform_class(chosen.platform).build(parts)
    parts = dataclasses.replace(parts, platform=platform)
    needed = dict.fromkeys(n for fault in _target_faults() for n in chosen.nemesis_names(fault))
    nemeses = {name: nemesis_class(name).build(parts) for name in needed}
    return platform, nemeses, list(services.values())


def make_target(name: str, settings: Settings, *, context: str | None = None, dry_run: bool = False) -> Target:
    """The target called `name`, composed from its platform, services and nemeses; cloud clients load on demand.

    `dry_run`: no client is created and nothing is sent (the allow-lists are still checked); only `plan` works.
    """
    chosen = composition(name)
    if chosen.needs_context and not context:
        raise UserError(f"--target {name} needs --context NAME (a kubeconfig context listed in the setting "
                        f"kubernetes.allowed_contexts).")
    platform, nemeses, services = compose(chosen, Build(settings, context, dry_run))
    return Target(chosen, platform, nemeses, services)


def _target_faults() -> list[str]:
    from ..fault_registry import FAULTS
    return [name for name, fault in FAULTS.items() if fault.touches_target]


def nemesis_classes() -> dict[str, type[Nemesis]]:
    """Every nemesis class by name (imports no cloud client)."""
    return {name: nemesis_class(name) for name in NEMESES}


def support_table() -> dict[str, dict[str, str | None]]:
    """For each target, each fault: None when supported, otherwise why not (what `resilience faults` prints)."""
    classes = nemesis_classes()
    return {name: support_of(c, classes) for name, c in COMPOSITIONS.items()}
