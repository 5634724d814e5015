"""Merges: which references a suspect's tensors are a mixture of, and in what proportion.

A sketch samples fixed entries, so it is linear in the tensor: the sketch of `a·A + b·B` is `a·sketch(A) +
b·sketch(B)`. Least squares of each matched suspect sketch (mean-centred) on the sketches of the references it
matched gives per-tensor mixture weights; an unindexed parent is what the weights leave unexplained (1 − Σw).
A merge mixes every tensor in the same proportion, while continued training drifts layer by layer, so a merge
is stated only when the weights agree across tensors. SLERP of unrelated parents (near-orthogonal) gives
weights with Σw² ≈ 1 instead of Σw ≈ 1; its interpolation factor is read from their angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from modelprov.reader import SuspectReader

from ._bank import ReferenceBank
from .evidence import Evidence, TensorMatch
from .fingerprint import WEAK_ROLES
from .placement import sketch_at


@dataclass(frozen=True)
class MixtureRules:
    """When weights are stated as a merge; the reasons are in the module docstring."""

    min_tensors: int = 3  # layer tensors a parent's weight rests on
    min_weight: float = 0.05  # below this a reference is not a parent
    max_single_weight: float = 0.85  # one indexed parent: at or below this the rest is an unindexed parent
    max_spread: float = 0.1  # interquartile range of per-tensor weights: a merge mixes every tensor alike
    max_parent_correlation: float = 0.3  # parents that resemble each other cannot be told apart by least squares
    sum_tolerance: float = 0.1  # |Σw − 1| for linear, |Σw² − 1| for SLERP


def tensor_weights(reader: SuspectReader, bank: ReferenceBank, matches: dict[int, list[TensorMatch]]
                   ) -> list[dict[str, Any]]:
    """Per suspect layer tensor: least-squares weights on the sketches of the references it matched at one
    placement. `matches` holds each reference's sketch-located evidence; references are bank indices.

    BLAS runs single-threaded: these are hundreds of products of 65,536-entry vectors, where waking a second
    thread costs ~5 ms each (3 s of the SmolLM2 self-scan) and saves nothing.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _tensor_weights(reader, bank, matches)


def _tensor_weights(reader: SuspectReader, bank: ReferenceBank, matches: dict[int, list[TensorMatch]]
                    ) -> list[dict[str, Any]]:
    by_tensor: dict[str, dict[tuple, dict[int, TensorMatch]]] = {}
    for ri, ms in matches.items():
        for m in ms:
            rt = bank.fingerprints[ri].tensor(m.reference_tensor)
            by_tensor.setdefault(m.suspect, {}).setdefault((rt.shape2d, m.located), {})[ri] = m
    out = []
    for name, groups in sorted(by_tensor.items()):
        (shape2d, placement), group = max(groups.items(), key=lambda kv: len(kv[1]))
        refs = sorted(group)
        cols = [bank.fingerprints[ri].sketches[group[ri].reference_tensor].ravel().astype(np.float64) for ri in refs]
        x = sketch_at(reader, name, shape2d, placement, bank.spec).ravel().astype(np.float64)
        if any(c.shape != x.shape for c in cols) or x.size < 8:
            continue
        design = np.stack([c - c.mean() for c in cols], axis=1)
        target = x - x.mean()
        w, *_ = np.linalg.lstsq(design, target, rcond=None)
        resid = target - design @ w
        corr = _max_correlation(design)
        some = group[refs[0]]
        out.append({"suspect": name, "layer": some.suspect_layer, "references": refs, "weights": [float(v) for v in w],
                    "unexplained": float(resid @ resid / max(target @ target, 1e-30)), "parent_correlation": corr})
    return out


def _max_correlation(design: np.ndarray) -> float:
    if design.shape[1] < 2:
        return 0.0
    norms = np.linalg.norm(design, axis=0)
    norms[norms == 0] = 1.0
    c = (design / norms).T @ (design / norms)
    np.fill_diagonal(c, 0.0)
    return float(np.max(np.abs(c)))


