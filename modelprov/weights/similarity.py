"""Honest similarity statistics: mean-centred correlation with its sample size, null, z and p-value.

Raw cosine is computed only to compare with public claims: vectors that start near a constant (norm
weights at 1.0, biases) have raw cosine near 1 for any two models. The centred similarity (Pearson r of
entries) of two independent tensors of n entries is approximately N(0, 1/sqrt(n)); we use Fisher's
z = atanh(r)·sqrt(n − 3) and a one-sided p-value, combined across layers with Stouffer's method.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

_R_CLIP = 1.0 - 1e-12
# p-values are floored at 1e-300: the analytic null treats sampled entries as independent, which trained
# weights are not, so a smaller p (near-copies reach log10 p of -1e8) states a precision that does not exist.
LOG10_P_FLOOR = -300.0


@dataclass(frozen=True)
class Similarity:
    """Centred similarity of two tensors (or samples of them) with its evidence strength."""

    centred: float  # Pearson r of entries
    raw_cosine: float  # for comparison with public claims only
    n: int  # entries compared
    z: float  # Fisher z·sqrt(n−3); ≈ N(0,1) for independent tensors
    log10_p: float  # one-sided, log10 so that tiny p-values survive

    @property
    def p_value(self) -> float:
        return 10.0 ** self.log10_p

    def to_dict(self) -> dict[str, float | int]:
        d = asdict(self)
        d["p_value"] = self.p_value
        return d


def centred_similarity(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of the entries of two equally shaped arrays (0.0 when either is constant)."""
    a, b = np.asarray(x).ravel(), np.asarray(y).ravel()
    return _cosine(a, b, float(np.mean(a, dtype=np.float64)) if a.size else 0.0,
                   float(np.mean(b, dtype=np.float64)) if b.size else 0.0)


def raw_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """Uncentred cosine of two arrays' entries; reported beside the centred value, never as evidence."""
    return _cosine(np.asarray(x).ravel(), np.asarray(y).ravel(), 0.0, 0.0)


_CHUNK = 1 << 20  # entries converted to float64 at a time: memory stays flat for a 100M-entry tensor


def _cosine(a: np.ndarray, b: np.ndarray, mean_a: float, mean_b: float) -> float:
    """Cosine of (a − mean_a) and (b − mean_b) in float64, a chunk at a time."""
    aa = bb = ab = 0.0
    for i in range(0, a.size, _CHUNK):
        ca = a[i : i + _CHUNK].astype(np.float64) - mean_a
        cb = b[i : i + _CHUNK].astype(np.float64) - mean_b
        aa += float(np.dot(ca, ca))
        bb += float(np.dot(cb, cb))
        ab += float(np.dot(ca, cb))
    den = math.sqrt(aa * bb)
    return ab / den if den > 0 else 0.0


def fisher_z(r: float, n: int) -> float:
    """Fisher's z statistic of a correlation r over n entries: atanh(r)·sqrt(n − 3)."""
    if n <= 3:
        return 0.0
    return float(np.arctanh(np.clip(r, -_R_CLIP, _R_CLIP)) * math.sqrt(n - 3))


def log10_sf(z: float) -> float:
    """log10 of the one-sided normal tail P(Z ≥ z), accurate far into the tail, floored at `LOG10_P_FLOOR`.

    scipy.special's `log_ndtr` ufunc: the same values as `scipy.stats.norm.logsf`, about 1,000× faster per call
    (a scan makes one call per sketch pair: 15,600 for SmolLM2 against two references took 7–14 s)."""
    from scipy.special import log_ndtr  # deferred: scipy.special takes ~1 s to import, which `--help` must not pay

    return max(LOG10_P_FLOOR, float(log_ndtr(-z)) / math.log(10))


def similarity(r: float, cos: float, n: int, *, candidates: int = 1) -> Similarity:
    """Wrap a correlation with its z and p; `candidates` > 1 applies a Bonferroni correction for a best-of-k pick."""
    z = fisher_z(r, n)
    log_p = min(0.0, log10_sf(z) + math.log10(max(candidates, 1)))
    return Similarity(float(r), float(cos), int(n), z, log_p)


def compare_arrays(x: np.ndarray, y: np.ndarray, *, candidates: int = 1) -> Similarity:
    """Centred similarity, raw cosine, z and p of two equally shaped arrays."""
    return similarity(centred_similarity(x, y), raw_cosine(x, y), int(np.asarray(x).size), candidates=candidates)


