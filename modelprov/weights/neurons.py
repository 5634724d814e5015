"""Neuron matching: find a reference layer's neurons among a suspect's, whatever their order or number.

Permuting the neurons of an MLP (rows of up/gate, columns of down) or the heads of attention keeps a
model's function, and pruning keeps a subset; both defeat fixed-position comparison. Following Zhu et
al. (ICML 2025), each sampled reference neuron (its weights over the residual coordinates the reference
sketch kept) is paired with one suspect neuron by Hungarian matching (scipy `linear_sum_assignment`) on
rank (Spearman) correlations, which outlier coordinates cannot dominate.

Statistic: under independence a matched correlation is the largest of N null correlations, so a
reference neuron "hits" when its match exceeds the threshold τ that N null correlations all stay
below with probability 1 − α; hits are then Binomial(K, α). The p-value uses twice α, above the hit rate
measured on independent pairs (`NULL_HIT_RATE`).
The matched pairs also say *how* the neurons were rearranged (in order, heads permuted, permuted,
pruned).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .similarity import LOG10_P_FLOOR, average_ranks, normal_isf

ALPHA = 1e-3  # nominal chance that a reference neuron hits an independent suspect tensor (sets τ)
# Hit rate the p-values assume: measured 0.00121 over 4.8 M neurons of independent same-architecture pairs
# (benchmarks/neuron_null.py, docs/weights.md), so twice the nominal α keeps the binomial test conservative.
NULL_HIT_RATE = 2e-3


def rank_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows replaced by their centred, unit-norm ranks: row dot products are then Spearman correlations."""
    ranks = average_ranks(np.asarray(vectors, dtype=np.float64))
    ranks -= ranks.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(ranks, axis=1, keepdims=True)
    return (ranks / np.maximum(norms, 1e-12)).astype(np.float32)


@lru_cache(maxsize=4096)
def hit_threshold(coordinates: int, candidates: int, alpha: float = ALPHA) -> float:
    """τ such that the largest of `candidates` independent correlations over `coordinates` entries exceeds it with probability α."""
    if coordinates <= 3:
        return 1.0
    per_candidate = -math.expm1(math.log1p(-alpha) / max(candidates, 1))  # 1 − (1 − α)^(1/N)
    z = normal_isf(per_candidate)
    return float(math.tanh(z / math.sqrt(coordinates - 3)))


def binomial_log10_p(hits: int, trials: int, alpha: float = ALPHA) -> float:
    """log10 P(at least `hits` of `trials` hit by chance), floored like every reported p-value."""
    if hits <= 0:
        return 0.0
    from scipy import stats  # deferred: scipy.stats takes 1-3 s to import; only scans with neuron hits need it

    return max(LOG10_P_FLOOR, float(stats.binom.logsf(hits - 1, trials, alpha) / math.log(10)))


