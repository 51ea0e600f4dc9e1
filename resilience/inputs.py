"""Reading untrusted input: experiment and settings files, run directories, ledgers, rollback files.

An experiment file may come from anyone (a pull request, a ticket) and a run
directory from anyone with write access to the reports folder, so reading one
must never crash, hang or exhaust memory, and must never read two things into
one (a duplicate key). Every problem is a `UserError` naming the file (and the
line when there is one) and the fix. This module is the one place that reads
such input; everything else gets plain, checked Python data.

Files (`read_bytes`): only regular files, opened without following a symlink
and without blocking (a FIFO or a device is refused, not read), at most
`MAX_FILE_BYTES` (1 MiB) unless the caller says otherwise, UTF-8 only.

YAML (`load_yaml`), checked before the YAML is turned into Python objects:

- nesting: at most `MAX_DEPTH` levels of mappings and lists.
- anchors, aliases and explicit tags (`&a`, `*a`, `!!binary`, `!!set`) are
  refused: aliases are how a tiny file expands into billions of nodes, and
  tags make types YAML users rarely mean. Write repeated blocks out in full.
- duplicate keys are refused, naming both lines: with "last one wins", a
  reviewer approves the strict block at the top and the file uses another.

JSON (`load_json`, `parse_json`; also a `.json` experiment or settings file):
strict JSON (no trailing commas, no NaN), with the same depth and duplicate-key
checks. A `.json` file is never read as YAML.

Values (`check_tree`, both formats): only mappings with string keys, lists,
strings, whole numbers within +-2**63, finite numbers, booleans and null; no
dates, NaN or infinities; strings without control characters other than tab and
newline, without lone surrogates and without bidirectional-override characters
(they reach terminals, HTML and XML reports).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_INT = 2 ** 63  # whole numbers beyond this are no setting, seed or count; converting them to float overflows
MAX_NAME_BYTES = 255  # one path component (NAME_MAX)
MAX_PATH_BYTES = 4000  # a whole path (PATH_MAX is 4096)
RUN_FILE_BYTES = 16 * 1024 * 1024  # result.json, settings.json, rollback.json, MANIFEST.sha256, compliance.json
HISTORY_BYTES = 2 * 1024 ** 3  # history.jsonl: a few MB a minute of run; 24 h of load is about 2 GB
LEDGER_BYTES = 256 * 1024 * 1024  # ledger.jsonl: about 300 bytes a line, two lines a run
_BAD_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")

_OPENING = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
            yaml.FlowSequenceStartToken)
_CLOSING = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def read_bytes(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, if it is a regular file (not a link, FIFO or device) of at most `limit` bytes.

    Opened with O_NOFOLLOW | O_NONBLOCK and checked with fstat before reading, so
    a FIFO cannot make a reader hang and a link to /dev/zero cannot fill memory.
    """
    path = check_path(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(f"{what} {path} is a symbolic link; it is read only as a regular file, never through "
                            f"a link. Pass the file itself.") from None
        if exc.errno == errno.ENOENT:
            raise UserError(f"{what} {path} does not exist. Check the path.") from None
        raise UserError(f"{what} {path} cannot be read ({exc.strerror or exc}). Check the path and its "
                        f"permissions.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{what} {path} is not a regular file (a directory, FIFO, socket or device); only "
                            f"regular files are read. Pass an ordinary file.")
        if info.st_size > limit:
            raise _too_big(path, what, limit)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read ({exc.strerror or exc}). Check the file.") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise _too_big(path, what, limit)
    return data


def check_path(path: Path, what: str) -> Path:
    """`path`, if no part of it is longer than the system allows (else ENAMETOOLONG surfaces as a traceback)."""
    path = Path(path)
    encoded = str(path).encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_PATH_BYTES or any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES
                                            for part in path.parts):
        raise UserError(f"{what} {str(path)[:120]}...: the path, or a name in it, is longer than the system allows "
                        f"({MAX_NAME_BYTES} bytes a name, {MAX_PATH_BYTES} in all); no such file exists. Check the "
                        f"path.")
    return path


def check_regular(path: Path, what: str, limit: int) -> int:
    """The size of `path`, if it is a regular file (not a link, FIFO or device) of at most `limit` bytes.

    For readers that stream a file themselves (the history): they open it only after this check.
    """
    path = check_path(path, what)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist. Check the path.") from None
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read ({exc.strerror or exc}). Check the file.") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{what} {path} is not a regular file (a link, directory, FIFO, socket or device); only "
                        f"regular files are read. Restore the file the run wrote.")
    if info.st_size > limit:
        raise _too_big(path, what, limit)
    return info.st_size


def _too_big(path: Path, what: str, limit: int) -> UserError:
    return UserError(f"{path}: the file is larger than {limit // 1024} KiB, the limit for this {what}. Check that "
                     f"this is the right file.")


