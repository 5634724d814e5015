"""What a finding says once the policy's thresholds are applied: copy, derived, uncertain or independent.

The policy can only escalate a detector's verdict with its own thresholds (a "derived" verdict is never
downgraded), so a policy stays meaningful when a detector's defaults change.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

from modelprov.findings import Finding

# Component names that mark a part bolted onto the backbone rather than the backbone itself.
DEFAULT_COMPONENT_PATTERNS = (
    r"vision", r"visual", r"\bvit\b", r"image", r"audio", r"speech", r"whisper", r"siglip", r"clip",
    r"projector", r"mm_", r"multi_modal", r"adapter", r"connector",
)


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds (provisional until the detection benchmark measures error rates; see docs/policy.md)."""

    copy_similarity: float = 0.98  # median centred similarity at or above which weights count as copied/frozen
    near_copy_similarity: float = 0.95  # at or above: reuse beyond doubt, copy not excluded (REVIEW on copy rules)
    derived_similarity: float = 0.1  # and at least this median centred similarity (independent nulls stay < 0.03)
    derived_p_value: float = 1e-6  # independence-test p-value at or below which weights count as derived
    review_similarity: float = 0.05  # grey zone: p ≤ review_p_value with at least this similarity → REVIEW
    review_p_value: float = 1e-3
    backbone_share: float = 0.5  # a component with at least this share of parameters is the backbone

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def check(self) -> list[tuple[str, str]]:
        """(field, problem) for values outside their range or out of order."""
        problems = []
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0 or math.isnan(value):
                problems.append((f.name, f"must be between 0 and 1, got {value}"))
        if self.near_copy_similarity > self.copy_similarity:
            problems.append(("near_copy_similarity", "must not exceed copy_similarity"))
        if self.review_similarity > self.derived_similarity:
            problems.append(("review_similarity", "must not exceed derived_similarity"))
        if self.derived_p_value > self.review_p_value:
            problems.append(("derived_p_value", "must not exceed review_p_value"))
        return problems


THRESHOLD_NAMES = tuple(f.name for f in fields(Thresholds))


class Relation(str, Enum):
    """How much of the reference is in the subject, after thresholds."""

    COPY = "copy"  # copied or frozen: copy-level similarity, identical tokenizer, copied code
    NEAR_COPY = "near-copy"  # weights between near_copy_similarity and copy_similarity
    DERIVED = "derived"  # initialised from or built on the reference, then changed
    UNCERTAIN = "uncertain"  # evidence in the grey zone: a human must look
    OUTPUT_ALIGNED = "output-aligned"  # embedding basis aligned, no layer matches: distillation, no weights reused
    INDEPENDENT = "independent"

    @property
    def is_reuse(self) -> bool:
        return self in (Relation.COPY, Relation.NEAR_COPY, Relation.DERIVED)

    @property
    def phrase(self) -> str:
        """How the subject relates to a reference, for reasons: "copied from", "derived from"…"""
        return {
            Relation.COPY: "copied from",
            Relation.NEAR_COPY: "nearly identical to",
            Relation.DERIVED: "derived from",
            Relation.UNCERTAIN: "possibly derived from",
            Relation.OUTPUT_ALIGNED: "output-aligned with",
            Relation.INDEPENDENT: "independent of",
        }[self]


def centred_similarity(finding: Finding) -> float | None:
    """The finding's median mean-centred similarity, if it reports one."""
    return _number(finding.statistics, "centred_similarity", "centered_similarity")


def log10_p_value(finding: Finding) -> float | None:
    """log10 of the finding's (combined) independence-test p-value; `log10_p` is preferred (no underflow)."""
    log_p = _number(finding.statistics, "log10_p")
    if log_p is not None:
        return log_p
    p = _number(finding.statistics, "p_value", "combined_p_value")
    if p is None:
        return None
    return math.log10(p) if p > 0 else -math.inf


def _at_most(log_p: float | None, threshold: float) -> bool:
    """p ≤ threshold, compared on the log scale."""
    if log_p is None or threshold <= 0:
        return False
    return log_p <= math.log10(threshold)


