"""`scan`: the orchestrator. Open a checkpoint, scan its weights, tokenizer and inference code against the
reference index, and return one `ScanReport` (judge it with `modelprov.policy.apply_policy`, write it with
`modelprov.report.write_reports`).
"""

from __future__ import annotations

import os
from typing import Any

from . import __version__
from .code import CodeIndex, CodeScanResult, scan_code, source_files
from .errors import ModelCardError, ReferenceIndexError
from .findings import Finding, Reference, ScanReport, Subject
from .index import ReferenceIndex, shortlist
from .policy import check_claims, front_matter_text, read_model_card, suggested_front_matter
from .progress import CODE, HASHING, RETRIEVAL, TOKENIZER, ProgressFn, byte_counter, report
from .reader import Checkpoint, CheckpointTokenizer, SuspectReader, open_checkpoint
from .report import report_timestamp
from .tokenizers import scan_tokenizers
from .weights import (
    ModelFingerprint, RetrieveFn, SketchSpec, TensorFingerprint, TokensFn, inspect_checkpoint, scan_weights,
)

VERIFY_ALL = 8  # an index with at most this many weight references is verified whole, without retrieval


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
        retrieve = _retriever(idx, progress)
        weights = scan_weights(ckpt, idx.weight_references() if retrieve is None else [], progress=progress,
                               verify_exact=verify_exact, tokens=shipped.tokens, retrieve=retrieve)
        verified = weights.details.get("retrieval", {}).get("references")
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
        claims, details["claims"] = _claims(ckpt, findings)
        findings.extend(claims)
    finally:
        if owned:
            ckpt.close()
    options = {"index": None if index is None else str(idx.root), "verify_exact": verify_exact,
               "hash_files": hash_files, "tokenizer": tokenizer, "code": code}
    return ScanReport(
        subject=subject, index=index_summary(idx, verified), parameters={"scan": options, "weights": weights.parameters},
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


def _claims(ckpt: Checkpoint, findings: list[Finding]) -> tuple[list[Finding], dict[str, Any]]:
    """What the checkpoint's model card claims, the claims its weights contradict, and the front matter the
    findings support. An unreadable card is reported in one line, not fatal: the weights were still scanned."""
    suggested = suggested_front_matter(findings)
    out: dict[str, Any] = {"card": None, "error": None, "contradictions": 0,
                           "suggested_front_matter": suggested, "suggested_front_matter_text": front_matter_text(suggested)}
    try:
        card = read_model_card(ckpt)
    except ModelCardError as err:
        out["error"] = err.one_line()
        return [], out
    contradictions = check_claims(card, findings)
    out.update(card=card.to_dict(), contradictions=len(contradictions))
    return contradictions, out


def _retriever(idx: ReferenceIndex, progress: ProgressFn | None) -> RetrieveFn | None:
    """Stage 1 for an index of more than VERIFY_ALL weight references: the shortlist its retrieval index
    returns; None (verify every reference) for a smaller index."""
    count = len(idx.entries_of("weights"))
    if count <= VERIFY_ALL:
        return None
    retrieval = idx.retrieval()
    if retrieval is None:
        raise ReferenceIndexError(idx.root, f"{count} weight references but no up-to-date retrieval index; "
                                            "run `modelprov index reindex`")

    def retrieve(reader: SuspectReader, tensors: list[TensorFingerprint], tokens: TokensFn
                 ) -> tuple[list[tuple[Reference, ModelFingerprint]], dict[str, Any]]:
        report(progress, RETRIEVAL, 0, 1)
        found = shortlist(retrieval, reader, tensors, tokens(), spec=SketchSpec())
        report(progress, RETRIEVAL, 1, 1, f"{len(found.references)} of {count} references")
        return idx.weight_references(found.references), found.to_dict()

    return retrieve


def index_summary(idx: ReferenceIndex, verified: list[str] | None = None) -> dict[str, Any]:
    """The index's name, version and digest, and whether its files still match the digest (for a shortlist:
    the files of the references verified, the retrieval index and the rest outside weights/)."""
    out = idx.summary()
    try:
        idx.verify(None if verified is None else idx.files_of(verified))
        out["verified"] = True
    except ReferenceIndexError as err:  # reported, not fatal: the report says the index was modified
        out["verified"] = False
        out["verification_problem"] = err.one_line()
    return out


def _subject(ckpt: Checkpoint, hash_files: bool, progress: ProgressFn | None = None) -> Subject:
    total = sum(f.size for f in ckpt.files()) if hash_files else 0
    return inspect_checkpoint(ckpt, hash_files=hash_files, progress=byte_counter(progress, HASHING, total)).subject()
