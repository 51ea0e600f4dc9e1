"""No broad `except` swallows an error silently (issue 17, item 5).

A handler for `Exception`, `BaseException` or everything (`except:`) must do one of:
- re-raise (any `raise` in its body: the same error, or a clearer one `from` it);
- pass the exception on: give it to a call (a log line, an event, a `say`, an `on_failure`
  callback, a list of failures), store it (`run.error = exc`), or return it; `log.exception()`
  and `traceback.print_exc()`/`format_exc()` count too, as they take the error themselves;
- or say on its `except` line why swallowing it is right: `# broad: <reason>`.

Handlers that catch named exception types are not concerned: they say what they expect.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "resilience"

BROAD = {"Exception", "BaseException"}
# Calls that take the current exception without being handed it.
IMPLICIT = {"exception", "print_exc", "format_exc", "exc_info"}
REASON = re.compile(r"#\s*broad:\s*\S")

# Files still holding silent broad handlers, with how many; they belong to another change (the fault and
# target rewrite). The lead shrinks this list as those land: a file may only go down, never up, and a
# file that is clean must leave the list.
ALLOWED_SILENT_BROAD_EXCEPTS: dict[str, int] = {}


def _is_broad(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in BROAD for t in types)


def _walk_body(handler: ast.ExceptHandler) -> list[ast.AST]:
    """Every node in the handler's body, but not inside functions or classes it defines (they run later)."""
    nodes: list[ast.AST] = []
    todo: list[ast.AST] = list(handler.body)
    while todo:
        node = todo.pop()
        nodes.append(node)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def _mentions(node: ast.AST | None, name: str | None) -> bool:
    return name is not None and node is not None and any(
        isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _passes_it_on(handler: ast.ExceptHandler) -> bool:
    name = handler.name
    for node in _walk_body(handler):
        if isinstance(node, ast.Raise):
            return True
        if isinstance(node, ast.Call):
            if _callee(node) in IMPLICIT:
                return True
            if any(_mentions(arg, name) for arg in [*node.args, *(k.value for k in node.keywords)]):
                return True
        if isinstance(node, (ast.Return, ast.Yield)) and _mentions(node.value, name):
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and _mentions(node.value, name):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, (ast.Attribute, ast.Subscript)) for t in targets):
                return True  # stored where someone reads it (run.error = exc, failures[key] = exc)
            if any(isinstance(t, ast.Name) for t in targets):
                return True  # kept in a local that the code after the handler reports (error = f"...{exc}")
    return False


def silent_broad_handlers(path: Path) -> list[str]:
    """`file:line` of each broad handler that neither re-raises, passes the error on, nor says why."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.ExceptHandler) and _is_broad(node):
            if REASON.search(lines[node.lineno - 1]) or _passes_it_on(node):
                continue
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _all_silent() -> dict[str, list[str]]:
    by_file: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for where in silent_broad_handlers(path):
            by_file.setdefault(where.rsplit(":", 1)[0], []).append(where)
    return by_file


def test_no_broad_except_swallows_an_error_silently() -> None:
    offenders = {f: hits for f, hits in _all_silent().items()
                 if len(hits) > ALLOWED_SILENT_BROAD_EXCEPTS.get(f, 0)}
    assert not offenders, (
        "a broad `except` must re-raise, pass the exception to a log/event/callback, or say "
        f"`# broad: <reason>` on its line: {offenders}")


def test_the_allow_list_only_names_files_that_still_need_it() -> None:
    silent = _all_silent()
    stale = {f: n for f, n in ALLOWED_SILENT_BROAD_EXCEPTS.items() if len(silent.get(f, [])) < n}
    assert not stale, f"fewer silent broad excepts than allowed: lower these in ALLOWED_SILENT_BROAD_EXCEPTS: {stale}"


def _handlers(code: str) -> list[ast.ExceptHandler]:
    return [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.ExceptHandler)]


def test_the_check_tells_silent_handlers_from_reporting_ones() -> None:
    silent = ["try:\n  f()\nexcept Exception:\n  pass\n",
              "try:\n  f()\nexcept:\n  return {}\n",
              "try:\n  f()\nexcept (OSError, Exception) as exc:\n  x = 1\n",
              "try:\n  f()\nexcept BaseException as exc:\n  def later():\n    raise exc\n"]
    reporting = ["try:\n  f()\nexcept Exception as exc:\n  log.warning('failed: %s', exc)\n",
                 "try:\n  f()\nexcept Exception:\n  log.exception('failed')\n",
                 "try:\n  f()\nexcept BaseException:\n  cleanup()\n  raise\n",
                 "try:\n  f()\nexcept Exception as exc:\n  run.error = exc\n",
                 "try:\n  f()\nexcept Exception as exc:\n  say(f'no URL ({exc})')\n"]
    for code in silent:
        (handler,) = _handlers(code)
        assert _is_broad(handler) and not _passes_it_on(handler), code
    for code in reporting:
        (handler,) = _handlers(code)
        assert _is_broad(handler) and _passes_it_on(handler), code
    (narrow,) = _handlers("try:\n  f()\nexcept (OSError, ValueError):\n  pass\n")
    assert not _is_broad(narrow)
