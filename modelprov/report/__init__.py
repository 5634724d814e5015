"""Evidence reports of a scan: JSON (with a published schema), HTML, Markdown, CycloneDX 1.6 ML-BOM,
SARIF for code findings and SPDX 3 (AI); plus `verify_checkpoint`, which re-hashes a checkpoint against
the files a saved report describes.

Every renderer takes `ScanReport.to_dict()` (or the `ScanReport`), so a saved `report.json` renders the
same as the scan that made it.
"""

from .cyclonedx import cyclonedx_json, to_cyclonedx, validate_cyclonedx
from .html import render_html
from .jsonreport import (
    SCHEMA_PATH, load_report, report_dict, report_schema, report_timestamp, schema_errors, to_json, validate_report,
)
from .markdown import render_markdown
from .sarif import sarif_json, to_sarif
from .spdx import spdx_json, to_spdx
from .verify import FileCheck, VerifyResult, verify_checkpoint
from .wording import (
    bytes_statement, finding_statements, fmt_p, fmt_share, fmt_similarity, key_statistics, probability_words,
    statistic_label, statistic_value, verdict_phrase,
)
from .writer import DEFAULT_FORMATS, FILE_NAMES, FORMATS, render, write_reports

__all__ = [
    "DEFAULT_FORMATS", "FILE_NAMES", "FORMATS", "SCHEMA_PATH", "FileCheck", "VerifyResult", "bytes_statement",
    "cyclonedx_json", "finding_statements", "fmt_p", "fmt_share", "fmt_similarity", "key_statistics", "load_report",
    "probability_words", "render", "render_html", "render_markdown", "report_dict", "report_schema",
    "report_timestamp", "sarif_json", "schema_errors", "spdx_json", "statistic_label", "statistic_value",
    "to_cyclonedx", "to_json", "to_sarif", "to_spdx", "validate_cyclonedx", "validate_report", "verdict_phrase",
    "verify_checkpoint", "write_reports",
]
