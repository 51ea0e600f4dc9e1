"""The local target with its state directory and settings at hand (tests, benchmarks): built as every target is."""

from __future__ import annotations

from pathlib import Path

from ...config import Settings, StackSettings
from ..base import Build
from ..target import COMPOSITIONS, Target
from . import LocalPlatform


class LocalTarget(Target):
    """The local composition (as `make_target("local")` builds it), with its platform's root and settings."""

    def __init__(self, settings: Settings) -> None:
        from .. import compose
        platform, nemeses, services = compose(COMPOSITIONS["local"], Build(settings))
        assert isinstance(platform, LocalPlatform)
        super().__init__(COMPOSITIONS["local"], platform, nemeses, services)
        self.local = platform

    @property
    def root(self) -> Path:
        return self.local.root

    @property
    def s(self) -> StackSettings:
        return self.local.s

    def running(self) -> bool:
        return self.local.running()
