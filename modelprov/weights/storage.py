"""Is a suspect block the reference up to the suspect storage's own rounding? Copies stored another way.

A copy cast to fp16, stored as fp8, quantised to int8 per channel or to a GGUF block format is not
bit-identical to its source, but each stored entry is its source rounded: the source lies within the
stored value's rounding interval (`modelprov.reader.Rounded`). Training moves weights further than that.
The reference side carries its own rounding too: the index keeps reference sketches and anchors on a per-row
int8 grid (half a step either side, `row_grid_encode`), or in float16 in indexes written before format 3.

Weights exported after quantisation but stored as plain floats (a "dequantised" W8A16 export) sit on a
coarse grid per row; `grid_rounding` recognises that grid from the values themselves, only when every
sampled entry of a row lies on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

from modelprov.reader import Rounded, float_rounding

from .fingerprint import EmbeddingAnchors, ModelFingerprint

PLAIN_FLOATS = frozenset({"F64", "F32", "F16", "BF16"})
_FLOAT16_STORAGE = "F16"  # reference values without a grid: float16 (indexes before format 3, fresh fingerprints)
ROW_GRID_TOP = 255  # a row grid's codes are 0 … 255 (uint8)
_GRID_ARITHMETIC = 2.0 ** -12  # share of a step that float32 decoding (offset + step · code) may add to half a step
_FP16_MAX = float(np.finfo(np.float16).max)
_EPS_RELATIVE = 2.0 ** -20  # float32 arithmetic on both sides
_MAX_GRID_LEVELS = 1 << 16  # a grid finer than 16 bits is no quantisation grid
_GRID_TOLERANCE = 1e-3  # entries must sit within this share of a step from a grid point


@dataclass(frozen=True)
class CopyCheck:
    """Sampled entries of a suspect block compared with the reference within both storages' rounding."""

    storage: str  # e.g. "quantised as Q4_1", "fp16", "stored as float on a per-row int grid"
    entries: int
    outside: int  # entries further from the reference than rounding allows
    worst: float  # largest |difference| over the allowed distance (≤ 1 for a copy)

    @property
    def copy(self) -> bool:
        return self.entries > 0 and self.outside == 0

    def to_dict(self) -> dict[str, object]:
        return {"storage": self.storage, "entries": self.entries, "outside_rounding": self.outside,
                "worst_ratio": round(self.worst, 4)}


def storage_label(dtype: str) -> str:
    """How the suspect stores a tensor, in words a report can show ("stored as fp16", "quantised as Q4_1")."""
    if dtype in ("F32", "F64"):
        return f"stored as float{dtype[1:]}"
    if dtype in ("F16", "BF16"):
        return f"stored as {({'F16': 'fp16', 'BF16': 'bf16'})[dtype]}"
    if dtype.startswith("F8_"):
        return f"stored as fp8 ({dtype[3:].lower()})"
    return f"quantised as {dtype}"


# A copy may have passed through a 16-bit float on its way to its storage (bf16 → fp16 is exact but for a few
# subnormals; a bf16 model quantised to fp8 or int8 was rounded twice): those roundings are tried as well.
# Narrower formats (fp8) round too coarsely to tell a copy from light training, unless they are the storage.
_VIA = ("BF16", "F16")


