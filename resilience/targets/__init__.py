"""Targets: where the platform runs. `make_target` picks one by name."""

from __future__ import annotations

from ..config import Settings
from ..errors import UserError
from .base import Target

TARGET_NAMES = ("local", "kubernetes", "aws")


def make_target(name: str, settings: Settings, *, context: str | None = None, dry_run: bool = False) -> Target:
    """The target called `name`; the cloud clients are imported only when asked for."""
    if name == "local":
        from .local import LocalTarget
        return LocalTarget(settings)
    if name == "kubernetes":
        if not context:
            raise UserError("--target kubernetes needs --context NAME (a kubeconfig context listed in "
                            "the setting kubernetes.allowed_contexts).")
        from .kubernetes import KubernetesTarget
        return KubernetesTarget(settings, context=context, dry_run=dry_run)
    if name == "aws":
        from .aws import AwsTarget
        return AwsTarget(settings, dry_run=dry_run)
    raise UserError(f"unknown target {name!r}. Choose one of: {', '.join(TARGET_NAMES)} (default: local).")