@dataclass
class NeuronMatch:
    """Reference neurons (a sample) paired one-to-one with a suspect tensor's neurons."""

    reference_ids: np.ndarray = field(repr=False)  # reference neuron index of each sampled neuron
    suspect_ids: np.ndarray = field(repr=False)  # matched suspect neuron per reference neuron, −1 if none
    correlations: np.ndarray = field(repr=False)  # Spearman r of each pair (0 where unmatched)
    reference_count: int  # neurons of the reference tensor
    suspect_count: int  # neurons of the suspect tensor
    coordinates: int  # residual coordinates per neuron vector
    threshold: float
    alpha: float
    hits: int
    log10_p: float

    @property
    def hit_mask(self) -> np.ndarray:
        return self.correlations > self.threshold

    @property
    def hit_share(self) -> float:
        """Share of the sampled reference neurons found above τ, of those the suspect's width can hold: the
        effect size of a neuron matching (the median r of hits is ≥ τ by selection, so it cannot be one)."""
        room = len(self.reference_ids) * min(1.0, self.suspect_count / max(self.reference_count, 1))
        return min(1.0, self.hits / room) if room else 0.0

    @property
    def confident_mask(self) -> np.ndarray:
        """Hits at ≥ 0.8 × the median hit r: a pruned reference neuron still gets *a* partner, often above τ
        (neurons of one model resemble each other far more than independent ones), and that partner is no copy."""
        return self.hit_mask & (self.correlations >= 0.8 * self.median_correlation)

    @property
    def median_correlation(self) -> float:
        """Median r of the hits (what a matched neuron looks like); 0 without hits."""
        return float(np.median(self.correlations[self.hit_mask])) if self.hits else 0.0

    def arrangement(self, head_dim: int | None = None, same_role: bool = True) -> str:
        """How the suspect holds the reference neurons: "in order", "heads permuted" or "permuted", plus
        ", pruned to N of M" when a tensor of the same role has fewer neurons (a fused one may have more)."""
        if not self.hits:
            return "unmatched"
        mask = self.confident_mask  # the arrangement is read off confident pairs
        i, j = self.reference_ids[mask], self.suspect_ids[mask]
        if increasing_share(j[np.argsort(i, kind="stable")]) >= 0.95:  # identity, or a subset kept in order
            kind = "in order"
        elif head_dim and np.mean(i % head_dim == j % head_dim) >= 0.9 and _is_function(i // head_dim, j // head_dim):
            kind = "heads permuted" if self.suspect_count >= self.reference_count else "heads kept"
        else:
            kind = "permuted"
        if same_role and self.suspect_count < self.reference_count:
            kind += f", pruned to {self.suspect_count} of {self.reference_count}"
        return kind

    def to_dict(self) -> dict[str, Any]:
        return {"reference_neurons_sampled": int(len(self.reference_ids)), "reference_neurons": self.reference_count,
                "suspect_neurons": self.suspect_count, "coordinates": self.coordinates,
                "threshold": round(self.threshold, 6), "alpha": self.alpha, "hits": self.hits,
                "hit_share": round(self.hit_share, 4),
                "median_hit_correlation": round(self.median_correlation, 6), "log10_p": self.log10_p}


def increasing_share(values: np.ndarray) -> float:
    """Length of the longest strictly increasing subsequence over the length (1.0: order kept)."""
    tails: list[int] = []
    for v in values.tolist():
        k = bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
        else:
            tails[k] = v
    return len(tails) / len(values) if len(values) else 1.0


def _is_function(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether equal values of `a` nearly always pair with equal values of `b` (whole heads moved together)."""
    seen: dict[int, int] = {}
    agree = 0
    for x, y in zip(a.tolist(), b.tolist()):
        agree += seen.setdefault(x, y) == y
    return agree >= 0.9 * len(a)


def match_neurons(reference: np.ndarray, reference_ids: np.ndarray, reference_count: int, suspect: np.ndarray,
                  *, alpha: float = ALPHA) -> NeuronMatch:
    """Pair K reference neuron vectors (ranked with `rank_rows`) with N suspect ones (ranked) one-to-one."""
    k, c = reference.shape
    n = suspect.shape[0]
    corr = reference @ suspect.T
    from scipy.optimize import linear_sum_assignment  # deferred: scipy.optimize takes ~0.4 s to import

    rows, cols = linear_sum_assignment(corr, maximize=True)
    matched = np.full(k, -1, dtype=np.int64)
    r = np.zeros(k, dtype=np.float64)
    matched[rows] = cols
    r[rows] = corr[rows, cols]
    tau = hit_threshold(c, n, alpha)
    hits = int(np.sum(r > tau))
    return NeuronMatch(np.asarray(reference_ids), matched, r, reference_count, n, c, tau, alpha, hits,
                       binomial_log10_p(hits, k, max(NULL_HIT_RATE, alpha)))


def hit_shares(reference: np.ndarray, groups: int, suspect: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Per group of reference rows (equal consecutive blocks): share whose best suspect neuron beats τ.

    No one-to-one constraint: a quick score for aligning layers, computed for all reference layers at once.
    """
    if reference.size == 0 or suspect.size == 0:
        return np.zeros(groups)
    tau = hit_threshold(reference.shape[1], suspect.shape[0], alpha)
    best = (reference @ suspect.T).max(axis=1)
    return (best > tau).reshape(groups, -1).mean(axis=1)
