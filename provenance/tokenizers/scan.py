"""Tokenizer part of `provenance scan`: find the checkpoint's tokenizer, compare it with every reference."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ProvenanceError
from ..findings import Finding, LicenseObligation, Reference
from .compare import TokenizerComparison, compare_tokenizers
from .licenses import tokenizer_obligations
from .model import Tokenizer
from .readers import TOKENIZER_FILE_PATTERNS, find_tokenizer_file, read_tokenizer, tokenizer_from_gguf_metadata
from .reference import ReferenceTokenizerEntry, load_reference_entries

# Strength of a relation, to keep one finding per family (Qwen3's tokenizer is also "modified" relative
# to Qwen3.5's, which grew from it; reporting both would double-count one reuse).
VERDICT_STRENGTH = {"identical": 4, "extended": 3, "pruned": 2, "modified": 1, "unrelated": 0}
_LIST_LIMIT = 20
_RELATION = {"identical": "identical to", "extended": "an extension of", "pruned": "a pruned copy of",
             "modified": "a modified copy of", "unrelated": "unrelated to"}


def locate_tokenizer(checkpoint_path: str | os.PathLike[str]) -> Path | None:
    """The tokenizer file of a checkpoint file or folder (tokenizer.json, rank file, GGUF metadata…), or None."""
    path = Path(checkpoint_path)
    if path.is_dir():
        return find_tokenizer_file(path)
    if path.is_file():
        if any(path.match(pattern) for pattern in TOKENIZER_FILE_PATTERNS) or path.name == "merges.txt":
            return path
        return find_tokenizer_file(path.parent)
    return None


def checkpoint_tokenizer(checkpoint_path: str | os.PathLike[str], gguf_metadata: dict[str, Any] | None = None
                         ) -> tuple[Tokenizer, Path] | None:
    """The tokenizer a local checkpoint ships (file or GGUF metadata) and where it was found, or None."""
    located = locate_tokenizer(checkpoint_path)
    if located is None:
        return None
    if located.suffix.lower() == ".gguf" and gguf_metadata and "tokenizer.ggml.tokens" in gguf_metadata:
        return tokenizer_from_gguf_metadata(gguf_metadata, located), located
    return read_tokenizer(located), located


class CheckpointTokenizer:
    """A checkpoint's tokenizer, read at most once and shared by the weight matcher and the tokenizer scan."""

    def __init__(self, checkpoint_path: str | os.PathLike[str], gguf_metadata: dict[str, Any] | None = None) -> None:
        self._path, self._gguf_metadata = checkpoint_path, gguf_metadata
        self._read = False
        self._found: tuple[Tokenizer, Path] | None = None
        self._error: ProvenanceError | None = None

    @classmethod
    def of(cls, ckpt: Any) -> "CheckpointTokenizer":
        """For an opened checkpoint (its GGUF metadata reused); a Hub checkpoint has none (not fetched)."""
        return cls(ckpt.path, ckpt.metadata if ckpt.format == "gguf" else None)

    def found(self) -> tuple[Tokenizer, Path] | None:
        """The tokenizer and its file, or None; an unreadable tokenizer file raises its error."""
        if not self._read:
            self._read = True
            try:
                if Path(self._path).exists():
                    self._found = checkpoint_tokenizer(self._path, self._gguf_metadata)
            except ProvenanceError as err:
                self._error = err
        if self._error is not None:
            raise self._error
        return self._found

    def tokens(self) -> dict[bytes, int] | None:
        """The regular vocabulary (token bytes → id) for aligning embedding rows, or None.

        None also for unreadable tokenizer files: the tokenizer scan reports those; weight matching then
        aligns rows by id.
        """
        try:
            found = self.found()
        except ProvenanceError:
            return None
        return found[0].tokens if found and found[0].tokens else None


def checkpoint_tokens(ckpt: Any) -> dict[bytes, int] | None:
    """A checkpoint's regular vocabulary (token bytes → id), or None (see `CheckpointTokenizer.tokens`)."""
    return CheckpointTokenizer.of(ckpt).tokens()


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
    found = (tokenizer or CheckpointTokenizer(checkpoint_path, gguf_metadata)).found()
    if found is None:
        return [], {"tokenizer": None, "reason": "no tokenizer file found"}
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
