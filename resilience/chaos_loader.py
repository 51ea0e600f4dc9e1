"""The loader control for plain `chaos run`: the allow-lists checked before Chaos Toolkit runs anything.

`chaos run FILE` validates the experiment (importing every module a python
activity names), resolves its configuration (running dynamic configuration
providers) and imports its controls before `resilience.control`'s
`before_experiment_control` is called, so that check comes too late for a
hostile file. Only a global control is called earlier: `after_loading_experiment_control`
runs right after the file is read. So

    chaos run --control-file controls/resilience-loader.yaml FILE

reads FILE the way `resilience run` does (inputs limits, duplicate keys, the
policy) and exits 2 before anything else happens. `resilience run` needs none
of this: it checks the file before Chaos Toolkit sees it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import UserError

CHECKED: set[str] = set()  # experiment files this process checked at load (resilience.control looks here)


def after_loading_experiment_control(context: Any, state: Any = None, **kwargs: Any) -> None:
    """Refuse the experiment file `context` (a path) unless `resilience run` would accept it; exit 2 if not."""
    from .config import load_settings
    from .experiments import load
    from .policy import Policy
    try:
        if not isinstance(context, str) or not Path(context).is_file():
            raise UserError(f"{context!r} is not a local experiment file; with resilience, experiments are run "
                            f"from local files only (fetch it, review it, then run the file).")
        settings = load_settings(os.environ.get("RESILIENCE_CONFIG"))
        load(context, os.environ.get("RESILIENCE_PROFILE", "full"), policy=Policy.from_settings(settings))
    except UserError as exc:
        print(f"resilience: refused before Chaos Toolkit ran anything: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    CHECKED.add(str(Path(context).resolve()))