def read_text(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> str:
    """The file's text: `read_bytes`, then UTF-8 (a UserError naming the line otherwise)."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: the file is not UTF-8 text (byte {exc.start} is not valid UTF-8). "
                        f"Save it as UTF-8.") from None


def load_yaml(path: Path, what: str = "experiment file") -> Any:
    """Parse a small YAML (or, by its suffix, JSON) file within the limits above; UserError otherwise."""
    if Path(path).suffix.lower() == ".json":
        return load_json(path, what)
    text = read_text(path, what)
    try:
        _check_tokens(text, path)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
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
    except _Duplicate as exc:
        raise UserError(f"{path}: line {exc.second}: the key {exc.key!r} is given twice (first at line "
                        f"{exc.first}); YAML would silently keep only the last one. Remove one of them.") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. a 5000-digit number
        raise UserError(f"{path}: a value cannot be read ({type(exc).__name__}: {str(exc)[:200]}). "
                        f"Use ordinary numbers and strings.") from None
    check_tree(data, str(path))
    return data


class _Duplicate(Exception):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                if key in seen:
                    raise _Duplicate(key, seen[key], key_node.start_mark.line + 1)
                seen[key] = key_node.start_mark.line + 1
            except TypeError:
                continue  # an unhashable key: check_tree / PyYAML refuse it with their own message
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


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


def load_json(path: Path, what: str, limit: int = MAX_FILE_BYTES, *, ours: bool = False) -> Any:
    """A strict JSON file within every limit above (`read_bytes`, then `parse_json`)."""
    return parse_json(read_text(path, what, limit), str(path), ours=ours)


def parse_json(text: str, where: str, *, ours: bool = False) -> Any:
    """Strict JSON text (one document, or one ledger line) within the depth, key and value limits.

    `ours=True` accepts any characters in strings: files the harness wrote
    may quote a program's output, and the reports escape what they show.
    """
    _check_json_depth(text, where)
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs, parse_int=_parse_int,
                          parse_constant=float if ours else _refuse_constant)
    except _Duplicate as exc:
        lines = [text[:m.start()].count("\n") + 1 for m in re.finditer(re.escape(json.dumps(exc.key)) + r"\s*:", text)]
        at = f" (lines {lines[0]} and {lines[-1]})" if len(lines) > 1 else ""
        raise UserError(f"{where}: the key {exc.key!r} is given twice in one object{at}; JSON readers would "
                        f"silently keep only the last one. Remove one of them.") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: line {exc.lineno}: not valid JSON ({exc.msg}). JSON allows no trailing commas, "
                        f"comments or NaN; fix the syntax.") from None
    except (ValueError, OverflowError, RecursionError) as exc:
        raise UserError(f"{where}: a value cannot be read ({str(exc)[:200]}). Use ordinary numbers and "
                        f"strings.") from None
    check_tree(data, where, ours=ours)
    return data


def _check_json_depth(text: str, where: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before json builds anything (deep nesting overflows its recursion)."""
    depth, in_string, escaped = 0, False, False
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise UserError(f"{where}: nested more than {MAX_DEPTH} levels deep; no file the harness writes "
                                f"is. The file is damaged or was made to crash readers.")
        elif char in "]}":
            depth -= 1


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key, 0, 0)
        out[key] = value
    return out


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise ValueError(f"the whole number {text[:20]}... has {len(text)} digits; at most 19 are allowed")
    return int(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def check_tree(data: Any, where: str, path: str = "", depth: int = 0, *, ours: bool = False) -> None:
    """Every value is plain JSON-like data: str-keyed mappings, lists, clean str, bounded int, finite float, bool, null."""
    here = path or "top level"
    if depth > MAX_DEPTH:
        raise UserError(f"{where}: '{here}' is nested more than {MAX_DEPTH} levels deep; flatten the structure.")
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                raise UserError(f"{where}: '{here}' has the key {key!r} ({type(key).__name__}); keys must be "
                                f"strings. Quote it.")
            if not ours:
                check_text(key, where, f"a key in '{here}'")
            check_tree(value, where, f"{path}.{key}" if path else key, depth + 1, ours=ours)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_tree(value, where, f"{path}[{i}]", depth + 1, ours=ours)
    elif isinstance(data, bool) or data is None:
        return
    elif isinstance(data, int):
        if not -MAX_INT <= data <= MAX_INT:
            raise UserError(f"{where}: '{here}' is a whole number of {len(str(abs(data)))} digits; numbers must be "
                            f"within +-2**63 (about 9.2e18). Use a realistic value.")
    elif isinstance(data, float):
        if not ours and not math.isfinite(data):
            raise UserError(f"{where}: '{here}' is {data!r}; numbers must be finite (no .nan or .inf). A load "
                            f"stage that lasts forever is written duration: inf (as text) or duration_s: null.")
    elif isinstance(data, str):
        if not ours:
            check_text(data, where, f"'{here}'")
    else:
        raise UserError(f"{where}: '{here}' is a {type(data).__name__} ({str(data)[:60]!r}); only strings, numbers, "
                        f"booleans, lists and mappings are allowed. Quote it to make it a string.")


def check_text(text: str, where: str, what: str) -> None:
    """Refuse control characters (other than tab and newline), lone surrogates and bidi overrides in `text`."""
    bad = _BAD_CHARS.search(text)
    if bad is not None:
        raise UserError(f"{where}: {what} contains the character U+{ord(bad.group()):04X} (a control character, "
                        f"lone surrogate or text-direction override), which would reach terminals and reports "
                        f"as is. Remove it.")


def printable(text: str) -> str:
    """`text` with control characters, lone surrogates and direction overrides shown as \\xNN / \\uNNNN (for terminals)."""
    return _BAD_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                          text)
