"""The Markdown summary: verdict, findings, obligations and policy, safe to paste into a review thread."""

from __future__ import annotations

import re
from typing import Any

from modelprov.text import printable

from .jsonreport import report_dict
from .templates import template_environment
from .view import build_view

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


def render_markdown(report: Any) -> str:
    """The report as Markdown (no plots): what a reviewer pastes into a ticket or review."""
    data = report_dict(report)
    env = template_environment(autoescape=False)  # Markdown: escaping is explicit through md()/code()
    text = env.get_template("report.md.j2").render(r=data, v=build_view(data, with_plots=False), md=md_text,
                                                    code=md_code, fence=md_fence)
    return printable(re.sub(r"\n{3,}", "\n\n", text), newlines=True)  # no file's name can drive a terminal
