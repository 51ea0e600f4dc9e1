"""The local target: the local platform with the local nemesis (what `make_target("local")` returns)."""

from __future__ import annotations

from pathlib import Path

from ...config import Settings, StackSettings
from ..target import COMPOSITIONS, Target
from . import LocalPlatform
from .nemesis import LocalNemesis


class LocalTarget(Target):
    """The local composition, with its platform's state directory and settings at hand (tests, benchmarks)."""

    def __init__(self, settings: Settings) -> None:
        platform = LocalPlatform(settings)
        super().__init__(COMPOSITIONS["local"], platform, {"local": LocalNemesis(platform)})
        self.local = platform

    @property
    def root(self) -> Path:
        return self.local.root

    @property
    def s(self) -> StackSettings:
        return self.local.s

    def running(self) -> bool:
        return self.local.running()
