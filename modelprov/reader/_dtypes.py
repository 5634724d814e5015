"""Convert raw little-endian tensor bytes of every safetensors dtype to float32."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# safetensors dtype name -> bytes per element
DTYPE_SIZES: dict[str, int] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1,
    "BOOL": 1,
}

_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
    "BOOL": "u1",
}


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype that holds `dtype`'s stored bits unchanged (raw codes for BF16 and the fp8 formats)."""
    if dtype == "BF16":
        return np.dtype("<u2")
    if dtype in ("F8_E4M3", "F8_E5M2"):
        return np.dtype("u1")
    return np.dtype(_NUMPY[dtype])


@lru_cache(maxsize=None)
def _fp8_table(dtype: str) -> np.ndarray:
    """All 256 values of an 8-bit float format (OCP FP8: E4M3FN has no infinities, E5M2 is IEEE-like)."""
    codes = np.arange(256, dtype=np.uint16)
    if dtype == "F8_E5M2":  # exactly the high byte of an IEEE half
        return (codes << 8).view(np.float16).astype(np.float32)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> 3) & 0xF
    mantissa = (codes & 0x7).astype(np.float64)
    normal = (1.0 + mantissa / 8.0) * np.exp2(exponent.astype(np.float64) - 7.0)
    subnormal = (mantissa / 8.0) * 2.0**-6
    values = sign * np.where(exponent == 0, subnormal, normal)
    values[(exponent == 0xF) & (mantissa == 7)] = np.nan  # E4M3FN: only S.1111.111 is NaN
    return values.astype(np.float32)


def to_float32(raw: bytes | bytearray | memoryview | np.ndarray, dtype: str, out: np.ndarray | None = None) -> np.ndarray:
    """Decode a flat buffer of `dtype` elements to a 1-D float32 array, written into `out` when given.

    Decoding into a preallocated `out` keeps peak memory at the output plus the raw bytes (no temporaries).
    """
    buf = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw.reshape(-1).view(np.uint8)
    size = DTYPE_SIZES.get(dtype)
    if size is None:
        raise ValueError(f"unknown dtype {dtype!r}")
    n = buf.size // size
    if out is None:
        out = np.empty(n, dtype=np.float32)
    elif out.shape != (n,) or out.dtype != np.float32:
        raise ValueError(f"out must be a float32 array of {n} elements")
    if dtype == "BF16":  # bfloat16 is the high half of a float32
        bits = out.view(np.uint32)
        np.copyto(bits, buf.view("<u2"), casting="unsafe")
        bits <<= 16
    elif dtype in ("F8_E4M3", "F8_E5M2"):
        np.take(_fp8_table(dtype), buf, out=out)
    elif dtype == "BOOL":
        np.not_equal(buf, 0, out=out, casting="unsafe")
    else:
        np.copyto(out, buf.view(_NUMPY[dtype]), casting="unsafe")
    return out
