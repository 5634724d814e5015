"""SARIF 2.1.0 for the code findings of a saved report, through the code scanner's own `to_sarif`.

`provenance.code.sarif.to_sarif` takes a `CodeScanResult` object while a saved report holds its
`to_dict()` under `details["code"]`; `code_result_from_dict` is the adapter back (ADAPTER: drop it when
`CodeScanResult.from_dict` exists in `provenance.code.scan`).
"""

from __future__ import annotations

import json
from typing import Any

from provenance.errors import ProvenanceError
from provenance.findings import Finding, LicenseObligation, Reference

from .jsonreport import report_dict


def _obligations(items: list[dict[str, Any]]) -> list[LicenseObligation]:
    return [LicenseObligation(o["license"], o["obligation"], o.get("met"), o.get("detail", "")) for o in items]


def _finding(d: dict[str, Any]) -> Finding:
    return Finding(
        kind=d["kind"], verdict=d["verdict"], reference=Reference(**d["reference"]), subject=d["subject"],
        summary=d["summary"], statistics=d.get("statistics", {}), parameter_count=d.get("parameter_count"),
        parameter_share=d.get("parameter_share"), license_obligations=_obligations(d.get("license_obligations", [])),
        transformations=list(d.get("transformations", [])),
    )


def code_result_from_dict(code: dict[str, Any]):
    """Rebuild `CodeScanResult` from its `to_dict()` (the inverse the code scanner does not offer yet)."""
    from dataclasses import fields

    from provenance.code.scan import CodeScanResult, FileResult, FunctionMatch, MatchedRegion

    match_fields = {f.name for f in fields(FunctionMatch)}
    files = []
    for f in code.get("files", []):
        matches = []
        for m in f.get("matches", []):
            kwargs = {k: v for k, v in m.items() if k in match_fields}
            for key in ("subject_lines", "reference_lines"):
                kwargs[key] = tuple(kwargs[key])
            kwargs["regions"] = [MatchedRegion(tuple(r["subject_lines"]), tuple(r["reference_lines"]), r["tokens"],
                                               r.get("subject_text", ""), r.get("reference_text", ""))
                                 for r in m.get("regions", [])]
            kwargs["license_obligations"] = _obligations(m.get("license_obligations", []))
            matches.append(FunctionMatch(**kwargs))
        files.append(FileResult(f["path"], f["language"], f["tokens"], f["functions"], f["matched_tokens"],
                                f.get("license", {}), matches))
    return CodeScanResult(
        root=code.get("root", "."), index=code.get("index", ""), references=code.get("references", []), files=files,
        findings=[_finding(d) for d in code.get("findings", [])], parameters=code.get("parameters", {}),
        subject_licenses=code.get("subject_licenses", {}),
    )


def has_code_results(report: Any) -> bool:
    """True when the report carries a code scan (the only input SARIF describes)."""
    code = (report_dict(report).get("details") or {}).get("code") or {}
    return isinstance(code.get("files"), list)


def to_sarif(report: Any) -> dict[str, Any]:
    """The code scan of a report as a SARIF 2.1.0 log (validated against the bundled schema)."""
    from provenance.code.sarif import to_sarif as code_to_sarif, validate_sarif

    data = report_dict(report)
    if not has_code_results(data):
        raise ProvenanceError(None, "the report holds no code scan (details.code); SARIF describes code findings only")
    try:
        result = code_result_from_dict(data["details"]["code"])
    except (KeyError, TypeError, ValueError) as err:
        raise ProvenanceError(None, f"details.code is not a code scan result: {err!r}") from err
    document = code_to_sarif(result)
    validate_sarif(document)
    return document


def sarif_json(report: Any) -> str:
    return json.dumps(to_sarif(report), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
