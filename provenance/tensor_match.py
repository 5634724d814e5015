"""One suspect tensor matched to one reference tensor, and the thresholds that make a match evidence.

Shared by the sketch matcher (`provenance.scan`) and the neuron matcher (`provenance.robust`), so both
kinds of evidence flow into the same findings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .similarity import Similarity


@dataclass(frozen=True)
class WeightThresholds:
    """Verdict thresholds; docs/weights.md gives the measured independent nulls that justify them."""

    derived_similarity: float = 0.1  # median centred similarity of matched tensors; measured nulls stay < 0.03
    max_log10_p: float = -6.0  # after Bonferroni over the candidates a tensor was picked from
    exact_candidate: float = 0.9999  # sketch similarity at which the full tensor is read to compare digests
    copied_share: float = 0.9  # share of matched evidence parameters confirmed exact for "copied"

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class TensorMatch:
    """A suspect tensor (or block of it) matched to a reference tensor."""

    suspect: str
    reference_tensor: str
    role: str
    placement: str
    similarity: Similarity
    parameters: int
    suspect_layer: int | None = None
    reference_layer: int | None = None
    exact: str | None = None  # precision at which digests agree ("f32", "bf16", "f16")
    weak: bool = False  # norm weights and biases: reported, never evidence

    @property
    def significant(self) -> bool:
        return self._significant

    _significant: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "suspect": self.suspect, "reference": self.reference_tensor, "role": self.role,
            "placement": self.placement, "suspect_layer": self.suspect_layer,
            "reference_layer": self.reference_layer, "parameters": self.parameters, "exact": self.exact,
            "weak_evidence": self.weak, "significant": self._significant, **self.similarity.to_dict(),
        }
