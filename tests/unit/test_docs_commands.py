"""The docs tell the truth about the CLI: every `resilience ...` command in README.md and docs/ parses.

Each command line (in code blocks and in `inline code`) goes through the CLI's own
argument parser: an unknown command, an unknown flag, a bad choice or a missing flag
value fails here. A prose mention without its positional arguments (`resilience
check`) is accepted; placeholders (RUN_DIR, NAME, <run>) stand for any value.
Every setting key the docs mention (`kubernetes.allowed_contexts`) must exist.
The annotated first experiment in the README must validate.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from resilience import cli
from resilience.config import Settings
from resilience.load.shape import LoadSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER_NUMBERS = {"N": "2"}  # `--workers N`: an int option needs a number
ACCEPTED_ERRORS = ("the following arguments are required",)  # prose: `resilience check` without RUN_DIR


def doc_commands() -> list[tuple[str, str]]:
    """(file, command) for every `resilience ...` line in code blocks and inline code."""
    found: list[tuple[str, str]] = []
    for path in DOCS:
        text = path.read_text()
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = re.sub(r"^(sudo -E |[A-Z_]+=\S+ )+", "", line.strip())
                if re.match(r"^(\S*/)?resilience\s+[a-z-]", line):
                    found.append((path.name, line))
        for span in re.findall(r"`((?:\S*/)?resilience [^`]+)`", text):
            found.append((path.name, " ".join(span.split())))
    return found


def argv_of(command: str) -> list[str] | None:
    """The arguments after `resilience`, placeholders filled in; None for a generic `resilience COMMAND ...`."""
    command = re.sub(r"<[^>]*>", "X", command)
    command = re.split(r"\s(?:#|>|\||&&|;)\s?", command + " ", maxsplit=1)[0]
    command = command.replace("[", " ").replace("]", " ").replace("...", "").rstrip("\\ ")
    words = shlex.split(command)[1:]
    if not words or words[0] == "COMMAND":
        return None
    return [PLACEHOLDER_NUMBERS.get(w, w) for w in words]


def first_choice(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--format html/pdf/json` or `html|pdf`: the docs list the choices; pass the first."""
    out = list(argv)
    for i, word in enumerate(out[1:], 1):
        if re.fullmatch(r"[a-z]+([/|][a-z]+)+", word) and out[i - 1].startswith("--"):
            out[i] = re.split(r"[/|]", word)[0]
    return out


def parse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str | None:
    """The parser's complaint, or None when it accepts (or only misses a positional in prose)."""
    parser = cli.build_parser()
    try:
        parser.parse_args(first_choice(parser, argv))
    except SystemExit as exc:
        err = capsys.readouterr().err
        if exc.code == 0 or any(accepted in err for accepted in ACCEPTED_ERRORS):
            return None
        return err.strip().splitlines()[-1] if err.strip() else f"exit {exc.code}"
    return None


def test_every_documented_command_parses(capsys: pytest.CaptureFixture[str]) -> None:
    commands = doc_commands()
    assert len(commands) >= 80, "the docs lost their commands?"
    problems = []
    for name, command in commands:
        argv = argv_of(command)
        if argv is None:
            continue
        complaint = parse(argv, capsys)
        if complaint:
            problems.append(f"{name}: `{command}`: {complaint}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("command", ["resilience run zone-failure --no-such-flag",
                                     "resilience runn zone-failure", "resilience report X --format docx"])
def test_the_check_catches_a_wrong_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = argv_of(command)
    assert argv is not None and parse(argv, capsys)


def setting_paths() -> set[str]:
    out: set[str] = set()

    def walk(obj: object, prefix: str) -> None:
        for f in dataclasses.fields(obj):  # type: ignore[arg-type]
            value = getattr(obj, f.name)
            out.add(prefix + f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
    walk(Settings(), "")
    return out


SECTIONS = ("stack", "targets", "experiments", "load", "kubernetes", "aws", "evidence")
NOT_SETTINGS = {"kubernetes.config"}  # the kubernetes client's Python module, named in targets.md


def doc_setting_keys() -> list[tuple[str, str]]:
    """(file, key) for every `section.key` in inline code (files such as targets.md are not keys)."""
    pattern = re.compile(rf"`((?:{'|'.join(SECTIONS)})\.[a-z_][a-z0-9_.]*)(?:[:= ][^`]*)?`")
    return [(path.name, key) for path in DOCS for key in pattern.findall(path.read_text())
            if not re.search(r"\.(md|py|yaml|yml|json|jsonl|sh)$", key)]


def test_every_setting_the_docs_mention_exists() -> None:
    keys = doc_setting_keys()
    assert len(keys) >= 40
    known = setting_paths()
    experiment_load = {f"load.{f.name}" for f in dataclasses.fields(LoadSettings)}  # an experiment's `load:`
    unknown = sorted({f"{name}: {key}" for name, key in keys if key not in known | experiment_load | NOT_SETTINGS})
    assert not unknown, "settings the docs mention that do not exist:\n" + "\n".join(unknown)


def test_the_readme_first_experiment_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "experiment: my-first" in b)
    assert len(block.splitlines()) <= 24
    path = tmp_path / "my-first.yaml"
    path.write_text(block)
    assert cli.main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert cli.main(["run", str(path), "--dry-run"]) == 0, capsys.readouterr().err
