"""The JSON scan report: deterministic serialisation, schema validation and loading of saved reports."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import is_dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from modelprov._inputs import load_json
from modelprov.errors import ProvenanceError

SCHEMA_PATH = Path(__file__).parent / "schema" / "report.schema.json"


def report_timestamp(now: datetime | None = None) -> str:
    """ISO 8601 UTC time for `ScanReport.timestamp`; `SOURCE_DATE_EPOCH` fixes it for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if now is None and epoch:
        try:
            now = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        except ValueError as err:
            raise ProvenanceError(None, f"SOURCE_DATE_EPOCH={epoch!r} is not a whole number of seconds") from err
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain(value: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and non-finite floats into plain JSON values (NaN/inf -> null)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    tolist = getattr(value, "tolist", None)  # numpy / torch scalars and arrays
    if callable(tolist):
        return _plain(tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot put {type(value).__name__} into a JSON report")


def report_dict(report: Any) -> dict[str, Any]:
    """A `ScanReport` (or its `to_dict()`) as plain JSON data: the single input every renderer takes."""
    if is_dataclass(report) and hasattr(report, "to_dict"):
        report = report.to_dict()
    if not isinstance(report, dict):
        raise TypeError(f"expected a ScanReport or dict, got {type(report).__name__}")
    return _plain(report)


def to_json(report: Any) -> str:
    """The report as JSON text: sorted keys, two-space indent, no NaN, newline-terminated; byte-stable."""
    return json.dumps(report_dict(report), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def content_digest(report: Any) -> str:
    """sha256 of the report without its timestamp: a stable id for exports of the same scan."""
    data = {k: v for k, v in report_dict(report).items() if k != "timestamp"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, allow_nan=False).encode()).hexdigest()


@lru_cache(maxsize=1)
def report_schema() -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of the scan report."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def schema_errors(report: Any) -> list[str]:
    """Every way `report` breaks the schema, as `location: message` lines (empty when valid)."""
    validator = Draft202012Validator(report_schema())
    errors = sorted(validator.iter_errors(report_dict(report)), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]


def validate_report(report: Any, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the plain report dict, or raise `ProvenanceError` naming the first schema violation."""
    data = report_dict(report)
    errors = schema_errors(data)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ProvenanceError(path, f"not a valid scan report: {errors[0]}{more}")
    return data


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a saved `report.json`."""
    if not Path(path).exists():
        raise ProvenanceError(path, "no such report file")
    data = load_json(path)
    if not isinstance(data, dict):
        raise ProvenanceError(path, f"not a scan report: the JSON is a {type(data).__name__}, not an object")
    return validate_report(data, path)
