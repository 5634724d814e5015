"""Tensors that carry no provenance: deterministic buffers and tensors still at their initial constant.

Every model of a configuration holds the same rotary inverse frequencies, position ids, causal masks,
sinusoidal position tables and batch-norm step counters, so two independently trained models can share
them bit for bit. They are recognised by name and by recomputing them from their values (a geometric
sequence of rotary frequencies, 0..n−1, a 0/1 lower triangle, sin/cos of positions), and by being one
constant; the scan never matches them and lists the identical ones as "not evidence".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from modelprov.reader import SuspectReader

from .fingerprint import ModelFingerprint, TensorFingerprint, ValueDigests, digests_match, sketch_indices

_BY_NAME: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), why) for p, why in (
    (r"(^|\.)inv_freq$", "rotary inverse frequencies"),
    (r"(^|\.)rotary_emb(\.|$)", "rotary embedding buffer"),
    (r"(^|\.)rope_freqs(\.weight)?$", "rotary frequency factors"),
    (r"(^|\.)freqs_cis$", "rotary frequencies"),
    (r"(^|\.)(cos|sin)_cached$", "rotary cos/sin cache"),
    (r"(^|\.)position_ids$", "position ids"),
    (r"(^|\.)token_type_ids$", "token type ids"),
    (r"(^|\.)(attn|attention)\.(bias|masked_bias)$", "attention mask buffer"),
    (r"(^|\.)(causal_mask|attn_mask)$", "attention mask buffer"),
    (r"(^|\.)num_batches_tracked$", "batch-norm step counter"),
    (r"(^|\.)_float_tensor$", "placeholder buffer"),
))
_READ_LIMIT = 1 << 16  # tensors up to this many entries are read whole to recompute them
_CANDIDATE_ROLES = frozenset({"other", "position_embedding", "norm_weight", "bias"})
_RELATIVE = 1e-3  # recomputed values must agree to this relative error (fp16 storage is within 5e-4)


@dataclass(frozen=True)
class NonLearned:
    """A tensor the scan does not use as evidence, and why."""

    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"tensor": self.name, "reason": self.reason}


def reason_by_name(name: str, shape: tuple[int, ...]) -> str | None:
    """Why a tensor's name marks it as a deterministic buffer (a mask needs a square last pair of dims)."""
    for pattern, why in _BY_NAME:
        if pattern.search(name.lower()):
            if why == "attention mask buffer" and (len(shape) < 2 or shape[-1] != shape[-2]):
                continue
            return why
    return None


