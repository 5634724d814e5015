"""The HTML report: one self-contained, offline file (inline CSS and SVG plots), every value escaped."""

from __future__ import annotations

from typing import Any

from .jsonreport import report_dict
from .templates import template_environment
from .view import build_view


def render_html(report: Any) -> str:
    """The report as a standalone HTML page: summary verdict first, then evidence, then how to reproduce."""
    data = report_dict(report)
    return template_environment(autoescape=True).get_template("report.html.j2").render(r=data, v=build_view(data))
