"""Reading untrusted input files: experiment and settings YAML, with hard limits.

An experiment file may come from anyone (a pull request, a ticket), so reading
one must never crash, hang or exhaust memory: every problem is a `UserError`
naming the file (and the line when there is one) and the fix.

Limits, all checked before the YAML is turned into Python objects:

- size: at most `MAX_FILE_BYTES` (1 MiB); experiment files are a few KiB.
- encoding: UTF-8 only.
- nesting: at most `MAX_DEPTH` levels of mappings and lists (deep nesting
  overflows the YAML composer's recursion).
- anchors, aliases and explicit tags (`&a`, `*a`, `!!binary`, `!!set`) are
  refused: aliases are how a tiny file expands into billions of nodes (a
  "billion laughs" bomb that hangs when the journal is written), and tags make
  types YAML users rarely mean. Write repeated blocks out in full instead.
- values: only mappings with string keys, lists, strings, whole numbers,
  finite numbers, booleans and null; no dates, NaN or infinities.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32

_OPENING = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
            yaml.FlowSequenceStartToken)
_CLOSING = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def read_text(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """The file's text, after checking that it is a regular file, small enough and UTF-8.

    Reads at most `limit + 1` bytes, so a huge file (or /dev/zero) costs nothing.
    """
    try:
        if not path.is_file():
            raise UserError(f"{what} {path} is not a regular file. Pass an existing experiment or settings file.")
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read ({exc.strerror or exc}). Check the path and its "
                        f"permissions.") from None
    if len(data) > limit:
        raise UserError(f"{path}: the file is larger than {limit // 1024} KiB, the limit for this {what}; such "
                        f"files are a few KiB of YAML. Check that this is the right file.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: the file is not UTF-8 text (byte {exc.start} is not valid UTF-8). "
                        f"Save it as UTF-8.") from None


def load_yaml(path: Path, what: str = "experiment file") -> Any:
    """Parse a small YAML (or JSON) file within the limits above; UserError naming the file and line otherwise."""
    text = read_text(path, what)
    try:
        _check_tokens(text, path)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = " ".join((exc.problem or exc.context or "syntax error").split())
        raise UserError(f"{path}: {line}not valid YAML ({problem}). Fix the syntax.") from None
    except yaml.reader.ReaderError as exc:
        row = text[:exc.position].count("\n") + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        raise UserError(f"{path}: line {row}: the character #x{char:04x} is not allowed in YAML. Remove it "
                        f"(control characters and NUL bytes have no place in an experiment file).") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(exc).split())}). Fix the syntax.") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. a 5000-digit number
        raise UserError(f"{path}: a value cannot be read ({type(exc).__name__}: {str(exc)[:200]}). "
                        f"Use ordinary numbers and strings.") from None
    check_tree(data, str(path))
    return data


def _check_tokens(text: str, path: Path) -> None:
    """Refuse anchors, aliases, tags and deep nesting while scanning, before anything is built."""
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        line = token.start_mark.line + 1
        if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
            raise UserError(f"{path}: line {line}: YAML anchors and aliases (&name, *name) are not allowed in "
                            f"this file (they can expand a small file into billions of values). Write the "
                            f"repeated part out in full.")
        if isinstance(token, yaml.TagToken):
            raise UserError(f"{path}: line {line}: explicit YAML tags (such as !!binary or !!set) are not allowed. "
                            f"Remove the tag and write a plain value.")
        if isinstance(token, _OPENING):
            depth += 1
            if depth > MAX_DEPTH:
                raise UserError(f"{path}: line {line}: nested more than {MAX_DEPTH} levels deep. Experiment "
                                f"files need a handful of levels; flatten the structure.")
        elif isinstance(token, _CLOSING):
            depth -= 1


def check_tree(data: Any, where: str, path: str = "", depth: int = 0) -> None:
    """Every value is plain JSON-like data: str-keyed mappings, lists, str, int, finite float, bool, null."""
    here = path or "top level"
    if depth > MAX_DEPTH:
        raise UserError(f"{where}: '{here}' is nested more than {MAX_DEPTH} levels deep; flatten the structure.")
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                raise UserError(f"{where}: '{here}' has the key {key!r} ({type(key).__name__}); keys must be "
                                f"strings. Quote it.")
            check_tree(value, where, f"{path}.{key}" if path else key, depth + 1)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_tree(value, where, f"{path}[{i}]", depth + 1)
    elif isinstance(data, float):
        if not math.isfinite(data):
            raise UserError(f"{where}: '{here}' is {data!r}; numbers must be finite (no .nan or .inf). A load "
                            f"stage that lasts forever is written duration: inf (as text) or duration_s: null.")
    elif not (data is None or isinstance(data, (str, int, bool))):
        raise UserError(f"{where}: '{here}' is a {type(data).__name__} ({str(data)[:60]!r}); only strings, numbers, "
                        f"booleans, lists and mappings are allowed. Quote it to make it a string.")
