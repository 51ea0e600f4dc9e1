"""The Chaos Toolkit control that turns an experiment into a measured run.

Declared in every experiment (`controls: [{name: resilience, provider:
{type: python, module: resilience.control}}]`), so plain `chaos run FILE`
measures too. With `resilience run`, the CLI creates the `Run` first (with
its options); with plain `chaos run`, the control creates it from the
environment: RESILIENCE_TARGET (default local), RESILIENCE_PROFILE (default
full), RESILIENCE_CONFIG.

Plain `chaos run` calls this control only after Chaos Toolkit has validated the
file (importing the modules it names), resolved its configuration and loaded
its other controls: the allow-lists checked here come too late for a hostile
file. Only `resilience run`, or `chaos run --control-file
controls/resilience-loader.yaml` (resilience.chaos_loader), checks first; this
control says so on stderr when neither did.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from chaoslib.exceptions import InterruptExecution

from . import active
from .abort import Aborted
from .errors import UserError

# Chaos Toolkit logs what a control raises at debug level only: what we say goes to its logger as a warning
logger = logging.getLogger("chaostoolkit")


def _stop(message: str) -> InterruptExecution:
    """A set-up problem: said where the operator sees it (not at debug level), then the run is interrupted."""
    logger.warning(f"resilience: {message}")
    return InterruptExecution(message)


PLAIN_CHAOS_RUN_WARNING = (
    "resilience: WARNING: plain `chaos run` checks the experiment against the allow-lists only now, after Chaos "
    "Toolkit imported the modules it names, ran its dynamic configuration and loaded its controls. Only "
    "`resilience run FILE` (or `chaos run --control-file controls/resilience-loader.yaml FILE`) refuses a "
    "hostile file before anything runs.")


def before_experiment_control(context: dict[str, Any], configuration: Any = None, secrets: Any = None,
                              **kwargs: Any) -> None:
    run = active.active()
    if run is None:  # plain `chaos run`
        from .chaos_loader import CHECKED
        if not CHECKED:
            print(PLAIN_CHAOS_RUN_WARNING, file=sys.stderr)
        from .config import load_settings
        from .experiments import load_from_raw
        from .policy import Policy
        from .runbuild import build_run
        from .rundeps import RunOptions
        profile = os.environ.get("RESILIENCE_PROFILE", "full")
        try:  # the same allow-lists as `resilience run`: a refused activity stops the run before it starts
            settings = load_settings(os.environ.get("RESILIENCE_CONFIG"))
            spec = load_from_raw(context, profile, Policy.from_settings(settings))
            run = build_run(spec, settings, RunOptions(target=os.environ.get("RESILIENCE_TARGET", "local")))
        except Exception as exc:  # noqa: BLE001 — Chaos Toolkit would log it at debug level and run unmeasured
            raise _stop(str(exc) if isinstance(exc, UserError) else f"the run could not be set up: {exc}") from None
        run.owned_by_control = True
        active.activate(run)
        from .abort import install_signals_as_ctrl_c
        install_signals_as_ctrl_c(run.aborts)  # SIGTERM/SIGHUP as Ctrl-C, as under `resilience run`
    from .policy import Policy, guard_http_providers
    guard_http_providers(Policy.from_settings(run.settings))  # before any activity: redirects stay on allowed hosts
    try:
        run.begin()
    except Aborted as exc:
        raise _stop(str(exc)) from None
    except Exception as exc:
        run.error = exc
        raise _stop(f"the run could not start: {exc}") from None


def after_experiment_control(context: dict[str, Any], state: dict[str, Any], configuration: Any = None,
                             secrets: Any = None, **kwargs: Any) -> None:
    run = active.active()
    if run is None:
        return
    try:
        if run.run_dir is not None:
            result = run.finish(state)
            state.setdefault("extensions", []).append({"name": "resilience", "result": result.to_json()})
            mark_journal(state, result.verdict)
    except Exception as exc:
        run.error = run.error or exc
        logger.warning(f"resilience: the run could not be finished: {exc}")
        if isinstance(state, dict) and state.get("status") == "completed":
            state["status"] = "failed"
    finally:
        if run.owned_by_control:
            run.close()
            active.activate(None)


def mark_journal(journal: dict[str, Any], verdict: str) -> None:
    """Carry our verdict into the journal, so that plain `chaos run` exits 1 unless every target was met.

    Chaos Toolkit exits 1 when the journal deviated or its status is not completed:
    fail -> deviated (a target breached: the weakness the experiment looked for);
    inconclusive -> failed (nothing could be concluded); aborted -> aborted.
    """
    if not isinstance(journal, dict) or verdict == "pass":
        return
    if verdict == "fail":
        journal["deviated"] = True
    elif journal.get("status") == "completed":
        journal["status"] = "aborted" if verdict == "aborted" else "failed"
    logger.warning(f"resilience: verdict {verdict.upper()} (result in the journal's extensions)")
