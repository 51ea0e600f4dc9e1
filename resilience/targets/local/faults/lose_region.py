"""lose_region on the local stack: the primary region lost with its in-region repository (repo1).

As lose_database (every member and its data directory), and repo1 moved aside, unreadable
to pgBackRest: the restore must use repo2, the second region's (`restore_database` repo=2).
Its undo puts repo1 back. The local stack is one region: all its zones are the primary region.
"""

from __future__ import annotations

from . import FAULTS
from .lose_database import LoseDatabase


@FAULTS.register
class LoseRegion(LoseDatabase):
    fault = "lose_region"
    steps = ("restore_lost_region",)
    region = True
    needs_repo = 2
