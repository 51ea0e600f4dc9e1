"""Targets: where the platform runs and what can be broken there. `make_target` builds one by name."""

from __future__ import annotations

from ..config import Settings
from ..errors import UserError
from .base import Nemesis, Platform
from .base import Services
from .target import COMPOSITIONS, Composition, Target, support_of

TARGET_NAMES = tuple(COMPOSITIONS)


def composition(name: str) -> Composition:
    try:
        return COMPOSITIONS[name]
    except KeyError:
        raise UserError(f"unknown target {name!r}. Choose one of: {', '.join(TARGET_NAMES)} (default: local); "
                        f"`resilience faults` shows what each can inject.") from None


def make_target(name: str, settings: Settings, *, context: str | None = None, dry_run: bool = False) -> Target:
    """The target called `name`, composed from its platform, services and nemeses; cloud clients load on demand.

    `dry_run`: no client is created and nothing is sent (the allow-lists are still checked); only `plan` works.
    """
    chosen = composition(name)
    if name == "local":
        from .local.target import LocalTarget
        return LocalTarget(settings)
    if chosen.needs_context and not context:
        raise UserError(f"--target {name} needs --context NAME (a kubeconfig context listed in the setting "
                        f"kubernetes.allowed_contexts).")
    services: dict[str, Services] = {}
    for service in chosen.services:
        services[service] = _services(service, settings, dry_run)
    platform = _platform(chosen.platform, settings, context, dry_run, services)
    needed = {n for fault in _target_faults() for n in chosen.nemesis_names(fault)}
    nemeses = {nemesis: _nemesis(nemesis, platform, services, settings, dry_run) for nemesis in needed}
    return Target(chosen, platform, nemeses, list(services.values()))


def _target_faults() -> list[str]:
    from ..fault_registry import FAULTS
    return [name for name, fault in FAULTS.items() if fault.touches_target]


def _services(name: str, settings: Settings, dry_run: bool) -> Services:
    if name == "aws":
        from .aws.services import AwsServices
        return AwsServices(settings, dry_run=dry_run)
    raise UserError(f"unknown managed services {name!r} in a target composition; known: aws.")


def _platform(name: str, settings: Settings, context: str | None, dry_run: bool,
              services: dict[str, Services]) -> Platform:
    if name == "local":
        from .local import LocalPlatform
        return LocalPlatform(settings)
    if name == "kubernetes":
        from .aws.services import AwsServices
        from .kubernetes.platform import KubernetesPlatform
        from .kubernetes.manifests import BackendEndpoints
        aws = services.get("aws")

        def backends() -> BackendEndpoints:
            source = aws if isinstance(aws, AwsServices) else AwsServices(settings)
            return source.backend_endpoints()  # the RDS / ElastiCache endpoints live in the AWS account

        assert context is not None
        return KubernetesPlatform(settings, context=context, dry_run=dry_run, backends_source=backends)
    raise UserError(f"unknown platform {name!r} in a target composition; known: local, kubernetes.")


def _nemesis(name: str, platform: Platform, services: dict[str, Services], settings: Settings,
             dry_run: bool) -> Nemesis:
    if name == "local":
        from .local import LocalPlatform
        from .local.nemesis import LocalNemesis
        assert isinstance(platform, LocalPlatform)
        return LocalNemesis(platform)
    if name == "kubernetes":
        from .kubernetes.platform import KubernetesPlatform
        from .kubernetes.nemesis import KubernetesNemesis
        assert isinstance(platform, KubernetesPlatform)
        return KubernetesNemesis(platform)
    if name == "aws":
        from .aws.services import AwsServices
        from .aws.nemesis import AwsNemesis
        aws = services.get("aws")
        return AwsNemesis(aws if isinstance(aws, AwsServices) else AwsServices(settings, dry_run=dry_run))
    raise UserError(f"unknown nemesis {name!r} in a target composition; known: local, kubernetes, aws.")


def nemesis_classes() -> dict[str, type[Nemesis]]:
    """Every nemesis class by name (imports no cloud client)."""
    from .aws.nemesis import AwsNemesis
    from .kubernetes.nemesis import KubernetesNemesis
    from .local.nemesis import LocalNemesis
    return {"local": LocalNemesis, "kubernetes": KubernetesNemesis, "aws": AwsNemesis}


def support_table() -> dict[str, dict[str, str | None]]:
    """For each target, each fault: None when supported, otherwise why not (what `resilience faults` prints)."""
    classes = nemesis_classes()
    return {name: support_of(c, classes) for name, c in COMPOSITIONS.items()}
