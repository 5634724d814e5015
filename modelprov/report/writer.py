"""Render a report in every format and write them all-or-nothing into a folder."""

from __future__ import annotations

import importlib.util
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterable

from modelprov._atomic import atomic_write
from modelprov.choices import FILE_NAMES, FORMATS
from modelprov.errors import ProvenanceError

from .cyclonedx import cyclonedx_json
from .html import render_html
from .jsonreport import report_dict, to_json, validate_report
from .markdown import render_markdown
from .sarif import sarif_json
from .spdx import spdx_json

DEFAULT_FORMATS = ("json", "html", "md", "cyclonedx", "sarif", "spdx")


RENDERERS: dict[str, Callable[[Any], str]] = {
    "json": to_json, "html": render_html, "md": render_markdown, "cyclonedx": cyclonedx_json,
    "sarif": sarif_json, "spdx": spdx_json,
}


def spdx_available() -> bool:
    """SPDX needs the optional `spdx-python-model` package; the default report set skips it when absent."""
    return importlib.util.find_spec("spdx_python_model") is not None


def render(report: Any, fmt: str) -> str:
    """The report as text in one format: json | html | md | cyclonedx | sarif | spdx."""
    if fmt not in FORMATS:
        raise ProvenanceError(None, f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")
    return RENDERERS[fmt](report)


def write_reports(report: Any, out_dir: str | os.PathLike[str], formats: Iterable[str] = DEFAULT_FORMATS) -> dict[str, Path]:
    """Validate, render every format in memory, then write them together; on any failure none is written.

    SARIF is always written (a run without results when the report holds no code scan); SPDX is skipped
    from the default set when `spdx-python-model` is not installed. Returns the written paths by format.
    """
    data = validate_report(report_dict(report), Path(out_dir) / FILE_NAMES["json"])
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ProvenanceError(None, f"unknown report format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if "spdx" in wanted and formats is DEFAULT_FORMATS and not spdx_available():
        wanted.remove("spdx")
    texts = {fmt: render(data, fmt) for fmt in wanted}
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise ProvenanceError(target, "report destination exists and is not a folder")
    paths = {fmt: target / FILE_NAMES[fmt] for fmt in wanted}
    # Every file goes to a temporary sibling first; the renames happen only after all were written.
    with ExitStack() as stack:
        for fmt, text in texts.items():
            handle = stack.enter_context(atomic_write(paths[fmt], "w"))
            handle.write(text)
    return paths
