"""Nothing touches a shared cluster or account without the operator's yes."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilience.cli import main
from resilience.consent import confirm
from resilience.errors import UserError


def test_local_needs_no_consent() -> None:
    confirm("local", None, "x", False, ask=lambda q: "no", interactive=lambda: False)


def test_a_script_without_yes_is_refused_and_with_yes_goes_ahead() -> None:
    with pytest.raises(UserError, match="--yes"):
        confirm("aws", "eks-prod", "injecting", False, interactive=lambda: False)
    confirm("aws", "eks-prod", "injecting", True, interactive=lambda: False)


def test_a_person_must_type_yes() -> None:
    asked: list[str] = []
    confirm("kubernetes", "staging", "deploying", False, ask=lambda q: asked.append(q) or "yes", interactive=lambda: True)
    assert "kubernetes (context staging)" in asked[0]
    with pytest.raises(UserError, match="not confirmed"):
        confirm("kubernetes", "staging", "deploying", False, ask=lambda q: "y", interactive=lambda: True)


def test_run_on_a_cloud_target_without_yes_is_exit_2_before_any_call(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "resilience.yaml"
    config.write_text("kubernetes:\n  allowed_contexts: [staging]\n")
    assert main(["run", "pod-kill", "--target", "kubernetes", "--context", "staging", "--config", str(config)]) == 2
    assert "--yes" in capsys.readouterr().err
