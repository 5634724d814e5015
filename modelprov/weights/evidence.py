"""Tensor evidence: one suspect tensor matched to one reference tensor, the thresholds that make a match
evidence, and what one matcher found for one reference (`Evidence`), merged in one place (`merge_evidence`).

Every matcher (`modelprov.weights.matchers`) returns `Evidence`, so findings, policies and reports take
every kind of evidence the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .alignment import StackMatch
from .placement import Placement
from .similarity import Similarity
from .storage import CopyCheck


@dataclass(frozen=True)
class WeightThresholds:
    """Verdict thresholds; docs/weights.md gives the measured independent nulls that justify them."""

    derived_similarity: float = 0.1  # median centred similarity of matched tensors; measured nulls stay < 0.03
    max_log10_p: float = -6.0  # after Bonferroni over the candidates a tensor was picked from
    exact_candidate: float = 0.9999  # sketch similarity at which the full tensor is read to compare digests
    copy_candidate: float = 0.9  # sketch similarity at which sampled entries are checked against storage rounding
    copied_share: float = 0.9  # share of matched evidence parameters confirmed exact for "copied"
    # share of a reference tensor's sampled neurons a neuron matching must find (above τ) to be evidence:
    # independent models trained on the same data share a few convergent features (5-16% measured on the
    # detection suite's long-trained pair); a copy or a derivative, permuted or pruned, holds nearly all
    neuron_hit_share: float = 0.5

    def significant(self, sim: Similarity) -> bool:
        """Whether a similarity is evidence: centred similarity and p-value both past their thresholds."""
        return sim.centred >= self.derived_similarity and sim.log10_p <= self.max_log10_p

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class TensorMatch:
    """A suspect tensor (or block of it) matched to a reference tensor."""

    suspect: str
    reference_tensor: str
    role: str
    placement: str  # in words: "as is", "transposed", "neurons matched one-to-one (permuted)", …
    similarity: Similarity
    parameters: int
    suspect_layer: int | None = None
    reference_layer: int | None = None
    exact: str | None = None  # precision at which digests agree ("f32", "bf16", "f16")
    weak: bool = False  # norm weights and biases: reported, never evidence
    significant: bool = False  # `WeightThresholds.significant` of the similarity
    located: Placement | None = field(default=None, compare=False)  # fixed placement, when the block can be read back
    copy: CopyCheck | None = None  # sampled entries against the reference within the storages' rounding

    @property
    def key(self) -> tuple[str, str, int | None, int | None, str]:
        """Identity of a match across matchers (a later matcher may confirm or refine it)."""
        return (self.suspect, self.reference_tensor, self.suspect_layer, self.reference_layer, self.placement)

    @property
    def is_evidence(self) -> bool:
        return self.significant and not self.weak

    @property
    def is_copy(self) -> bool:
        """Bit-identical at some precision, or equal to the reference up to its storage's rounding."""
        return self.exact is not None or (self.copy is not None and self.copy.copy)

    @property
    def storage(self) -> str | None:
        """The rounding a copy was allowed ("bf16", "quantised as Q4_1", …); None for an exact copy or no copy."""
        if self.exact is not None:
            return None if self.exact == "f32" else self.exact
        return self.copy.storage if self.copy is not None and self.copy.copy else None

    def confirmed(self, exact: str | None = None, copy: CopyCheck | None = None) -> "TensorMatch":
        """This match with its digests found equal at precision `exact`, or its copy check."""
        return replace(self, exact=exact if exact is not None else self.exact, copy=copy if copy is not None else self.copy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suspect": self.suspect, "reference": self.reference_tensor, "role": self.role,
            "placement": self.placement, "suspect_layer": self.suspect_layer,
            "reference_layer": self.reference_layer, "parameters": self.parameters, "exact": self.exact,
            "weak_evidence": self.weak, "significant": self.significant, **self.similarity.to_dict(),
            "copy": None if self.copy is None else self.copy.to_dict(),
        }


@dataclass
class Evidence:
    """What matchers found for one reference: tensor matches, layer alignments, transformations in words
    (by suspect component) and details for the report (merged into `details.weights.references[i]`)."""

    matches: list[TensorMatch] = field(default_factory=list)
    stacks: list[StackMatch] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def covered(self) -> set[str]:
        """Suspect tensors already explained by evidence (significant, not weak)."""
        return {m.suspect for m in self.matches if m.is_evidence}


def merge_evidence(found: Evidence, new: Evidence) -> Evidence:
    """Add one matcher's evidence to what earlier matchers found for the same reference.

    - A match with the key of a match already found replaces it in place (a confirmation, e.g. digests).
    - Other matches count only for suspect tensors no evidence explains yet.
    - A layer alignment that maps more layers of a suspect stack replaces that stack's alignment, and the
      matches of that stack off its path go.
    - Notes are appended per component; details are merged, one level deep for dict values.
    """
    covered = found.covered()
    position = {m.key: i for i, m in enumerate(found.matches)}
    matches = list(found.matches)
    added: list[TensorMatch] = []
    for m in new.matches:
        if m.key in position:
            matches[position[m.key]] = m
        elif m.suspect not in covered:
            added.append(m)
    stacks = list(found.stacks)
    for st in new.stacks:
        old = [s for s in stacks if s.suspect_stack == st.suspect_stack]
        if old and st.mapped_layers <= old[0].mapped_layers:
            continue
        stacks = [s for s in stacks if s.suspect_stack != st.suspect_stack] + [st]
        path = st.path()
        prefix = st.suspect_stack + "."
        matches = [m for m in matches if not (m.suspect.startswith(prefix)
                                              and (m.suspect_layer, m.reference_layer) not in path)]
    notes = {c: list(v) for c, v in found.notes.items()}
    for comp, lines in new.notes.items():
        notes.setdefault(comp, []).extend(lines)
    details = dict(found.details)
    for key, value in new.details.items():
        if isinstance(value, dict) and isinstance(details.get(key), dict):
            details[key] = {**details[key], **value}
        else:
            details[key] = value
    return Evidence(matches + added, stacks, notes, details)