def reason_by_value(values: np.ndarray) -> str | None:
    """Why these values are a deterministic function of the configuration (or one constant), if they are."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v) | np.isneginf(v)):
        return None
    flat = v.reshape(-1)
    if np.all(flat == flat[0]):
        return f"constant {flat[0]:g}"
    if _close(flat, np.arange(flat.size)):
        return "position ids 0..n-1"
    if flat.size >= 4 and flat[0] == 1.0 and np.all(np.diff(flat) < 0) and flat[-1] > 0:
        ratio = flat[1] / flat[0]
        if _close(flat, ratio ** np.arange(flat.size)):
            base = ratio ** (-1.0 / 2.0 * (2 * flat.size)) if ratio > 0 else float("nan")
            return f"rotary inverse frequencies (base {base:.6g}, head dim {2 * flat.size})"
    if v.ndim == 2 and v.shape[0] == v.shape[1] and v.shape[0] > 1:
        tri = np.tril(np.ones(v.shape))
        if np.array_equal(v, tri) or np.array_equal(v == 0, tri.astype(bool)):
            return "causal mask"
    if v.ndim == 2 and _is_sinusoidal(v, np.arange(v.shape[0]), np.arange(v.shape[1]), v.shape[1]):
        return "sinusoidal position table"
    return None


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(np.abs(a - b) <= _RELATIVE * np.maximum(np.abs(b), 1e-6)))


def _sinusoid_candidates(rows: np.ndarray, cols: np.ndarray, width: int) -> list[np.ndarray]:
    """sin/cos position tables at (rows × cols) of a table `width` wide: interleaved (Vaswani et al.) and
    half-and-half (fairseq, tensor2tensor), base 10000."""
    p = rows[:, None].astype(np.float64)
    out = []
    i = (cols // 2)[None, :]
    angle = p / np.power(10000.0, 2 * i / width)
    out.append(np.where((cols % 2 == 0)[None, :], np.sin(angle), np.cos(angle)))
    half = width // 2
    if half > 1:
        j = (cols % half)[None, :]
        angle = p * np.exp(-np.log(10000.0) * j / (half - 1))
        out.append(np.where((cols < half)[None, :], np.sin(angle), np.cos(angle)))
    return out


def _is_sinusoidal(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, width: int) -> bool:
    return any(np.all(np.abs(values - c) <= 2e-3) for c in _sinusoid_candidates(rows, cols, width)
               if values.shape == c.shape)


def suspect_nonlearned(reader: SuspectReader, tensors: list[TensorFingerprint]) -> dict[str, NonLearned]:
    """The suspect's tensors that carry no provenance: named buffers, and small tensors (or sampled rows of
    position tables) whose values recompute as a buffer or are one constant."""
    out: dict[str, NonLearned] = {}
    for t in tensors:
        why = reason_by_name(t.name, t.shape)
        if why is None and t.role in _CANDIDATE_ROLES and t.numel <= _READ_LIMIT and t.role != "norm_weight":
            why = reason_by_value(reader.rows(t.name).reshape(t.shape))
        elif why is None and t.role == "position_embedding" and len(t.shape) == 2:
            rows = np.unique(np.linspace(0, t.shape[0] - 1, 16).astype(np.int64))
            cols = np.arange(t.shape[1])
            if _is_sinusoidal(reader.rows(t.name, rows), rows, cols, t.shape[1]):
                why = "sinusoidal position table"
        if why is not None:
            out[t.name] = NonLearned(t.name, why)
    return out


def reference_nonlearned(fp: ModelFingerprint) -> dict[str, NonLearned]:
    """The same for a reference, from its names, statistics (a constant has no spread) and sketches."""
    out: dict[str, NonLearned] = {}
    for t in fp.tensors:
        why = reason_by_name(t.name, t.shape)
        stats = t.statistics or {}
        if why is None and stats.get("std") == 0.0 and stats.get("min") == stats.get("max"):
            why = f"constant {stats.get('min', 0.0):g}"
        sketch = fp.sketches.get(t.name)
        if why is None and sketch is not None and t.role in _CANDIDATE_ROLES and t.role != "norm_weight":
            rows, cols = sketch_indices(t.shape2d, fp.spec)
            if len(rows) == t.shape2d[0] and len(cols) == t.shape2d[1]:  # the sketch is the whole tensor
                why = reason_by_value(sketch.reshape(t.shape))
        if why is None and sketch is not None and t.role == "position_embedding" and len(t.shape) == 2:
            rows, cols = sketch_indices(t.shape2d, fp.spec)
            if _is_sinusoidal(sketch, rows, cols, t.shape[1]):
                why = "sinusoidal position table"
        if why is not None:
            out[t.name] = NonLearned(t.name, why)
    return out


def identical_nonlearned(reader: SuspectReader, suspect: dict[str, NonLearned], tensors: list[TensorFingerprint],
                         fp: ModelFingerprint, reference: str) -> list[dict[str, str]]:
    """Suspect non-learned tensors bit-identical (at some precision) to a tensor of the reference's, for the
    report: shared, but not evidence."""
    shape = {t.name: t.shape for t in tensors}
    out = []
    for name, nl in sorted(suspect.items()):
        candidates = [t for t in fp.tensors if t.shape == shape[name] and t.digests]
        if not candidates or len(shape[name]) and np.prod(shape[name]) > _READ_LIMIT * 16:
            continue
        digests = ValueDigests()
        for _, block in reader.row_blocks(name):
            digests.update(block)
        seen = digests.hexdigests()
        for t in candidates:
            if digests_match(seen, t.digests):
                out.append({"suspect": name, "reference": reference, "reference_tensor": t.name, "reason": nl.reason})
                break
    return out
