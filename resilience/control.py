"""The Chaos Toolkit control that turns an experiment into a measured run.

Declared in every experiment (`controls: [{name: resilience, provider:
{type: python, module: resilience.control}}]`), so plain `chaos run FILE`
measures too. With `resilience run`, the CLI creates the `Run` first (with
its options); with plain `chaos run`, the control creates it from the
environment: RESILIENCE_TARGET (default local), RESILIENCE_PROFILE (default
full), RESILIENCE_CONFIG.
"""

from __future__ import annotations

import os
from typing import Any

from chaoslib.exceptions import InterruptExecution

from . import active
from .abort import Aborted
from .errors import UserError


def before_experiment_control(context: dict[str, Any], configuration: Any = None, secrets: Any = None,
                              **kwargs: Any) -> None:
    run = active.active()
    if run is None:  # plain `chaos run`
        from .config import load_settings
        from .experiments import load_from_raw
        from .policy import Policy
        from .runbuild import build_run
        from .rundeps import RunOptions
        profile = os.environ.get("RESILIENCE_PROFILE", "full")
        settings = load_settings(os.environ.get("RESILIENCE_CONFIG"))
        try:  # the same allow-lists as `resilience run`: a refused activity stops the run before it starts
            spec = load_from_raw(context, profile, Policy.from_settings(settings))
        except UserError as exc:
            raise InterruptExecution(str(exc)) from None
        run = build_run(spec, settings, RunOptions(target=os.environ.get("RESILIENCE_TARGET", "local")))
        run.owned_by_control = True
        active.activate(run)
    try:
        run.begin()
    except Aborted as exc:
        raise InterruptExecution(str(exc)) from None
    except Exception as exc:
        run.error = exc
        raise InterruptExecution(f"the run could not start: {exc}") from None


def after_experiment_control(context: dict[str, Any], state: dict[str, Any], configuration: Any = None,
                             secrets: Any = None, **kwargs: Any) -> None:
    run = active.active()
    if run is None:
        return
    try:
        if run.run_dir is not None:
            result = run.finish(state)
            state.setdefault("extensions", []).append({"name": "resilience", "result": result.to_json()})
    except Exception as exc:
        run.error = run.error or exc
    finally:
        if run.owned_by_control:
            run.close()
            active.activate(None)
