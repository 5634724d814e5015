"""Is a suspect block the reference up to the suspect storage's own rounding? Copies stored another way.

A copy cast to fp16, stored as fp8, quantised to int8 per channel or to a GGUF block format is not
bit-identical to its source, but each stored entry is its source rounded: the source lies within the
stored value's rounding interval (`modelprov.reader.Rounded`). Training moves weights further than that.
The index keeps reference sketches in float16, so the reference side carries its own half-ULP too.

Weights exported after quantisation but stored as plain floats (a "dequantised" W8A16 export) sit on a
coarse grid per row; `grid_rounding` recognises that grid from the values themselves, only when every
sampled entry of a row lies on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelprov.reader import Rounded, float_rounding

PLAIN_FLOATS = frozenset({"F64", "F32", "F16", "BF16"})
_REFERENCE_STORAGE = "F16"  # sketches and anchors are kept in float16 in the index
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


def copy_check(suspect: Rounded, dtype: str, reference: np.ndarray, *,
               reference_storage: str | None = _REFERENCE_STORAGE) -> CopyCheck:
    """Is a suspect block (values with its storage's rounding) the reference's, up to that rounding?

    The block is also tried as rounded through bf16 or fp16 first, and, when stored as floats, as a dequantised
    grid; the first storage that explains every entry is the one reported (the last tried, when none does).
    """
    label = storage_label(dtype)
    check = _compare(suspect, reference, label, reference_storage)
    for via in (v for v in _VIA if v != dtype and not (dtype == "BF16" and v == "F16")):
        if check.copy:
            return check
        # the intermediate rounded the source, whose magnitude is the reference's: take the ULP at the larger
        rounded = float_rounding(np.maximum(np.abs(suspect.values), np.abs(reference)).astype(np.float32), via)
        widened = Rounded(suspect.values, suspect.below + rounded.below, suspect.above + rounded.above)
        check = _compare(widened, reference, f"{label}, rounded through {storage_label(via).removeprefix('stored as ')}",
                         reference_storage)
    if check.copy or dtype not in PLAIN_FLOATS:
        return check
    grid = grid_rounding(suspect.values)
    return check if grid is None else _compare(grid, reference, f"{label} on a dequantised grid", reference_storage)


def _compare(suspect: Rounded, reference: np.ndarray, storage: str, reference_storage: str | None) -> CopyCheck:
    """Compare a suspect block (with its rounding) with the reference's values at the same positions;
    `reference_storage` names the float format the reference values were kept in (their half-ULP is allowed)."""
    s = np.asarray(suspect.values, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    slack = _EPS_RELATIVE * (np.abs(s) + np.abs(r)) + 1e-30
    if reference_storage is not None:
        slack = slack + float_rounding(reference.astype(np.float32), reference_storage).below
    diff = r - s  # where the original lies relative to the stored value
    allowed = np.where(diff >= 0, suspect.above, suspect.below) + slack
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
