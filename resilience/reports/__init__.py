"""Reports rendered from a run directory alone: HTML, PDF, JSON, JUnit XML, Markdown.

    render(run_dir, "html")   -> run_dir/report.html
    render_all(run_dir)       -> every format

Rendering reads only the run directory, so it works offline and years later;
it is deterministic, so re-rendering a sealed run leaves its manifest valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..atomic import private_temp_path
from ..errors import UserError
from .html import write_html
from .json_report import write_json
from .junit import write_junit
from .markdown import write_markdown
from .pdf import write_pdf
from .run import RunView, load_run

# format -> (file name in the run directory, writer)
FORMATS: dict[str, tuple[str, Callable[[RunView, Path], Path]]] = {
    "html": ("report.html", write_html),
    "pdf": ("report.pdf", write_pdf),
    "json": ("report.json", write_json),
    "junit": ("junit.xml", write_junit),
    "md": ("report.md", write_markdown),
}


def render(run_dir: Path, fmt: str, out_dir: Path | None = None) -> Path:
    """Render one format into out_dir (default: the run directory) and return the file's path."""
    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}. Use one of: {', '.join(FORMATS)}.")
    run = load_run(Path(run_dir))
    return _write(run, fmt, out_dir)


def render_all(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Every format, reading the run directory once."""
    run = load_run(Path(run_dir))
    return [_write(run, fmt, out_dir) for fmt in FORMATS]


def _write(run: RunView, fmt: str, out_dir: Path | None) -> Path:
    name, writer = FORMATS[fmt]
    target_dir = Path(out_dir) if out_dir is not None else run.run_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / name
    with private_temp_path(path) as tmp:  # a fresh private directory: no planted link can be followed
        writer(run, tmp)
    return path


__all__ = ["FORMATS", "render", "render_all", "load_run", "RunView"]
