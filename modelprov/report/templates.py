"""The jinja2 environment of the report templates (`modelprov/report/templates/*.j2`)."""

from __future__ import annotations

from functools import lru_cache

import jinja2

from .view import TOKENIZER_COLUMNS, flat_statistics
from .wording import fmt, fmt_bytes, fmt_lines, fmt_share, fmt_similarity, statistic_label


@lru_cache(maxsize=2)
def template_environment(autoescape: bool) -> jinja2.Environment:
    """Templates with the value formatters as globals; HTML autoescapes, because reports quote untrusted text."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(fmt=fmt, share=fmt_share, size=fmt_bytes, lines=fmt_lines, flat=flat_statistics,
                       label=statistic_label, fmt_sim=fmt_similarity, tokenizer_columns=TOKENIZER_COLUMNS)
    return env
