"""modelprov: audit where an AI model's weights, tokenizer and inference code came from.

    from modelprov.scan import scan
    from modelprov import apply_policy, write_reports
    report = scan("path/to/checkpoint")                     # the shipped reference index by default
    result = apply_policy(report, "sovereign-foundation-model", "decl.toml", home_country="KR")
    write_reports(report, "out/")

The layers, bottom up: `reader` (formats) → `weights` → `index` → `tokenizers`, `code` → `policy` →
`report`, with the module `modelprov.scan` orchestrating them and `cli` the command line
(docs/architecture.md). The names below are imported on first use, so `import modelprov` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version as _version
from typing import TYPE_CHECKING, Any

DISTRIBUTION = "modelprov"
try:
    __version__ = _version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

# public name -> module that defines it
_API = {
    "open_checkpoint": "modelprov.reader",
    "inspect_checkpoint": "modelprov.weights",
    "compare": "modelprov.weights",
    "scan_weights": "modelprov.weights",
    "ReferenceIndex": "modelprov.index",
    "add_checkpoint": "modelprov.index",
    "scan_tokenizers": "modelprov.tokenizers",
    "scan_code": "modelprov.code",
    "apply_policy": "modelprov.policy",
    "load_policy": "modelprov.policy",
    "load_declaration": "modelprov.policy",
    "write_reports": "modelprov.report",
    "atomic_write": "modelprov._atomic",
    "render": "modelprov.report",
    "Finding": "modelprov.findings",
    "Reference": "modelprov.findings",
    "ScanReport": "modelprov.findings",
    "ProvenanceError": "modelprov.errors",
    "CheckpointError": "modelprov.errors",
    "NothingToScanError": "modelprov.errors",
    "PolicyError": "modelprov.errors",
    "ReferenceIndexError": "modelprov.errors",
}

__all__ = ["DISTRIBUTION", "__version__", *sorted(_API)]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'modelprov' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._atomic import atomic_write
    from .code import scan_code
    from .errors import CheckpointError, NothingToScanError, PolicyError, ProvenanceError, ReferenceIndexError
    from .findings import Finding, Reference, ScanReport
    from .index import ReferenceIndex, add_checkpoint
    from .policy import apply_policy, load_declaration, load_policy
    from .reader import open_checkpoint
    from .report import render, write_reports
    from .tokenizers import scan_tokenizers
    from .weights import compare, inspect_checkpoint, scan_weights
