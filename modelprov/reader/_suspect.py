"""Row reads of the checkpoint under scan that count every byte they read (the scan reports the share read)."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ._base import Checkpoint, TensorInfo, view_shape
from ._dtypes import DTYPE_SIZES
from ._rounding import Rounded


class SuspectReader:
    """Reads rows of a checkpoint's 2-D tensor views, only the rows asked for, and counts the bytes read.

    The last read is kept: the matchers often ask for the same rows of one tensor at several placements.
    """

    def __init__(self, ckpt: Checkpoint) -> None:
        self.ckpt = ckpt
        self.bytes_read = 0
        self._infos = {i.name: i for i in ckpt.tensors()}
        self._last: tuple[str, bytes, np.ndarray] | None = None

    def info(self, name: str) -> TensorInfo:
        return self._infos[name]

    def rows(self, name: str, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Rows (any order; all when None) of tensor `name`'s 2-D view, counted in `bytes_read`."""
        info = self._infos[name]
        width = view_shape(info.shape)[1]
        if len(info.shape) < 2:  # a vector is one row here (the reader views it as a column)
            out = self.ckpt.read_rows(info.name).reshape(1, width)
            if rows is not None and not isinstance(rows, slice):
                out = out[np.asarray(rows)]
        else:
            out = self.ckpt.read_rows(info.name, rows).reshape(-1, width)
        self.bytes_read += int(out.shape[0] * width * _entry_bytes(info))
        return out

    def rounded_rows(self, name: str, rows: np.ndarray | slice | None = None) -> Rounded | None:
        """`rows` with each entry's rounding interval in its storage (None when unknown), counted likewise."""
        info = self._infos[name]
        width = view_shape(info.shape)[1]
        vector = len(info.shape) < 2  # one row here; the reader views it as a column
        out = self.ckpt.read_rows_rounded(info.name, None if vector else rows)
        if out is None:
            return None
        out = Rounded(*(a.reshape(-1, width) for a in (out.values, out.below, out.above)))
        if vector and rows is not None and not isinstance(rows, slice):
            out = out.select(np.asarray(rows))
        self.bytes_read += int(out.values.shape[0] * width * _entry_bytes(info))
        return out

    def stored_sha256(self, name: str) -> str | None:
        """`Checkpoint.stored_sha256`, its bytes counted in `bytes_read` when it reads them."""
        digest = self.ckpt.stored_sha256(name)
        if digest is not None:
            self.bytes_read += self._infos[name].nbytes
        return digest

    def cached_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """`rows(name, rows)`, answered without reading when the previous call asked for the same rows."""
        key = np.asarray(rows, dtype=np.int64).tobytes()
        if self._last is not None and self._last[0] == name and self._last[1] == key:
            return self._last[2]
        block = self.rows(name, rows)
        self._last = (name, key, block)
        return block

    def row_blocks(self, name: str, start: int = 0, stop: int | None = None, *, entries: int = 1 << 24
                   ) -> Iterator[tuple[int, np.ndarray]]:
        """Rows `start`..`stop` of tensor `name` in blocks of about `entries` entries (bounded memory)."""
        n_rows, width = view_shape(self._infos[name].shape)
        stop = n_rows if stop is None else stop
        step = max(1, entries // max(width, 1))
        for lo in range(start, stop, step):
            yield lo, self.rows(name, slice(lo, min(stop, lo + step)))


def _entry_bytes(info: TensorInfo) -> float:
    """Stored bytes per entry (fractional for block-quantised formats)."""
    size = DTYPE_SIZES.get(info.dtype)
    return float(size) if size else info.nbytes / max(info.numel, 1)
