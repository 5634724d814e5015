"""Inference-code provenance: which reference functions a code base contains, and what their licenses demand."""

from .index import CodeIndex, CodeReference, default_code_index_dir, resolve_source, source_files
from .sarif import empty_sarif, to_sarif, validate_sarif
from .scan import CodeScanResult, FileResult, FunctionMatch, MatchedRegion, scan_code

__all__ = [
    "CodeIndex",
    "CodeReference",
    "CodeScanResult",
    "FileResult",
    "FunctionMatch",
    "MatchedRegion",
    "default_code_index_dir",
    "empty_sarif",
    "resolve_source",
    "scan_code",
    "source_files",
    "to_sarif",
    "validate_sarif",
]
