"""Undo a permuted or rotated residual stream by aligning token embeddings on shared tokens.

Permuting or rotating the hidden (residual) dimensions of a transformer changes every weight matrix
but not the function, so fixed-position comparisons see an unrelated model. The token embedding
rows of tokens both models share (found by token string, so grown, shrunk or reordered vocabularies
still pair up) pin the map down: we fit it on half of the shared anchors (identity, signed
permutation by Hungarian matching of columns, or orthogonal Procrustes) and measure it on the other
half, so the statistic is not inflated by the fit.

Independently *trained* models share some embedding geometry (unsupervised word-translation works
by exactly this fit), so a good embedding fit alone is no proof of derivation: it only tells the
neuron matcher (`modelprov.weights.neurons`) how to read the suspect's matrices, and the evidence comes from
there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from modelprov.reader import SuspectReader

from .fingerprint import EmbeddingAnchors, ModelFingerprint, TensorFingerprint
from .naming import VOCAB_ROLES
from .similarity import LOG10_P_FLOOR, log_survival

METHODS = ("identity", "permutation", "rotation")
_MIN_ANCHOR_PAIRS = 64  # fewer shared anchors than this fit no map


@dataclass
class ResidualMap:
    """How suspect residual coordinates map onto the reference's: `suspect_rows @ matrix ≈ reference_rows`."""

    method: str  # "identity", "permutation" (signed) or "rotation" (orthogonal Procrustes)
    matrix: np.ndarray = field(repr=False)  # (suspect width, reference width), orthonormal columns
    heldout_r: float  # mean per-row Pearson r of held-out anchors after the map
    heldout_rows: int
    fit_rows: int
    log10_p: float  # one-sided t-test of the held-out row correlations against 0, Bonferroni over methods tried
    pairing: str = "token"  # how anchor rows were paired: "token" (by string) or "id"
    candidates: dict[str, float] = field(default_factory=dict)  # held-out r of every method tried
    anchor_pairs: tuple[str, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    # (reference embedding tensor, suspect rows, its anchor positions) the map was fitted on

    def gather(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """For a (signed) permutation: the suspect coordinate and sign behind each reference coordinate; None for a rotation."""
        if self.method == "rotation":
            return None
        q = self.matrix[:, columns]
        src = np.argmax(np.abs(q), axis=0)
        return src, q[src, np.arange(len(columns))]

    def apply(self, vectors: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Suspect vectors (… × suspect width) in reference coordinates `columns` (a gather for permutations)."""
        g = self.gather(columns)
        if g is not None:
            return vectors[:, g[0]] * g[1]
        return vectors @ self.matrix[:, columns]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "pairing": self.pairing, "heldout_r": round(self.heldout_r, 6),
                "heldout_rows": self.heldout_rows, "fit_rows": self.fit_rows, "log10_p": self.log10_p,
                "candidates": {k: round(v, 6) for k, v in self.candidates.items()}}


def identity_map(width: int) -> ResidualMap:
    """The map of an unchanged residual stream (used when no anchors can be paired)."""
    return ResidualMap("identity", np.eye(width, dtype=np.float32), float("nan"), 0, 0, 0.0, "none")


def fit_residual_map(suspect: np.ndarray, reference: np.ndarray, *, pairing: str = "token") -> ResidualMap:
    """Fit the residual map on paired anchor rows (n × suspect width, n × reference width); score it held out.

    Even rows fit, odd rows test. A method is tried only when it is determined by the data (a rotation
    needs more fit rows than dimensions); the simplest method within 0.01 of the best held-out r wins.
    """
    xs = np.asarray(suspect, dtype=np.float64)
    xr = np.asarray(reference, dtype=np.float64)
    if xs.shape[0] != xr.shape[0] or xs.shape[0] < 8:
        raise ValueError("need at least 8 paired anchor rows")
    fit_s, fit_r, ho_s, ho_r = xs[0::2], xr[0::2], xs[1::2], xr[1::2]
    mean_s, mean_r = fit_s.mean(axis=0), fit_r.mean(axis=0)
    fit_s, fit_r, ho_s, ho_r = fit_s - mean_s, fit_r - mean_r, ho_s - mean_s, ho_r - mean_r
    ds, dr = xs.shape[1], xr.shape[1]
    maps: dict[str, np.ndarray] = {}
    if ds == dr:
        maps["identity"] = np.eye(ds)
    maps["permutation"] = _signed_permutation(fit_s, fit_r)
    if fit_s.shape[0] > max(ds, dr):
        maps["rotation"] = _procrustes(fit_s, fit_r)
    scores = {m: _row_correlations(ho_s @ q, ho_r) for m, q in maps.items()}
    means = {m: float(np.mean(r)) for m, r in scores.items()}
    best = max(means.values())
    method = next(m for m in METHODS if m in means and means[m] >= best - 0.01)
    r = scores[method]
    return ResidualMap(method, maps[method].astype(np.float32), means[method], len(r), fit_s.shape[0],
                       _mean_test_log10_p(r, tries=len(maps)), pairing, means)


def _signed_permutation(fit_s: np.ndarray, fit_r: np.ndarray) -> np.ndarray:
    """Hungarian matching of suspect to reference columns on |Pearson r|, keeping each match's sign."""
    c = _column_correlations(fit_s, fit_r)
    from scipy.optimize import linear_sum_assignment  # deferred: scipy.optimize takes ~0.4 s to import

    rows, cols = linear_sum_assignment(-np.abs(c))
    q = np.zeros((fit_s.shape[1], fit_r.shape[1]))
    q[rows, cols] = np.sign(c[rows, cols]) + (c[rows, cols] == 0)
    return q


def _procrustes(fit_s: np.ndarray, fit_r: np.ndarray) -> np.ndarray:
    """The orthogonal (or semi-orthogonal) Q minimising ‖fit_s·Q − fit_r‖ (Schönemann 1966).

    BLAS single-threaded: on a shared 2-core machine a 576-wide SVD took 8.7 s with two threads, 0.2 s with one."""
    with threadpool_limits(limits=1, user_api="blas"):
        u, _, vt = np.linalg.svd(fit_s.T @ fit_r, full_matrices=False)
        return u @ vt


def _column_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    a = a / np.maximum(np.linalg.norm(a, axis=0), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=0), 1e-12)
    return a.T @ b


def _row_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(den, 1e-12)


def _mean_test_log10_p(r: np.ndarray, tries: int) -> float:
    """log10 of the one-sided t-test p that the mean held-out correlation exceeds 0, times `tries`."""
    n = len(r)
    sd = float(np.std(r, ddof=1)) if n > 1 else 0.0
    mean = float(np.mean(r))
    if sd == 0.0:
        return LOG10_P_FLOOR if mean > 0 else 0.0
    t = mean / (sd / math.sqrt(n))
    from scipy.special import stdtr, stdtrit  # deferred: scipy.special takes ~1 s to import, which `--help` must not pay

    # scipy.stats.t.logsf, without importing scipy.stats (~1 s)
    df = n - 1
    log_p = log_survival(t, stdtrit(df, 0.5), lambda v: stdtr(df, -v), lambda v: stdtr(df, v)) / math.log(10)
    log_p += math.log10(tries)
    return max(LOG10_P_FLOOR, min(0.0, log_p))


def residual_maps(reader: SuspectReader, suspects: list[TensorFingerprint], fp: ModelFingerprint,
                  tokens: dict[bytes, int] | None) -> dict[str, ResidualMap]:
    """Residual maps fitted on each suspect token embedding or output head (by tensor name) against the
    reference's anchors (an output head tied to the embedding in the reference shares its rows)."""
    out: dict[str, ResidualMap] = {}
    for s in suspects:
        if s.role not in VOCAB_ROLES or len(s.shape) != 2:
            continue
        best: ResidualMap | None = None
        for tensor, anchors in fp.anchors.items():
            for pairing, (sus_ids, keep) in _pairings(anchors, tokens, s.shape[0]).items():
                if len(sus_ids) < _MIN_ANCHOR_PAIRS:
                    continue
                rows = reader.rows(s.name, sus_ids)
                fitted = fit_residual_map(rows, anchors.rows[keep], pairing=pairing)
                if best is None or fitted.heldout_r > best.heldout_r:
                    best = fitted
                    best.anchor_pairs = (tensor, sus_ids, keep)
        if best is not None:
            out[s.name] = best
    return out


def _pairings(anchors: EmbeddingAnchors, tokens: dict[bytes, int] | None, rows: int
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Suspect row ids for the reference anchors, by token string (when both know tokens) and by id."""
    out = {}
    if anchors.tokens is not None and tokens:
        pairs = [(tokens[t], k) for k, t in enumerate(anchors.tokens) if t in tokens and tokens[t] < rows]
        out["token"] = (np.asarray([p[0] for p in pairs], dtype=np.int64), np.asarray([p[1] for p in pairs], dtype=np.int64))
    keep = np.flatnonzero(anchors.ids < rows)
    out["id"] = (anchors.ids[keep], keep)
    return out