def row_grid_encode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of a 2-D array on its own affine grid of 256 levels spanning its entries: uint8 codes and per row
    (offset, step) as float16, the offset rounded down and the step up so the grid covers the row. Non-finite
    entries are stored as 0 and ±float16's largest value (as the float16 storage did); a constant row whose value
    float16 holds is stored exactly."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=_FP16_MAX, neginf=-_FP16_MAX)
    if v.ndim != 2:
        raise ValueError(f"a row grid needs a 2-D array, got shape {v.shape}")
    v = np.clip(v, -_FP16_MAX, _FP16_MAX)
    lo = v.min(axis=1) if v.shape[1] else np.zeros(len(v))
    hi = v.max(axis=1) if v.shape[1] else lo
    with np.errstate(over="ignore"):  # np.where computes both branches, also at float16's largest values
        offset = lo.astype(np.float16)
        offset = np.where(offset.astype(np.float64) > lo, np.nextafter(offset, np.float16(-np.inf)), offset)
        step = ((hi - offset) / ROW_GRID_TOP).astype(np.float16)
        short = _decoded(offset, step, np.float32(ROW_GRID_TOP)).astype(np.float64) < hi
        step = np.where(short, np.nextafter(step, np.float16(np.inf)), step)
    safe = np.where(step > 0, step, 1.0).astype(np.float64)[:, None]
    codes = np.clip(np.rint((v - offset.astype(np.float64)[:, None]) / safe), 0, ROW_GRID_TOP).astype(np.uint8)
    return codes, np.ascontiguousarray(np.stack([offset, step], axis=1), dtype=np.float16)


