"""Layer alignment: which suspect layer holds which reference layer, allowing repeats, skips and restarts.

A Viterbi path over the layer × layer block-similarity matrix steps forward, repeats or skips layers
cheaply and restarts (jumps back) at a price, so depth up-scaling, dropped layers and stacked copies
are found. Any matcher that scores layer pairs (sketches, neuron matching) aligns through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

@dataclass(frozen=True)
class AlignmentCosts:
    """Per-layer costs of the Viterbi alignment (similarity units)."""

    threshold: float = 0.1  # a layer pays this to be matched: below it, leaving the layer unmatched wins
    repeat: float = 0.05
    skip: float = 0.05
    restart: float = 0.3


def align_layers(m: np.ndarray, costs: AlignmentCosts = AlignmentCosts()) -> list[int | None]:
    """Map each suspect layer (row of `m`) to a reference layer (column) or None, maximising total similarity.

    Steps j→j+1 are free; repeats and skips cost a little (depth up-scaling, dropped layers); going
    back costs more (a restart, as in stacked copies); unmatched layers score zero.
    """
    n_s, n_r = m.shape
    if n_s == 0 or n_r == 0:
        return [None] * n_s
    gap = n_r
    emit = np.concatenate([m - costs.threshold, np.zeros((n_s, 1))], axis=1)
    j = np.arange(n_r)
    trans = np.full((n_r + 1, n_r + 1), 0.0)
    diff = j[None, :] - j[:, None]  # to − from
    trans[:n_r, :n_r] = np.where(diff == 1, 0.0, np.where(diff == 0, -costs.repeat,
                                 np.where(diff > 1, -costs.skip, -costs.restart)))
    score = emit[0].copy()
    back = np.zeros((n_s, n_r + 1), dtype=np.int64)
    for i in range(1, n_s):
        cand = score[:, None] + trans
        back[i] = np.argmax(cand, axis=0)
        score = cand[back[i], np.arange(n_r + 1)] + emit[i]
    path = [int(np.argmax(score))]
    for i in range(n_s - 1, 0, -1):
        path.append(int(back[i][path[-1]]))
    path.reverse()
    return [None if p == gap else p for p in path]


def describe_alignment(mapping: list[int | None]) -> list[str]:
    """Plain words for what an alignment shows: repeated, skipped or restarted reference layers."""
    notes = []
    seq = [(i, j) for i, j in enumerate(mapping) if j is not None]
    for (i0, j0), (i1, j1) in zip(seq, seq[1:]):
        if j1 == j0:
            notes.append(f"reference layer {j0} repeated (suspect layers {i0}, {i1})")
        elif j1 < j0:
            notes.append(f"reference layers restart at {j1} after {j0} (suspect layer {i1}): stacked copy")
        elif j1 > j0 + 1:
            notes.append(f"reference layer {j0 + 1} skipped" if j1 == j0 + 2 else f"reference layers {j0 + 1}-{j1 - 1} skipped")
    return notes


@dataclass
class StackMatch:
    """Alignment of one suspect layer stack with one reference layer stack."""

    suspect_stack: str
    reference_stack: str
    suspect_layers: list[int]
    reference_layers: list[int]
    block_similarity: np.ndarray  # suspect layers × reference layers
    mapping: list[int | None]  # per suspect layer: index into reference_layers, or None

    @property
    def mapped_layers(self) -> int:
        """How many suspect layers the alignment maps onto a reference layer."""
        return sum(j is not None for j in self.mapping)

    def path(self) -> set[tuple[int, int]]:
        """The aligned (suspect layer, reference layer) pairs."""
        return {(self.suspect_layers[i], self.reference_layers[j]) for i, j in enumerate(self.mapping) if j is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "suspect_stack": self.suspect_stack,
            "reference_stack": self.reference_stack,
            "suspect_layers": self.suspect_layers,
            "reference_layers": self.reference_layers,
            "layer_map": {str(self.suspect_layers[i]): (None if j is None else self.reference_layers[j])
                          for i, j in enumerate(self.mapping)},
            "block_similarity": np.round(self.block_similarity, 4).tolist(),
        }
