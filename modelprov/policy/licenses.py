"""License classes from `licenses.toml`: which ids allow commercial use and which carry naming duties.

SPDX expressions are parsed with `license-expression`; an OR lets the licensee pick the kinder
alternative, an AND binds them to all. Facts live in the data file, not in code.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from license_expression import LicenseSymbol, Licensing, get_spdx_licensing
from license_expression import ExpressionError

_TABLE_FILE = "licenses.toml"


@dataclass(frozen=True)
class LicenseTerms:
    """What one license id (or id pattern) allows and demands."""

    pattern: str
    commercial: bool | None
    duties: tuple[str, ...] = ()
    note: str = ""


@dataclass
class LicenseAssessment:
    """The judgement of one license expression: commercial use allowed (None: unknown) and duties."""

    expression: str | None
    commercial: bool | None
    duties: list[str] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)
    problem: str | None = None  # the expression could not be parsed, or is missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "commercial": self.commercial,
            "duties": list(self.duties),
            "unknown_ids": list(self.unknown_ids),
            "problem": self.problem,
        }


@lru_cache(maxsize=1)
def license_table() -> tuple[LicenseTerms, ...]:
    """The shipped license classes, in file order."""
    text = resources.files(__package__).joinpath(_TABLE_FILE).read_text(encoding="utf-8")
    table = tomllib.loads(text)["licenses"]
    return tuple(
        LicenseTerms(
            pattern=pattern,
            commercial=entry.get("commercial"),
            duties=tuple(entry.get("duties", ())),
            note=entry.get("note", ""),
        )
        for pattern, entry in table.items()
    )


@lru_cache(maxsize=1)
def _licensing() -> Licensing:
    return get_spdx_licensing()


def terms_for(license_id: str, extra_non_commercial: tuple[str, ...] = ()) -> LicenseTerms | None:
    """The table entry for one id (case-insensitive, `*` patterns); policy extras mark ids non-commercial."""
    folded = license_id.casefold()
    for pattern in extra_non_commercial:
        if fnmatch.fnmatchcase(folded, pattern.casefold()):
            return LicenseTerms(pattern, commercial=False, note="non-commercial according to the policy")
    for terms in license_table():
        if fnmatch.fnmatchcase(folded, terms.pattern.casefold()):
            return terms
    return None


def assess_license(expression: str | None, extra_non_commercial: tuple[str, ...] = ()) -> LicenseAssessment:
    """Judge an SPDX expression such as `Apache-2.0`, `LicenseRef-llama3` or `MIT OR CC-BY-NC-4.0`."""
    if expression is None or not expression.strip():
        return LicenseAssessment(expression, None, problem="no license recorded")
    try:
        parsed = _licensing().parse(expression, validate=False)
    except ExpressionError as err:
        return LicenseAssessment(expression, None, problem=f"cannot parse license expression: {err}")
    if parsed is None:
        return LicenseAssessment(expression, None, problem="empty license expression")
    unknown: list[str] = []
    commercial, duties = _judge(parsed, extra_non_commercial, unknown)
    return LicenseAssessment(expression, commercial, duties, sorted(set(unknown)))


def _judge(node: Any, extra: tuple[str, ...], unknown: list[str]) -> tuple[bool | None, list[str]]:
    """(commercial use allowed, duties) of an expression node; OR takes the kinder branch, AND all."""
    if isinstance(node, LicenseSymbol):
        terms = terms_for(node.key, extra)
        if terms is None:
            unknown.append(node.key)
            return None, []
        return terms.commercial, [f"{node.key}: {duty}" for duty in terms.duties]
    branches = [_judge(arg, extra, unknown) for arg in node.args]
    if node.operator.strip().upper() == "OR":
        allowed = [b for b in branches if b[0] is True]
        if allowed:
            return True, min((b[1] for b in allowed), key=len)
        if any(b[0] is None for b in branches):
            return None, []
        return False, []
    verdicts = [b[0] for b in branches]
    commercial = False if False in verdicts else (None if None in verdicts else True)
    return commercial, [duty for b in branches for duty in b[1]]
