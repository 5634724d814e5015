"""The HTML report: one self-contained, offline file (inline CSS and SVG plots), every value escaped."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from .jsonreport import report_dict
from .view import TOKENIZER_COLUMNS, build_view, flat_statistics, fmt, fmt_bytes, fmt_lines, fmt_share


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    """Templates from `provenance/report/templates`; autoescape on, because reports quote untrusted text."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("provenance.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(fmt=fmt, share=fmt_share, size=fmt_bytes, lines=fmt_lines, flat=flat_statistics,
                       tokenizer_columns=TOKENIZER_COLUMNS)
    return env


def render_html(report: Any) -> str:
    """The report as a standalone HTML page: summary verdict first, then evidence, then how to reproduce."""
    data = report_dict(report)
    return template_environment().get_template("report.html.j2").render(r=data, v=build_view(data))
