"""Lazy safetensors reading: validate the header, then read only the byte ranges of requested rows."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import CheckpointError
from .base import RowSelection, TensorInfo
from .dtypes import DTYPE_SIZES, to_float32

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit the safetensors library itself enforces


def parse_header(path: Path, prefix: str = "") -> tuple[list[TensorInfo], dict[str, Any]]:
    """Read and validate a safetensors header; return tensors (sorted by offset) and `__metadata__`."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise CheckpointError(path, f"file is {size} bytes, too short for a safetensors header")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise CheckpointError(path, f"header length {n} is larger than the file ({size} bytes)")
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(path, f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
            raw = handle.read(n)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"header is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, f"header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(path, "__metadata__ is not an object")
    data_start = 8 + n
    data_len = size - data_start
    infos = [_tensor_info(path, prefix, name, entry, data_start, data_len) for name, entry in header.items()]
    infos.sort(key=lambda t: t.byte_range)
    _check_no_overlap(path, infos)
    return infos, metadata


def _tensor_info(path: Path, prefix: str, name: str, entry: Any, data_start: int, data_len: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise CheckpointError(path, f"tensor {name!r}: header entry is not an object")
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise CheckpointError(path, f"tensor {name!r}: unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise CheckpointError(path, f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise CheckpointError(path, f"tensor {name!r}: data_offsets {offsets!r} is not a pair of integers")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise CheckpointError(
            path, f"tensor {name!r}: byte range [{begin}, {end}) lies outside the {data_len}-byte data section"
        )
    numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if end - begin != numel * DTYPE_SIZES[dtype]:
        raise CheckpointError(
            path,
            f"tensor {name!r}: {end - begin} bytes do not match {dtype} x {shape} ({numel * DTYPE_SIZES[dtype]} bytes)",
        )
    return TensorInfo(prefix + name, dtype, tuple(shape), path, (data_start + begin, data_start + end))


def _check_no_overlap(path: Path, infos: list[TensorInfo]) -> None:
    for prev, cur in zip(infos, infos[1:]):
        if cur.byte_range[0] < prev.byte_range[1] and cur.nbytes and prev.nbytes:
            raise CheckpointError(path, f"tensors {prev.name!r} and {cur.name!r} overlap in the data section")


def row_indices(rows: RowSelection, n_rows: int) -> np.ndarray | slice:
    """Normalise a row selection to a bounded slice (step 1) or a sorted-checked index array."""
    if rows is None:
        return slice(0, n_rows)
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n_rows)
        return slice(start, stop) if step == 1 else np.arange(start, stop, step)
    idx = np.asarray(rows, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < -n_rows or idx.max() >= n_rows):
        raise IndexError(f"row index out of range for {n_rows} rows")
    return np.where(idx < 0, idx + n_rows, idx)


def read_rows(fd: int, info: TensorInfo, rows: RowSelection) -> np.ndarray:
    """Read selected rows of a safetensors tensor with positioned reads (no mmap of the whole file)."""
    n_rows, width = info.rows, info.row_length
    row_bytes = width * DTYPE_SIZES[info.dtype]
    sel = row_indices(rows, n_rows)
    if isinstance(sel, slice):
        raw = _pread_exact(fd, info, info.byte_range[0] + sel.start * row_bytes, (sel.stop - sel.start) * row_bytes)
        return to_float32(raw, info.dtype).reshape(-1, width)
    # read contiguous runs of sorted unique rows once, then scatter into request order
    uniq, inverse = np.unique(sel, return_inverse=True)
    block = np.empty((len(uniq), width), dtype=np.float32)
    pos = 0
    for start, length in _runs(uniq):
        raw = _pread_exact(fd, info, info.byte_range[0] + start * row_bytes, length * row_bytes)
        block[pos : pos + length] = to_float32(raw, info.dtype).reshape(length, width)
        pos += length
    return block[inverse.reshape(-1)]


def _runs(sorted_rows: Iterable[int]) -> Iterable[tuple[int, int]]:
    """Group sorted row numbers into (start, length) runs of consecutive rows."""
    start = prev = None
    for r in sorted_rows:
        r = int(r)
        if start is None:
            start = prev = r
        elif r == prev + 1:
            prev = r
        else:
            yield start, prev - start + 1
            start = prev = r
    if start is not None:
        yield start, prev - start + 1


def _pread_exact(fd: int, info: TensorInfo, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise CheckpointError(info.file, f"tensor {info.name!r}: file ends before its data (truncated)")
    return data
