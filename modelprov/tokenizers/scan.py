"""Tokenizer part of a scan: compare the checkpoint's tokenizer with every reference tokenizer of the index."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelprov.findings import Finding, LicenseObligation, Reference
from modelprov.reader.tokenizer import CheckpointTokenizer, Tokenizer

from .compare import TokenizerComparison, compare_tokenizers
from .licenses import tokenizer_obligations
from .reference import ReferenceTokenizerEntry, load_reference_entries

# Strength of a relation, to keep one finding per family (Qwen3's tokenizer is also "modified" relative
# to Qwen3.5's, which grew from it; reporting both would double-count one reuse).
VERDICT_STRENGTH = {"identical": 4, "extended": 3, "pruned": 2, "modified": 1, "unrelated": 0}
_LIST_LIMIT = 20
_RELATION = {"identical": "identical to", "extended": "an extension of", "pruned": "a pruned copy of",
             "modified": "a modified copy of", "unrelated": "unrelated to"}


def compare_with_references(tokenizer: Tokenizer, index_dir: str | os.PathLike[str] | None = None,
                            entries: list[ReferenceTokenizerEntry] | None = None
                            ) -> list[tuple[ReferenceTokenizerEntry, TokenizerComparison]]:
    """Compare a tokenizer with every reference tokenizer in the index, strongest relation first."""
    entries = load_reference_entries(index_dir) if entries is None else entries
    sketch = tokenizer.sketch()
    results = [(e, compare_tokenizers(tokenizer, e.load(), suspect_sketch=sketch,
                                      reference_sketch=e.fingerprint.get("minhash")))
               for e in entries]
    results.sort(key=lambda pair: (-VERDICT_STRENGTH[pair[1].verdict], -pair[1].jaccard))
    return results


def _statistics(c: TokenizerComparison) -> dict[str, Any]:
    """The comparison's numbers for a finding, with long special-token lists cut to their first entries."""
    stats = c.to_dict()
    for key in ("only_in_suspect", "only_in_reference"):
        values = stats["special_tokens"][key]
        stats["special_tokens"][f"{key}_count"] = len(values)
        stats["special_tokens"][key] = values[:_LIST_LIMIT]
    return stats


def comparison_finding(subject: str, reference: Reference, c: TokenizerComparison, note: str = "",
                       obligations: list[LicenseObligation] | None = None) -> Finding:
    """A `Finding` (kind "tokenizer") stating the relation of the subject's tokenizer to a reference."""
    summary = f"Tokenizer {subject} is {_RELATION[c.verdict]} {reference.name}'s: {c.summary().split(': ', 1)[1]}."
    stats = _statistics(c)
    if note:
        stats["reference_note"] = note
    return Finding(kind="tokenizer", verdict=c.verdict, reference=reference, subject=subject, summary=summary,
                   statistics=stats, transformations=c.changes(), license_obligations=obligations or [])


def scan_tokenizers(checkpoint_path: str | os.PathLike[str], index_dir: str | os.PathLike[str] | None = None, *,
                    gguf_metadata: dict[str, Any] | None = None, tokenizer: CheckpointTokenizer | None = None,
                    ) -> tuple[list[Finding], dict[str, Any]]:
    """Find the checkpoint's tokenizer, compare it with the index; findings for related references, details for all.

    `gguf_metadata`: the metadata of an already opened GGUF checkpoint (`GgufCheckpoint.metadata`), so the
    file is not parsed a second time; `tokenizer`: the checkpoint's tokenizer if something already read it.
    """
    if str(checkpoint_path).startswith("hf://"):
        return [], {"tokenizer": None, "reason": "tokenizers of Hub checkpoints are not fetched"}
    shipped = tokenizer or CheckpointTokenizer(checkpoint_path, gguf_metadata)
    found = shipped.found()
    if found is None:
        return [], {"tokenizer": None, "reason": shipped.reason or "no tokenizer file found"}
    tokenizer, located = found
    base = Path(checkpoint_path)
    base = base if base.is_dir() else base.parent
    try:
        subject = located.relative_to(base).as_posix()
    except ValueError:
        subject = located.name
    tokenizer.name = subject
    entries = load_reference_entries(index_dir)
    results = compare_with_references(tokenizer, entries=entries)
    findings: list[Finding] = []
    reported: set[str] = set()
    for entry, c in results:  # strongest first: keep one finding per family (vocabulary lineage)
        family = entry.reference.family or entry.reference.name
        if c.verdict == "unrelated" or family in reported:
            continue
        reported.add(family)
        obligations = tokenizer_obligations(entry.reference, c.verdict, located, base)
        findings.append(comparison_finding(subject, entry.reference, c, entry.note, obligations))
    fp = tokenizer.fingerprint().to_dict(with_sketch=False)
    fp["special_tokens"] = len(fp["special_tokens"])
    details = {
        "tokenizer": subject,
        "fingerprint": fp,
        "comparisons": [{"reference": e.reference.name, **_statistics(c)} for e, c in results],
    }
    if not entries:
        details["reason"] = "the reference index holds no tokenizers (reference_index/build_tokenizers.py builds them)"
    return findings, details
