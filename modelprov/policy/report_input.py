"""Rebuild `Finding`s from a saved scan report (`ScanReport.to_dict()` as JSON), for `policy check`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from modelprov.errors import PolicyError
from modelprov.findings import FINDING_KINDS, Finding, Reference

from .source import read_document

_KINDS = FINDING_KINDS
_REFERENCE_FIELDS = {f.name for f in fields(Reference)}


def finding_from_dict(data: dict[str, Any], *, where: str = "finding") -> Finding:
    """The inverse of `Finding.to_dict()`; ValueError names the missing or mistyped field."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object")
    for key in ("kind", "verdict", "reference", "subject"):
        if key not in data:
            raise ValueError(f"{where}: missing field {key!r}")
    if data["kind"] not in _KINDS:
        raise ValueError(f"{where}.kind: expected one of {', '.join(_KINDS)}, got {data['kind']!r}")
    reference = data["reference"]
    if not isinstance(reference, dict) or not reference.get("name"):
        raise ValueError(f"{where}.reference: expected an object with a 'name'")
    for key in _REFERENCE_FIELDS & set(reference):
        if reference[key] is not None and not isinstance(reference[key], str):
            raise ValueError(f"{where}.reference.{key}: expected a string")
    obligations = data.get("license_obligations") or []
    if not isinstance(obligations, list) or not all(isinstance(o, dict) for o in obligations):
        raise ValueError(f"{where}.license_obligations: expected a list of objects")
    for i, o in enumerate(obligations):
        if not isinstance(o.get("license"), str) or not isinstance(o.get("obligation"), str):
            raise ValueError(f"{where}.license_obligations[{i}]: expected 'license' and 'obligation' strings")
        if o.get("met") not in (True, False, None):
            raise ValueError(f"{where}.license_obligations[{i}].met: expected true, false or null")
    statistics = data.get("statistics") or {}
    if not isinstance(statistics, dict):
        raise ValueError(f"{where}.statistics: expected an object")
    for key, kinds in (("parameter_share", (int, float)), ("parameter_count", (int,))):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise ValueError(f"{where}.{key}: expected a number or null")
    return Finding.from_dict(data)


def load_report_findings(path: str | Path) -> tuple[list[Finding], dict[str, Any]]:
    """Findings and the `subject` block of a saved scan report; PolicyError names file, line and field."""
    document = read_document(path)
    if document.path.suffix.lower() != ".json":
        raise PolicyError(path, "a scan report must be a .json file written by `modelprov scan --json`")
    raw = document.data.get("findings")
    if not isinstance(raw, list):
        raise PolicyError(path, "not a scan report: no 'findings' list")
    findings = []
    for index, item in enumerate(raw):
        try:
            findings.append(finding_from_dict(item, where=f"findings[{index}]"))
        except (ValueError, TypeError) as err:
            raise PolicyError(path, str(err)) from None
    subject = document.data.get("subject")
    return findings, subject if isinstance(subject, dict) else {}


def load_report_details(path: str | Path) -> dict[str, Any]:
    """The `details` block of a saved scan report ({} when absent), e.g. the model card's claims."""
    details = read_document(path).data.get("details")
    return details if isinstance(details, dict) else {}