def _decoded(offset: np.ndarray, step: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """`offset + step · code` in float32, as every reader of a row grid computes it."""
    return np.asarray(offset, dtype=np.float32) + np.asarray(step, dtype=np.float32) * np.asarray(codes, dtype=np.float32)


def row_grid_decode(codes: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The float32 values of a row grid (`offset + step · code` per row)."""
    return _decoded(grid[:, :1], grid[:, 1:], codes)


def row_grid_half_step(grid: np.ndarray) -> np.ndarray:
    """How far a row grid's stored value may lie from the value it was encoded from, per row: half a step and
    what float32 decoding adds."""
    return np.asarray(grid, dtype=np.float32)[:, 1] * np.float32(0.5 + _GRID_ARITHMETIC)


def stored_sketch(fp: ModelFingerprint, name: str) -> Rounded:
    """A reference tensor's sketch with the rounding of its stored form (what a copy check allows it)."""
    return _stored(fp.sketches[name], fp.half_steps.get(name))


def stored_anchors(anchors: EmbeddingAnchors) -> Rounded:
    """A reference's anchor rows with the rounding of their stored form."""
    return _stored(anchors.rows, anchors.half_step)


def _stored(values: np.ndarray, half_step: np.ndarray | None) -> Rounded:
    """Values with their rounding: a per-row grid's half step (one per row) or, without one, float16's half-ULP
    (indexes written before format 3 and fingerprints not yet stored)."""
    v = np.asarray(values, dtype=np.float32)
    if half_step is None:
        return float_rounding(v, _FLOAT16_STORAGE)  # type: ignore[return-value]  # F16 is a float format
    half = np.broadcast_to(np.asarray(half_step, dtype=np.float32).reshape(-1, 1), v.shape)
    return Rounded(v, half, half)


def exact_reference(values: np.ndarray) -> Rounded:
    """Reference values read in full from their checkpoint: no rounding of their own."""
    v = np.asarray(values, dtype=np.float32)
    zero = np.zeros_like(v)
    return Rounded(v, zero, zero)


def similarity_floor(threshold: float, reference: Rounded, *, centre: bool) -> float:
    """The lowest similarity to the stored reference that a block within `threshold` of the original can show:
    angles add, and the stored rounding turns the original by at most arcsin(‖rounding‖ / ‖stored‖)."""
    v = np.asarray(reference.values, dtype=np.float64)
    if centre:
        v = v - v.mean()
    half = np.maximum(reference.below, reference.above).astype(np.float64)
    norm = float(np.linalg.norm(v))
    if norm == 0.0 or not np.isfinite(half).all():
        return threshold
    turn = math.asin(min(1.0, float(np.linalg.norm(half)) / norm))
    return math.cos(min(math.pi / 2, math.acos(max(-1.0, min(1.0, threshold))) + turn))


def copy_check(suspect: Rounded, dtype: str, reference: Rounded) -> CopyCheck:
    """Is a suspect block (values with its storage's rounding) the reference's, up to both storages' rounding?

    The block is also tried as rounded through bf16 or fp16 first, and, when stored as floats, as a dequantised
    grid; the first storage that explains every entry is the one reported (the last tried, when none does).
    """
    label = storage_label(dtype)
    check = _compare(suspect, reference, label)
    for via in (v for v in _VIA if v != dtype and not (dtype == "BF16" and v == "F16")):
        if check.copy:
            return check
        # the intermediate rounded the source, whose magnitude is the reference's: take the ULP at the larger
        rounded = float_rounding(np.maximum(np.abs(suspect.values), np.abs(reference.values)).astype(np.float32), via)
        widened = Rounded(suspect.values, suspect.below + rounded.below, suspect.above + rounded.above)
        check = _compare(widened, reference, f"{label}, rounded through {storage_label(via).removeprefix('stored as ')}")
    if check.copy or dtype not in PLAIN_FLOATS:
        return check
    grid = grid_rounding(suspect.values)
    return check if grid is None else _compare(grid, reference, f"{label} on a dequantised grid")


def _compare(suspect: Rounded, reference: Rounded, storage: str) -> CopyCheck:
    """Compare a suspect block with the reference's values at the same positions: the original each stands for
    must lie within both roundings (the suspect storage's and the reference's stored form)."""
    s = np.asarray(suspect.values, dtype=np.float64)
    r = np.asarray(reference.values, dtype=np.float64)
    slack = _EPS_RELATIVE * (np.abs(s) + np.abs(r)) + 1e-30
    diff = r - s  # where the original lies relative to the stored value
    allowed = (np.where(diff >= 0, suspect.above + np.asarray(reference.below, dtype=np.float64),
                        suspect.below + np.asarray(reference.above, dtype=np.float64)) + slack)
    finite = np.isfinite(s) & np.isfinite(r)
    ratio = np.divide(np.abs(diff), allowed, out=np.zeros_like(diff), where=finite & np.isfinite(allowed))
    outside = int(np.sum(finite & (ratio > 1.0))) + int(np.sum(np.isfinite(s) != np.isfinite(r)))
    return CopyCheck(storage, int(s.size), outside, float(ratio.max(initial=0.0)))


def signed_columns(r: Rounded, columns: np.ndarray, sign: np.ndarray) -> Rounded:
    """Columns `columns` of `r` multiplied by ±1 (a signed permutation of the residual stream): a flipped sign
    swaps which side of the stored value the original may lie on."""
    flip = np.asarray(sign) < 0
    values = r.values[:, columns] * sign
    below, above = r.below[:, columns], r.above[:, columns]
    return Rounded(values, np.where(flip, above, below), np.where(flip, below, above))


def grid_rounding(values: np.ndarray) -> Rounded | None:
    """The rounding of float-stored values that all lie on a coarse affine grid per row (a dequantised export):
    half the grid step either side; None unless every row's sampled entries sit on a grid of at most 2^16 levels."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] < 8:
        return None
    half = np.empty_like(v)
    for i, row in enumerate(v):
        if not np.isfinite(row).all():  # a dequantised grid holds finite values only
            return None
        levels = np.unique(row)
        if len(levels) < 3:
            return None
        step = float(np.min(np.diff(levels)))
        span = float(levels[-1] - levels[0])
        if step <= 0 or span / step > _MAX_GRID_LEVELS:
            return None
        # the smallest gap carries the storage's own rounding (a float32 ULP at the level, times 200 codes can
        # exceed the tolerance): refit the step and offset on the integer codes before testing them
        codes = np.round((row - levels[0]) / step)
        step, offset = np.polyfit(codes, row, 1)
        if step <= 0 or np.max(np.abs(row - offset - step * codes)) > _GRID_TOLERANCE * step:
            return None
        half[i] = step / 2
    # the row's own extremes may be clipped codes: like a quantiser's end codes, open outwards
    below, above = half.copy(), half.copy()
    lo, hi = v.min(axis=1, keepdims=True), v.max(axis=1, keepdims=True)
    below[v == lo] = np.inf
    above[v == hi] = np.inf
    return Rounded(values.astype(np.float32), below.astype(np.float32), above.astype(np.float32))
