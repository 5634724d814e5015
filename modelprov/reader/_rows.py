"""Positioned reads of row runs: the primitive every local format reads through (bounded memory, no mmap)."""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Iterable

import numpy as np

from modelprov.errors import CheckpointError

from ._base import RowSelection, TensorInfo
from ._dtypes import DTYPE_SIZES, to_float32

READ_CHUNK_BYTES = 16 * 1024 * 1024  # largest single read; bounds the temporary bytes of any row read
# stored as plain little-endian floats: the stored bytes are the values at their own precision
PLAIN_FLOAT_DTYPES = frozenset({"F32", "F16", "BF16"})
_FADVISE = hasattr(os, "posix_fadvise")


def row_indices(rows: RowSelection, n_rows: int) -> np.ndarray | slice:
    """Normalise a row selection to a bounded slice (step 1) or an in-range index array."""
    if rows is None:
        return slice(0, n_rows)
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n_rows)
        if step == 1:
            return slice(start, max(start, stop))
        return np.arange(start, stop, step)
    idx = np.asarray(rows, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < -n_rows or idx.max() >= n_rows):
        raise IndexError(f"row index out of range for {n_rows} rows")
    return np.where(idx < 0, idx + n_rows, idx)


def row_runs(sel: np.ndarray | slice) -> tuple[list[tuple[int, int]], np.ndarray | None]:
    """Contiguous (start, length) runs covering a selection, and the order to scatter them back in (None: as is)."""
    if isinstance(sel, slice):
        return [(sel.start, sel.stop - sel.start)], None
    uniq, inverse = np.unique(sel, return_inverse=True)
    inverse = inverse.reshape(-1)
    in_order = len(uniq) == len(sel) and bool(np.all(inverse == np.arange(len(sel))))
    return list(_runs(uniq)), None if in_order else inverse


def read_row_runs(fd: int, info: TensorInfo, rows: RowSelection, row_bytes: int,
                  decode: Callable[[bytes, np.ndarray], None]) -> np.ndarray:
    """Read the byte runs of selected rows in chunks of at most `READ_CHUNK_BYTES` and decode each into place.

    `decode(raw, out)` fills the float32 rows `out` from their stored bytes; peak memory is the result plus
    one chunk, whatever the tensor size.
    """
    width = info.row_length
    runs, inverse = row_runs(row_indices(rows, info.rows))
    block = np.empty((sum(n for _, n in runs), width), dtype=np.float32)
    per_chunk = max(1, READ_CHUNK_BYTES // row_bytes) if row_bytes else 1
    chunks = [(first, min(per_chunk, start + length - first))
              for start, length in runs for first in range(start, start + length, per_chunk)]
    pos = 0
    for i, (first, count) in enumerate(chunks):
        if i + 1 < len(chunks) and _FADVISE:  # let the disk fetch the next chunk while this one decodes
            nxt, n = chunks[i + 1]
            os.posix_fadvise(fd, info.byte_range[0] + nxt * row_bytes, n * row_bytes, os.POSIX_FADV_WILLNEED)
        raw = pread_exact(fd, info, info.byte_range[0] + first * row_bytes, count * row_bytes)
        decode(raw, block[pos : pos + count])
        pos += count
    return block if inverse is None else block[inverse]


def read_raw_rows(fd: int, info: TensorInfo, rows: RowSelection, row_bytes: int) -> np.ndarray:
    """The stored bytes of selected rows, one row per line (n, row_bytes), in the order asked for."""
    runs, inverse = row_runs(row_indices(rows, info.rows))
    parts = [np.frombuffer(pread_exact(fd, info, info.byte_range[0] + first * row_bytes, count * row_bytes),
                           dtype=np.uint8).reshape(count, row_bytes) for first, count in runs if count]
    raw = np.concatenate(parts) if parts else np.empty((0, row_bytes), dtype=np.uint8)
    return raw if inverse is None else raw[inverse]


def stored_sha256(fd: int, info: TensorInfo) -> str:
    """sha256 of a tensor's whole stored byte range, read in chunks of at most `READ_CHUNK_BYTES`."""
    digest = hashlib.sha256()
    start, end = info.byte_range
    for offset in range(start, end, READ_CHUNK_BYTES):
        digest.update(pread_exact(fd, info, offset, min(READ_CHUNK_BYTES, end - offset)))
    return digest.hexdigest()


def read_stored_rows(fd: int, info: TensorInfo, rows: RowSelection) -> np.ndarray:
    """Selected rows of a tensor stored as plain little-endian values (safetensors, torch zip), as float32."""
    row_bytes = info.row_length * DTYPE_SIZES[info.dtype]

    def decode(raw: bytes, out: np.ndarray) -> None:
        to_float32(raw, info.dtype, out.reshape(-1))

    return read_row_runs(fd, info, rows, row_bytes, decode)


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


def pread_exact(fd: int, info: TensorInfo, offset: int, length: int) -> bytes:
    """Exactly `length` bytes at `offset`, or a `CheckpointError` if the file ends first."""
    chunks = []
    got = 0
    while got < length:
        data = os.pread(fd, length - got, offset + got)
        if not data:
            raise CheckpointError(info.file, f"tensor {info.name!r}: file ends before its data (truncated)")
        chunks.append(data)
        got += len(data)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
