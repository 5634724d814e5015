"""Compare two tokenizers and classify their relation: identical, extended, pruned, modified or unrelated.

Independently trained byte-level BPE vocabularies share many tokens (measured on the shipped references:
Jaccard up to 0.49, up to 87% of the smaller vocabulary found in the larger, merge-order rank correlation
up to 0.78, almost no shared ids; see docs/tokenizers.md). Overlap alone is therefore weak evidence; a
relation needs a near-identical token set, kept ids, or a merge order that agrees far beyond that null.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelprov.reader.tokenizer import Tokenizer, estimate_jaccard
from modelprov.weights.similarity import spearman_rho

# Thresholds (see module docstring and docs/tokenizers.md for the null they are set against).
SUBSET = 0.999  # share of one vocabulary found in the other to call it a subset
IDS_KEPT = 0.99  # share of shared tokens at the same id to call the original ids kept
RELATED_JACCARD = 0.8  # independent pairs: <= 0.49
RELATED_ID_AGREEMENT = 0.5  # independent pairs: ~0.0
RELATED_MERGE_CORRELATION = 0.95  # independent pairs: <= 0.78
TOP_MERGES = 1000  # reported: share of the first 1000 merges in common (independent pairs: <= 0.58)
MIN_SHARED = 1000  # fewer shared tokens than this is too little to call a relation (byte alphabets alone: 256)
# Added tokens (tokenizer.add_tokens, GGUF user-defined) the reference lacks that make an otherwise identical
# vocabulary "extended": more than a chat template's markup (Qwen3 has 26, DeepSeek-V3 1,283 of its own).
ADDED_EXTENSION = 100
SAME_MERGE_ORDER = 0.999  # rank correlation at which the same merge products count as the same order


@dataclass
class MergeAgreement:
    """How far two BPE merge orders agree, over the tokens both produce by merging."""

    suspect_merges: int
    reference_merges: int
    shared_products: int
    common_prefix: int  # length of the longest common prefix of the two merge orders
    rank_correlation: float | None  # Spearman correlation of merge positions over shared products
    top_overlap: float  # share of the reference's first TOP_MERGES merges among the suspect's first TOP_MERGES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SpecialTokenAgreement:
    """Special/added tokens (compared as text) both tokenizers define, and how many keep their id."""

    shared: int
    same_id: int
    only_in_suspect: list[str]
    only_in_reference: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TokenizerComparison:
    """The relation of a suspect tokenizer to a reference, with the numbers behind the verdict."""

    suspect: str
    reference: str
    verdict: str  # identical | extended | pruned | modified | unrelated
    reasons: list[str]
    suspect_tokens: int
    reference_tokens: int
    shared_tokens: int
    jaccard: float
    jaccard_estimate: float  # from 256-permutation MinHash sketches
    suspect_in_reference: float  # share of the suspect's tokens found in the reference
    reference_in_suspect: float  # share of the reference's tokens found in the suspect
    id_agreement: float  # share of shared tokens with the same id in both
    id_offset: int  # most common (suspect id - reference id) over shared tokens
    id_offset_share: float
    merges: MergeAgreement | None
    special_tokens: SpecialTokenAgreement

    @property
    def related(self) -> bool:
        return self.verdict != "unrelated"

    def changes(self) -> list[str]:
        """What differs from the reference, in words (the transformations a finding lists)."""
        if self.verdict == "extended":
            added = self.suspect_tokens - self.shared_tokens
            if added:
                return [f"{added:,} tokens added after the reference vocabulary (ids kept)"]
            return [f"{len(self.special_tokens.only_in_suspect):,} added tokens the reference lacks (vocabulary kept)"]
        if self.verdict == "pruned":
            return [f"{self.reference_tokens - self.shared_tokens:,} reference tokens removed"]
        if self.verdict != "modified":
            return []
        out = []
        if self.shared_tokens < self.reference_tokens:
            out.append(f"{self.reference_tokens - self.shared_tokens:,} reference tokens missing")
        if self.shared_tokens < self.suspect_tokens:
            out.append(f"{self.suspect_tokens - self.shared_tokens:,} tokens not in the reference")
        if self.id_agreement < 1.0:
            moved = round(self.shared_tokens * (1 - self.id_agreement))
            out.append(f"{moved:,} shared tokens at other ids")
        return out

    def summary(self) -> str:
        """One sentence a reviewer can read."""
        text = (f"{self.verdict}: {self.shared_tokens:,} shared tokens (Jaccard {self.jaccard:.3f}; "
                f"{self.suspect_in_reference:.1%} of suspect in reference, {self.reference_in_suspect:.1%} of "
                f"reference in suspect), ids agree for {self.id_agreement:.1%}")
        if self.merges is not None and self.merges.rank_correlation is not None:
            text += (f", merge order rank correlation {self.merges.rank_correlation:.3f} "
                     f"(common prefix {self.merges.common_prefix:,})")
        sp = self.special_tokens
        if sp.only_in_suspect or sp.only_in_reference or sp.same_id < sp.shared:
            text += (f"; special tokens: {sp.shared} shared ({sp.same_id} at the same id), "
                     f"{len(sp.only_in_suspect)} only in suspect, {len(sp.only_in_reference)} only in reference")
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d


def _merge_agreement(suspect: list[bytes], reference: list[bytes]) -> MergeAgreement:
    prefix = 0
    for x, y in zip(suspect, reference):
        if x != y:
            break
        prefix += 1
    ref_pos = {t: i for i, t in enumerate(reference)}
    pairs = [(i, ref_pos[t]) for i, t in enumerate(suspect) if t in ref_pos]
    rho = None
    if len(pairs) >= 3:
        a, b = np.asarray(pairs, dtype=np.int64).T
        rho = spearman_rho(a, b)
    k = min(TOP_MERGES, len(reference))
    top = len(set(suspect[:TOP_MERGES]) & set(reference[:TOP_MERGES])) / k if k else 0.0
    return MergeAgreement(len(suspect), len(reference), len(pairs), prefix, rho, top)


def _special_agreement(suspect: dict[str, int], reference: dict[str, int]) -> SpecialTokenAgreement:
    shared = suspect.keys() & reference.keys()
    return SpecialTokenAgreement(
        shared=len(shared),
        same_id=sum(suspect[t] == reference[t] for t in shared),
        only_in_suspect=sorted(suspect.keys() - reference.keys(), key=lambda t: suspect[t]),
        only_in_reference=sorted(reference.keys() - suspect.keys(), key=lambda t: reference[t]),
    )


def compare_tokenizers(suspect: Tokenizer, reference: Tokenizer, *, suspect_sketch: list[int] | None = None,
                       reference_sketch: list[int] | None = None) -> TokenizerComparison:
    """Compare the suspect's normalised vocabulary, ids and merge order with the reference's and classify."""
    s_tokens, r_tokens = suspect.tokens, reference.tokens
    shared = s_tokens.keys() & r_tokens.keys()
    n_s, n_r, n = len(s_tokens), len(r_tokens), len(shared)
    union = n_s + n_r - n
    jaccard = n / union if union else 1.0
    s_in_r = n / n_s if n_s else 0.0
    r_in_s = n / n_r if n_r else 0.0
    offsets = np.fromiter((s_tokens[t] - r_tokens[t] for t in shared), dtype=np.int64, count=n)
    same_id = int(np.count_nonzero(offsets == 0))
    id_agreement = same_id / n if n else 0.0
    offset, offset_count = 0, 0
    if n:
        values, counts = np.unique(offsets, return_counts=True)
        offset, offset_count = int(values[np.argmax(counts)]), int(counts.max())
    merges = None
    if suspect.merges is not None and reference.merges is not None:
        merges = _merge_agreement(suspect.merges, reference.merges)
    specials = _special_agreement(suspect.special_tokens, reference.special_tokens)
    estimate = estimate_jaccard(suspect_sketch or suspect.sketch(), reference_sketch or reference.sketch())

    reasons: list[str] = []
    if jaccard >= RELATED_JACCARD:
        reasons.append(f"token sets nearly identical (Jaccard {jaccard:.3f} >= {RELATED_JACCARD})")
    if n >= MIN_SHARED and id_agreement >= RELATED_ID_AGREEMENT:
        reasons.append(f"{id_agreement:.1%} of {n:,} shared tokens keep their id")
    if (merges is not None and merges.rank_correlation is not None and merges.shared_products >= MIN_SHARED
            and merges.rank_correlation >= RELATED_MERGE_CORRELATION):
        reasons.append(f"merge orders agree (rank correlation {merges.rank_correlation:.3f}, "
                       f"{merges.top_overlap:.1%} of the first {TOP_MERGES} merges shared)")
    if n >= MIN_SHARED and n_s < n_r and s_in_r >= SUBSET:  # independent pairs: at most 0.872 contained
        reasons.append(f"{s_in_r:.2%} of the suspect's {n_s:,} tokens are reference tokens (ids reordered or not)")
    related = bool(reasons) and n >= min(MIN_SHARED, n_s, n_r)
    # Same merge products in (almost) the same order: converters may list ties differently; the vocabulary
    # and ids are what a reused embedding depends on.
    same_merges = merges is None or suspect.merges == reference.merges or (
        merges.shared_products == merges.suspect_merges == merges.reference_merges
        and merges.rank_correlation is not None and merges.rank_correlation >= SAME_MERGE_ORDER)

    added_only = [t for t in specials.only_in_suspect if t.encode("utf-8") not in r_tokens]
    if n == n_s == n_r and id_agreement == 1.0 and same_merges and n > 0:
        verdict = "identical"
        if len(added_only) >= ADDED_EXTENSION:
            verdict = "extended"
            reasons.append(f"reference vocabulary kept whole; {len(added_only):,} added tokens it lacks")
    elif not related:
        verdict = "unrelated"
    elif r_in_s >= SUBSET and n_s > n_r and id_agreement >= IDS_KEPT:
        verdict = "extended"
        reasons.append(f"reference vocabulary contained ({r_in_s:.2%}) with ids kept; {n_s - n:,} tokens added")
    elif s_in_r >= SUBSET and n_s < n_r:
        verdict = "pruned"
        reasons.append(f"suspect vocabulary contained in the reference ({s_in_r:.2%}); {n_r - n:,} tokens removed")
    else:
        verdict = "modified"
    result = TokenizerComparison(
        suspect=suspect.name or suspect.source, reference=reference.name or reference.source, verdict=verdict,
        reasons=reasons, suspect_tokens=n_s, reference_tokens=n_r, shared_tokens=n, jaccard=jaccard,
        jaccard_estimate=estimate, suspect_in_reference=s_in_r, reference_in_suspect=r_in_s,
        id_agreement=id_agreement, id_offset=int(offset), id_offset_share=offset_count / n if n else 0.0,
        merges=merges, special_tokens=specials,
    )
    if verdict == "modified":
        result.reasons.extend(result.changes() or ["merge order differs"])
    return result