def estimate_mixture(reader: SuspectReader, bank: ReferenceBank, found: dict[int, Evidence],
                     candidates: Sequence[int], rules: MixtureRules = MixtureRules()) -> dict[str, Any] | None:
    """The merge the evidence supports among `candidates` (bank indices of references with a reuse finding),
    as {"parents", "unknown_share", "method", "statement", …}; None when the weights do not describe a merge."""
    located = {ri: [m for m in found[ri].matches if _sketch_evidence(m)] for ri in candidates}
    rows = tensor_weights(reader, bank, {ri: ms for ri, ms in located.items() if ms})
    if not rows or max(r["parent_correlation"] for r in rows) > rules.max_parent_correlation:
        return None
    per_ref: dict[int, list[tuple[int | None, float]]] = {}
    for r in rows:
        for ri, w in zip(r["references"], r["weights"]):
            per_ref.setdefault(ri, []).append((r["layer"], w))
    parents = []
    for ri, ws in per_ref.items():
        values = np.array([w for _, w in ws])
        if len(values) < rules.min_tensors:
            continue
        weight = float(np.median(values))
        q1, q3 = np.percentile(values, [25, 75])
        layers: dict[int, list[float]] = {}
        for layer, w in ws:
            if layer is not None:
                layers.setdefault(layer, []).append(w)
        parents.append({"reference": bank.references[ri].name, "weight": weight, "spread": float(q3 - q1),
                        "tensors": len(values),
                        "per_layer": [{"layer": k, "weight": float(np.median(v)), "tensors": len(v)}
                                      for k, v in sorted(layers.items())]})
    parents = [p for p in parents if p["weight"] >= rules.min_weight]
    if not parents or any(p["spread"] > rules.max_spread for p in parents):
        return None
    total = sum(p["weight"] for p in parents)
    squares = sum(p["weight"] ** 2 for p in parents)
    if len(parents) == 1 and parents[0]["weight"] > rules.max_single_weight:
        return None  # one parent explains the tensors: a copy or a fine-tune, not a merge
    if len(parents) >= 2 and abs(total - 1) > rules.sum_tolerance and abs(squares - 1) <= rules.sum_tolerance:
        method, shares = "slerp", _slerp_shares(parents)
        unknown = 0.0
    else:
        method = "linear"
        unknown = max(0.0, 1.0 - total)
        shares = [p["weight"] / max(total, 1.0) for p in parents]
    for p, share in zip(parents, shares):
        p["share"] = share
    parents.sort(key=lambda p: -p["share"])
    named = [f"{p['reference']} (≈{p['share']:.2f})" for p in parents]
    if unknown >= rules.min_weight:
        named.append(f"an unindexed model (≈{unknown:.2f})")
    statement = ("merge of " + " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 2 else named)
                 + (" (SLERP-like: weights on a circle)" if method == "slerp" else ""))
    return {"parents": parents, "unknown_share": unknown, "method": method, "weight_sum": total,
            "statement": statement, "tensors": len(rows),
            "statistic": "median over layer tensors of least-squares weights of the mean-centred suspect sketch on "
                         "the references' sketches; unknown share = 1 − Σ weights"}


def _slerp_shares(parents: list[dict[str, Any]]) -> list[float]:
    """Interpolation shares of a SLERP of near-orthogonal parents: the angle of each weight on the unit circle."""
    if len(parents) != 2:
        total = sum(p["weight"] ** 2 for p in parents)
        return [p["weight"] ** 2 / total for p in parents]
    t = math.atan2(parents[1]["weight"], parents[0]["weight"]) / (math.pi / 2)
    return [1.0 - t, t]


def _sketch_evidence(m: TensorMatch) -> bool:
    """A layer-matrix match the sketch matcher placed (its suspect sketch can be read back at that placement)."""
    return (m.is_evidence and m.located is not None and m.placement == m.located.describe()
            and m.role not in WEAK_ROLES and m.suspect_layer is not None)
