"""How far a stored value may lie from the value it was rounded from: the storage's own rounding.

A copy stored another way (cast to a narrower float, quantised to a block format) is no longer bit-identical
to its source, but every entry still lies within the rounding interval of its stored value. `Rounded` gives,
per entry, how far below and above the stored value an original may have been: half a float ULP, half a
quantisation step, or unbounded on the side where a quantiser clips (the largest or smallest code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# Mantissa bits of the float formats a checkpoint may store (half an ULP = 2^(exponent - bits - 1)).
_MANTISSA_BITS = {"F64": 52, "F32": 23, "F16": 10, "BF16": 7, "F8_E4M3": 3, "F8_E5M2": 2}
_MIN_EXPONENT = {"F64": -1022, "F32": -126, "F16": -14, "BF16": -126, "F8_E4M3": -6, "F8_E5M2": -14}


@dataclass
class Rounded:
    """Rows as float32 and, per entry, how far below and above it the value it stands for may lie."""

    values: np.ndarray
    below: np.ndarray
    above: np.ndarray

    def select(self, index: tuple | np.ndarray | slice) -> "Rounded":
        return Rounded(self.values[index], self.below[index], self.above[index])

    @property
    def T(self) -> "Rounded":  # noqa: N802 - mirrors ndarray.T
        return Rounded(self.values.T, self.below.T, self.above.T)


def float_rounding(values: np.ndarray, dtype: str) -> Rounded | None:
    """Half an ULP of each value in float format `dtype` (None for a dtype that is not a float format)."""
    bits = _MANTISSA_BITS.get(dtype)
    if bits is None:
        return None
    v = np.asarray(values, dtype=np.float32)
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(np.abs(v), where=v != 0, out=np.full(v.shape, -np.inf, dtype=np.float64)))
    exponent = np.maximum(exponent, _MIN_EXPONENT[dtype])  # subnormals: a fixed absolute step
    half = np.exp2(exponent - bits - 1).astype(np.float32)
    return Rounded(v, half, half.copy())


def affine_rounding(values: np.ndarray, step: np.ndarray, code: np.ndarray, top: int, bottom: int = 0,
                    extra: np.ndarray | float = 0.0) -> Rounded:
    """Rounding of values stored as `value = step · code + offset` with integer codes in [bottom, top].

    Half a step either side (plus `extra`, e.g. for a scale that was itself rounded after the codes were
    chosen), except beyond an end code, where a quantiser clips: there the original may lie anywhere further
    out (on the side the step's sign points to).
    """
    half = (np.abs(step) / 2 + extra).astype(np.float32)
    below, above = half.copy(), half.copy()
    positive = step > 0
    at_top, at_bottom = code >= top, code <= bottom
    above[(at_top & positive) | (at_bottom & ~positive)] = np.inf
    below[(at_bottom & positive) | (at_top & ~positive)] = np.inf
    return Rounded(np.asarray(values, dtype=np.float32), below, above)


# ---- GGUF block formats (layouts as in ggml and gguf-py's quants.py) -----------------------------------

QK_K = 256


@dataclass
class _Affine:
    """Decoded blocks: the values, and what their rounding needs (computed only when asked: `rounding()`)."""

    values: np.ndarray
    step: np.ndarray
    code: np.ndarray
    top: int
    bottom: int = 0
    extra: Callable[[], np.ndarray | float] | None = None  # rounding the scale adds, for ggml's Q4_0 … Q8_0

    def rounding(self) -> Rounded:
        return affine_rounding(self.values, self.step, self.code, self.top, self.bottom,
                               0.0 if self.extra is None else self.extra())


def _f16(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.float16).astype(np.float32)


def _f16_half_ulp(x: np.ndarray) -> np.ndarray:
    return float_rounding(x, "F16").below


def _scale_rounding(d: np.ndarray, multiplier: np.ndarray, m: np.ndarray | None = None) -> np.ndarray:
    """What rounding the fp16 block scale (and offset) to storage adds, for formats whose quantisers choose
    the codes with the unrounded scale (ggml's Q4_0 … Q8_0): |multiplier| half-ULPs of d, plus one of m."""
    out = np.abs(multiplier) * _f16_half_ulp(d)
    return out if m is None else out + _f16_half_ulp(m)


def _nibbles(qs: np.ndarray, n_blocks: int, width: int) -> np.ndarray:
    """Low nibbles of `width` bytes then their high nibbles (the order gguf's block formats use)."""
    q = qs.reshape((n_blocks, -1, 1, width)) >> np.array([0, 4], dtype=np.uint8).reshape((1, 1, 2, 1))
    return (q & np.uint8(0x0F)).reshape((n_blocks, -1))


def _high_bits(qh: np.ndarray, n_blocks: int) -> np.ndarray:
    """The 32 single high bits of Q5_0/Q5_1 blocks, as 0/16."""
    bits = qh.copy().view(np.uint32).reshape((n_blocks, 1)) >> np.arange(32, dtype=np.uint32).reshape((1, 32))
    return ((bits & np.uint32(1)).astype(np.uint8) << np.uint8(4))


def _q4_0(b: np.ndarray) -> _Affine:
    n = b.shape[0]
    d, q = _f16(b[:, :2]), _nibbles(b[:, 2:], n, 16).astype(np.float32)
    return _Affine(d * (q - 8), np.broadcast_to(d, q.shape), q, 15, extra=lambda: _scale_rounding(d, q - 8))


def _q4_1(b: np.ndarray) -> _Affine:
    n = b.shape[0]
    d, m, q = _f16(b[:, :2]), _f16(b[:, 2:4]), _nibbles(b[:, 4:], n, 16).astype(np.float32)
    return _Affine(d * q + m, np.broadcast_to(d, q.shape), q, 15, extra=lambda: _scale_rounding(d, q, m))


def _q5_0(b: np.ndarray) -> _Affine:
    n = b.shape[0]
    d = _f16(b[:, :2])
    q = (_nibbles(b[:, 6:], n, 16) | _high_bits(b[:, 2:6], n)).astype(np.float32)
    return _Affine(d * (q - 16), np.broadcast_to(d, q.shape), q, 31, extra=lambda: _scale_rounding(d, q - 16))


def _q5_1(b: np.ndarray) -> _Affine:
    n = b.shape[0]
    d, m = _f16(b[:, :2]), _f16(b[:, 2:4])
    q = (_nibbles(b[:, 8:], n, 16) | _high_bits(b[:, 4:8], n)).astype(np.float32)
    return _Affine(d * q + m, np.broadcast_to(d, q.shape), q, 31, extra=lambda: _scale_rounding(d, q, m))


def _q8_0(b: np.ndarray) -> _Affine:
    d, q = _f16(b[:, :2]), np.ascontiguousarray(b[:, 2:]).view(np.int8).astype(np.float32)
    return _Affine(d * q, np.broadcast_to(d, q.shape), q, 127, -127, extra=lambda: _scale_rounding(d, q))


def _q2_k(b: np.ndarray) -> _Affine:
    n = b.shape[0]
    scales, qs = b[:, :16], b[:, 16:80]
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    dl = np.repeat(d * (scales & 0xF).astype(np.float32), 16, axis=1)
    ml = np.repeat(dmin * (scales >> 4).astype(np.float32), 16, axis=1)
    shift = np.array([0, 2, 4, 6], dtype=np.uint8).reshape((1, 1, 4, 1))
    q = ((qs.reshape((n, -1, 1, 32)) >> shift) & np.uint8(3)).reshape((n, QK_K)).astype(np.float32)
    return _Affine(dl * q - ml, dl, q, 3)


def _scale_min_k4(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eight 6-bit scales and mins of a Q4_K/Q5_K super-block."""
    n = scales.shape[0]
    s = scales.reshape((n, 3, 4))
    d, m, m_d = s[:, 0], s[:, 1], s[:, 2]
    sc = np.concatenate([d & 0x3F, (m_d & 0x0F) | ((d >> 2) & 0x30)], axis=-1)
    mn = np.concatenate([m & 0x3F, (m_d >> 4) | ((m >> 2) & 0x30)], axis=-1)
    return sc.astype(np.float32), mn.astype(np.float32)


def _q4_k(b: np.ndarray) -> _Affine:
    n = b.shape[0]
    d, dmin = _f16(b[:, :2]), _f16(b[:, 2:4])
    sc, mn = _scale_min_k4(b[:, 4:16])
    step, offset = np.repeat(d * sc, 32, axis=1), np.repeat(dmin * mn, 32, axis=1)
    q = _nibbles(b[:, 16:], n, 32).astype(np.float32)
    return _Affine(step * q - offset, step, q, 15)


def _q5_k(b: np.ndarray) -> _Affine:
    n = b.shape[0]
    d, dmin = _f16(b[:, :2]), _f16(b[:, 2:4])
    sc, mn = _scale_min_k4(b[:, 4:16])
    step, offset = np.repeat(d * sc, 32, axis=1), np.repeat(dmin * mn, 32, axis=1)
    qh = (b[:, 16:48].reshape((n, -1, 1, 32)) >> np.arange(8, dtype=np.uint8).reshape((1, 1, 8, 1))) & np.uint8(1)
    q = (_nibbles(b[:, 48:], n, 32) | (qh.reshape((n, QK_K)) << np.uint8(4))).astype(np.float32)
    return _Affine(step * q - offset, step, q, 31)


def _q6_k(b: np.ndarray) -> _Affine:
    n = b.shape[0]
    ql, qh = b[:, :128], b[:, 128:192]
    scales = np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.float32)
    step = np.repeat(_f16(b[:, 208:210]) * scales, 16, axis=1)
    low = (ql.reshape((n, -1, 1, 64)) >> np.array([0, 4], dtype=np.uint8).reshape((1, 1, 2, 1))) & np.uint8(0x0F)
    high = (qh.reshape((n, -1, 1, 32)) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape((1, 1, 4, 1))) & np.uint8(3)
    q = (low.reshape((n, -1, 32)) | (high.reshape((n, -1, 32)) << np.uint8(4))).reshape((n, QK_K)).astype(np.float32)
    return _Affine(step * (q - 32), step, q, 63)


GGUF_BLOCK_ROUNDING = {"Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1, "Q8_0": _q8_0,
                       "Q2_K": _q2_k, "Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k}


def gguf_rounding(raw: np.ndarray, qtype: str, type_size: int, n_rows: int) -> Rounded | None:
    """Values and rounding of `n_rows` rows of GGUF blocks (`raw`: their bytes); None for formats whose value
    grid is not affine per block (the IQ codebooks, Q3_K) or not known here."""
    decode = GGUF_BLOCK_ROUNDING.get(qtype)
    if decode is None:
        return None
    out = decode(np.asarray(raw, dtype=np.uint8).reshape(-1, type_size)).rounding()
    return Rounded(out.values.reshape(n_rows, -1), out.below.reshape(n_rows, -1), out.above.reshape(n_rows, -1))


def gguf_values(raw: np.ndarray, qtype: str, type_size: int, n_rows: int) -> np.ndarray | None:
    """The float32 values of `n_rows` rows of GGUF blocks, decoded in one vectorised pass over all their blocks
    (the decoders `gguf_rounding` uses); None for formats not decoded here."""
    decode = GGUF_BLOCK_ROUNDING.get(qtype)
    if decode is None:
        return None
    return decode(np.asarray(raw, dtype=np.uint8).reshape(-1, type_size)).values.reshape(n_rows, -1)
