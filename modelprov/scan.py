"""`scan`: the orchestrator. Open a checkpoint, scan its weights, tokenizer and inference code against the
reference index, and return one `ScanReport` (judge it with `modelprov.policy.apply_policy`, write it with
`modelprov.report.write_reports`).
"""

from __future__ import annotations

import os
from typing import Any

from . import __version__
from .code import CodeIndex, CodeScanResult, scan_code, source_files
from .errors import ReferenceIndexError
from .findings import ScanReport, Subject
from .index import ReferenceIndex
from .progress import CODE, HASHING, TOKENIZER, ProgressFn, byte_counter, report
from .reader import Checkpoint, CheckpointTokenizer, open_checkpoint
from .report import report_timestamp
from .tokenizers import scan_tokenizers
from .weights import inspect_checkpoint, scan_weights


def scan(path: str | os.PathLike[str] | Checkpoint, index: ReferenceIndex | str | os.PathLike[str] | None = None,
         *, progress: ProgressFn | None = None, verify_exact: bool = True, hash_files: bool = True,
         tokenizer: bool = True, code: bool = True, follow_symlinks: bool = True) -> ScanReport:
    """Scan a checkpoint against a reference index (default: the shipped one) and return the report.

    Weights always; the tokenizer when the checkpoint carries one; inference code when the checkpoint
    folder holds source files and the index has code references. `progress(stage, done, total, item)` hears
    each stage (modelprov.progress): hashing files, weights sketches, confirming copies, neuron matching,
    tokenizer, code. `follow_symlinks=False` refuses files that link out of the checkpoint folder.
    """
    idx = index if isinstance(index, ReferenceIndex) else ReferenceIndex.load(index)
    owned = not isinstance(path, Checkpoint)
    ckpt = open_checkpoint(path, follow_symlinks=follow_symlinks) if owned else path
    try:
        subject = _subject(ckpt, hash_files, progress)
        shipped = CheckpointTokenizer.of(ckpt)  # read at most once, by whichever part needs it first
        weights = scan_weights(ckpt, idx.weight_references(), progress=progress, verify_exact=verify_exact,
                               tokens=shipped.tokens)
        findings = list(weights.findings)
        details: dict[str, Any] = {"weights": weights.details}
        if tokenizer and ckpt.path.exists():  # a Hub checkpoint's tokenizer is not fetched
            report(progress, TOKENIZER, 0, 1)
            tok_findings, details["tokenizer"] = scan_tokenizers(str(ckpt.path), idx.root, tokenizer=shipped)
            report(progress, TOKENIZER, 1, 1, str(details["tokenizer"].get("tokenizer") or ""))
            findings.extend(tok_findings)
        code_result = _scan_checkpoint_code(ckpt, idx, progress) if code else None
        if code_result is not None:
            findings.extend(code_result.findings)
            details["code"] = code_result.to_dict()
    finally:
        if owned:
            ckpt.close()
    options = {"index": None if index is None else str(idx.root), "verify_exact": verify_exact,
               "hash_files": hash_files, "tokenizer": tokenizer, "code": code}
    return ScanReport(
        subject=subject, index=index_summary(idx), parameters={"scan": options, "weights": weights.parameters},
        findings=findings, details=details, tool_version=__version__, timestamp=report_timestamp(),
    )


def _scan_checkpoint_code(ckpt: Checkpoint, idx: ReferenceIndex, progress: ProgressFn | None = None,
                          ) -> CodeScanResult | None:
    """Scan the source files of a local checkpoint folder (modelling code shipped with weights), if any."""
    if not ckpt.path.exists():  # a Hub checkpoint: its code is not fetched
        return None
    code_index = idx.root / "code"
    if not CodeIndex(code_index).has_references():
        return None
    folder = ckpt.path if ckpt.path.is_dir() else ckpt.path.parent
    files = source_files(folder)  # the code scanner's own walk: same files it would scan
    if not files:
        return None
    report(progress, CODE, 0, len(files))
    result = scan_code(folder, code_index)
    report(progress, CODE, len(files), len(files))
    return result


def index_summary(idx: ReferenceIndex) -> dict[str, Any]:
    """The index's name, version and digest, and whether its files still match the digest."""
    out = idx.summary()
    try:
        idx.verify()
        out["verified"] = True
    except ReferenceIndexError as err:  # reported, not fatal: the report says the index was modified
        out["verified"] = False
        out["verification_problem"] = err.one_line()
    return out


def _subject(ckpt: Checkpoint, hash_files: bool, progress: ProgressFn | None = None) -> Subject:
    total = sum(f.size for f in ckpt.files()) if hash_files else 0
    return inspect_checkpoint(ckpt, hash_files=hash_files, progress=byte_counter(progress, HASHING, total)).subject()