def normalise_rows(m: np.ndarray, *, centre: bool, dtype: type = np.float64) -> np.ndarray:
    """Each row (a flattened sketch) centred (optionally) and scaled to unit length; constant rows become 0."""
    m = np.asarray(m, dtype=dtype)
    if centre:
        m = m - m.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def stouffer(zs: Iterable[float]) -> tuple[float, float]:
    """Stouffer's combined z of independent z statistics and its log10 one-sided p-value."""
    zs = [float(z) for z in zs]
    if not zs:
        return 0.0, 0.0
    z = sum(zs) / math.sqrt(len(zs))
    return z, log10_sf(z)


def fisher_combined_log10_p(log10_ps: Sequence[float]) -> float:
    """Fisher's method: combine per-layer p-values (given as log10) into one log10 p-value."""
    if not log10_ps:
        return 0.0
    statistic = -2.0 * math.log(10) * float(np.sum(log10_ps))
    from scipy.special import chdtr, chdtrc, gammaincinv  # deferred: see log10_sf

    # scipy.stats.chi2.logsf, without importing scipy.stats (~1 s): 0 at the support's edge, else log_survival
    df = 2 * len(log10_ps)
    log_sf = 0.0 if statistic <= 0 else log_survival(statistic, 2 * gammaincinv(df / 2, 0.5),
                                                     lambda v: chdtrc(df, v), lambda v: chdtr(df, v))
    return max(LOG10_P_FLOOR, log_sf / math.log(10))


def null_sd(n: int) -> float:
    """Analytic standard deviation of the centred similarity of n entries of independent tensors."""
    return 1.0 / math.sqrt(n) if n > 0 else float("inf")


def z_from_log10_p(log10_p: float) -> float:
    """The one-sided normal z whose tail probability is 10**log10_p (inverse of `log10_sf`)."""
    return normal_isf(10.0 ** max(log10_p, LOG10_P_FLOOR))


def normal_isf(q: float) -> float:
    """The normal z with tail probability q: scipy.stats.norm.isf's value (−ndtri(q)) without importing
    scipy.stats (~1 s)."""
    from scipy.special import ndtri  # deferred: see log10_sf

    return 0.0 - float(ndtri(q))  # 0.0 − …: norm.isf returns +0.0 at q = 0.5, as `_isf · scale + loc` does


def log_survival(x: float, median: float, sf: Callable[[float], float], cdf: Callable[[float], float]) -> float:
    """Natural log of a distribution's survival function at x as scipy.stats (1.17) computes it: log(sf) above
    the median, log1p(−cdf) at or below it (accurate where sf is near 1); −inf where sf is 0."""
    with np.errstate(divide="ignore"):
        return float(np.log(sf(x)) if x > median else np.log1p(-cdf(x)))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, ties at their average rank, a row holding a NaN all NaN: the values
    of scipy.stats.rankdata (its algorithm, step for step) without importing scipy.stats (~1 s)."""
    x = np.asarray(x)
    if x.size == 0:
        return np.empty(x.shape, dtype=np.float64)
    shape = x.shape
    order = np.argsort(x, axis=-1, kind="stable")
    ordinal = np.broadcast_to(np.arange(1, shape[-1] + 1, dtype=np.float64), shape)
    y = np.take_along_axis(x, order, axis=-1)
    first = np.concatenate([np.ones(shape[:-1] + (1,), dtype=bool), y[..., :-1] != y[..., 1:]], axis=-1)
    starts = np.arange(y.size)[first.reshape(-1)]
    counts = np.diff(starts, append=np.asarray([y.size], dtype=starts.dtype))
    sorted_ranks = np.repeat(ordinal[first] + (counts.astype(np.float64) - 1) / 2, counts).reshape(shape)
    ranks = np.empty(order.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, sorted_ranks, axis=-1)
    if x.dtype.kind in "fc":
        nan_rows = np.isnan(x).any(axis=-1)
        if nan_rows.any():
            ranks[nan_rows] = np.nan
    return ranks


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two 1-D samples without NaNs: scipy.stats.spearmanr's statistic (ranks,
    then np.corrcoef of the stacked columns; NaN when a sample is constant or shorter than 2)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) <= 1 or (a[0] == a).all() or (b[0] == b).all():
        return float("nan")
    return float(np.corrcoef(np.column_stack((average_ranks(a), average_ranks(b))), rowvar=False)[1, 0])
