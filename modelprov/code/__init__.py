"""Inference-code provenance: which reference functions a code base contains, and what their licenses demand."""

from .build import build_code_index, fetch_wheels
from .index import CodeIndex, CodeReference, default_code_index_dir, resolve_source, source_files
from .sarif import empty_sarif, to_sarif, validate_sarif
from .scan import CodeCorpus, CodeScanResult, FileResult, FunctionMatch, MatchedRegion, SourceFile, describe_tags, load_corpus, scan_code

__all__ = [
    "CodeCorpus",
    "CodeIndex",
    "CodeReference",
    "CodeScanResult",
    "FileResult",
    "FunctionMatch",
    "MatchedRegion",
    "build_code_index",
    "fetch_wheels",
    "SourceFile",
    "default_code_index_dir",
    "describe_tags",
    "empty_sarif",
    "load_corpus",
    "resolve_source",
    "scan_code",
    "source_files",
    "to_sarif",
    "validate_sarif",
]
