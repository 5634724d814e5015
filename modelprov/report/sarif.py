"""SARIF 2.1.0 for the code findings of a saved report, through the code scanner's own `to_sarif`; a report
without a code scan gets a run with the tool metadata and no results, so CI pipelines always find the file."""

from __future__ import annotations

import json
from typing import Any

from modelprov.code import CodeScanResult
from modelprov.code.sarif import to_sarif as code_to_sarif
from modelprov.code.sarif import empty_sarif, validate_sarif
from modelprov.errors import ProvenanceError

from .jsonreport import report_dict


def has_code_results(report: Any) -> bool:
    """True when the report carries a code scan (the only input SARIF describes)."""
    code = (report_dict(report).get("details") or {}).get("code") or {}
    return isinstance(code.get("files"), list)


def to_sarif(report: Any) -> dict[str, Any]:
    """The code scan of a report as a SARIF 2.1.0 log (validated against the bundled schema); no results when
    the report holds no code scan."""
    data = report_dict(report)
    if not has_code_results(data):
        document = empty_sarif("no code was scanned: the checkpoint ships no source files, or the index holds no "
                               "code references")
        validate_sarif(document)
        return document
    try:
        result = CodeScanResult.from_dict(data["details"]["code"])
    except (KeyError, TypeError, ValueError) as err:
        raise ProvenanceError(None, f"details.code is not a code scan result: {err!r}") from err
    document = code_to_sarif(result)
    validate_sarif(document)
    return document


def sarif_json(report: Any) -> str:
    return json.dumps(to_sarif(report), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