def _number(statistics: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = statistics.get(key)
        if isinstance(value, dict):  # {"median": …} style
            value = value.get("median", value.get("value"))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
            return float(value)
    return None


def relation(finding: Finding, thresholds: Thresholds) -> Relation:
    """Classify a finding under `thresholds`; unknown verdict words are UNCERTAIN, never independent."""
    verdict = finding.verdict.strip().lower()
    if finding.kind == "claim":  # a statement the card makes, not reuse: `undeclared-reuse` judges it
        return Relation.INDEPENDENT
    if finding.kind == "weights" and verdict == "output-aligned":  # never escalated: the layers were tested
        return Relation.OUTPUT_ALIGNED
    if finding.kind == "weights" and verdict == "derived" and calibrated_band(finding) in ("inconclusive", "independent"):
        return Relation.UNCERTAIN  # the calibration does not back the verdict: a human must look, no one is accused
    if finding.kind == "weights":
        similarity, log_p = centred_similarity(finding), log10_p_value(finding)
        if verdict == "copied" or (similarity is not None and similarity >= thresholds.copy_similarity):
            return Relation.COPY
        if similarity is not None and similarity >= thresholds.near_copy_similarity:
            return Relation.NEAR_COPY
        def effect_at_least(minimum: float) -> bool:  # a tiny effect with a tiny p-value is not reuse
            return similarity is None or similarity >= minimum

        if verdict == "derived" or (
            _at_most(log_p, thresholds.derived_p_value) and effect_at_least(thresholds.derived_similarity)
        ):
            return Relation.DERIVED
        if _at_most(log_p, thresholds.review_p_value) and effect_at_least(thresholds.review_similarity):
            return Relation.UNCERTAIN
        return Relation.INDEPENDENT if verdict == "independent" else Relation.UNCERTAIN
    table = {
        "code": {"copied": Relation.COPY, "derived": Relation.DERIVED, "independent": Relation.INDEPENDENT},
        "tokenizer": {
            "identical": Relation.COPY, "extended": Relation.DERIVED, "pruned": Relation.DERIVED,
            "modified": Relation.DERIVED, "unrelated": Relation.INDEPENDENT,
        },
    }.get(finding.kind)
    if table is not None:
        return table.get(verdict, Relation.UNCERTAIN)
    # architecture: any verdict other than a word for "different" means the design was reused
    return Relation.INDEPENDENT if verdict in ("independent", "unrelated", "different") else Relation.DERIVED


def calibrated_band(finding: Finding) -> str | None:
    """The finding's calibrated band ("reuse", "inconclusive", "independent"), when the scan gave one."""
    probability = finding.statistics.get("probability")
    band = probability.get("band") if isinstance(probability, dict) else None
    return band if isinstance(band, str) else None


def describe_evidence(finding: Finding) -> str:
    """`centred similarity 0.995, p=1e-40` — the numbers a reason should quote."""
    parts = []
    similarity, log_p = centred_similarity(finding), log10_p_value(finding)
    if similarity is not None:
        parts.append(f"centred similarity {similarity:.3f}")
    if log_p is not None:
        if -300 < log_p <= 0:
            parts.append(f"p={10.0 ** log_p:.2g}")
        else:  # beyond float range (or not a p-value): print the logarithm
            parts.append(f"log10 p={log_p:.0f}" if abs(log_p) < 1e9 else f"log10 p={log_p:.3g}")
    if finding.parameter_share is not None:
        parts.append(f"{finding.parameter_share:.1%} of parameters")
    probability = finding.statistics.get("probability")
    if isinstance(probability, dict) and isinstance(probability.get("reuse"), (int, float)):
        n = (probability.get("calibration") or {}).get("n")
        parts.append(f"calibrated P(reuse) {probability['reuse']:.2f} ({probability.get('band')} band, n={n})")
    return ", ".join(parts)


def parameter_share(finding: Finding, subject_parameters: int | None) -> float | None:
    """The finding's share of subject parameters, computed from its count when the share is missing."""
    if finding.parameter_share is not None:
        return finding.parameter_share
    if finding.parameter_count is not None and subject_parameters:
        return finding.parameter_count / subject_parameters
    return None


WHOLE_MODEL = "(whole model)"


def subject_parts(finding: Finding) -> list[str]:
    """The component paths a finding covers: a merged finding lists several (`a + b`, `statistics.components`)."""
    listed = finding.statistics.get("components")
    if isinstance(listed, list) and listed and all(isinstance(c, str) for c in listed):
        return list(listed)
    return [part.strip() for part in finding.subject.split(" + ") if part.strip()] or [finding.subject]


def is_component_name(subject: str, patterns: tuple[str, ...]) -> bool:
    """True when the component path looks like an encoder/projector added to a backbone."""
    folded = subject.casefold()
    return any(re.search(pattern, folded) for pattern in patterns)


def path_within(subject: str, prefix: str) -> bool:
    """`vision_tower.blocks` lies within `vision_tower`; `vision_tower2` does not."""
    subject, prefix = subject.casefold(), prefix.casefold().rstrip(".")
    return subject == prefix or subject.startswith(prefix + ".") or subject.startswith(prefix + "::")
