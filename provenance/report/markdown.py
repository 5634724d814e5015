"""The Markdown summary: verdict, findings, obligations and policy, safe to paste into a review thread."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import jinja2

from .jsonreport import report_dict
from .view import build_view, fmt, fmt_bytes, fmt_lines, fmt_share

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_text(value: Any) -> str:
    """Untrusted text as inert Markdown on one line: HTML neutralised, Markdown syntax backslash-escaped."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(value: Any) -> str:
    """Untrusted text as an inline code span that no backtick or pipe in it can close or break."""
    text = " ".join(str(value).split()).replace("|", "¦")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_fence(lines: list[str]) -> str:
    """A code fence longer than any backtick run in `lines`, so their text cannot end the block early."""
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("provenance.report", "templates"),
        autoescape=False,  # Markdown: escaping is explicit through md()/code()
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(fmt=fmt, share=fmt_share, size=fmt_bytes, lines=fmt_lines, md=md_text, code=md_code,
                       fence=md_fence)
    return env


def render_markdown(report: Any) -> str:
    """The report as Markdown (no plots): what a reviewer pastes into a ticket or review."""
    data = report_dict(report)
    text = _environment().get_template("report.md.j2").render(r=data, v=build_view(data, with_plots=False))
    return re.sub(r"\n{3,}", "\n\n", text)
