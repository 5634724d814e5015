"""The checkpoint API every feature reads through: lazy tensor listing and row-level reads as float32."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ._rounding import Rounded, float_rounding

# Side files a checkpoint folder may hold beside its weights (chain of custody lists them).
CONFIG_NAMES = ("config.json",)
TOKENIZER_NAMES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "merges.txt", "vocab.json",
    "tokenizer.model", "special_tokens_map.json",
)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as stored: logical PyTorch-order shape (rows = output features), source dtype, location."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    byte_range: tuple[int, int]  # absolute [start, end) offsets in `file`

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.byte_range[1] - self.byte_range[0]

    @property
    def rows(self) -> int:
        """Row count of the 2-D view: shape[0] (1 for a scalar)."""
        return self.shape[0] if self.shape else 1

    @property
    def row_length(self) -> int:
        """Entries per row of the 2-D view (trailing dimensions flattened)."""
        return self.numel // self.rows if self.rows else 0


def view_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D view every reader gives: (shape[0], prod(shape[1:])); a vector is one row."""
    if not shape:
        return (1, 1)
    if len(shape) == 1:
        return (1, shape[0])
    n = 1
    for d in shape[1:]:
        n *= d
    return (shape[0], n)


@dataclass
class CheckpointFile:
    """A file that belongs to a checkpoint, for chain of custody."""

    path: Path
    size: int
    role: str  # "weights", "index", "config", "tokenizer", "other"
    link_target: str | None = None  # where a symbolic link leaving the checkpoint folder really points


RowSelection = slice | Sequence[int] | np.ndarray | None


class Checkpoint(ABC):
    """A readable checkpoint: lists tensors without reading them and reads any rows on demand.

    Tensor names from sub-model folders are prefixed with the folder path in dotted form
    (``vision_tower/model.safetensors`` tensor ``a.b`` is ``vision_tower.a.b``).
    """

    path: Path
    format: str  # "safetensors" | "gguf" | "pytorch"
    quantisation: str | None = None
    config: dict[str, Any] | None = None
    metadata: dict[str, Any]

    @abstractmethod
    def tensors(self) -> Iterator[TensorInfo]:
        """Every tensor, in storage order, without reading data."""

    @abstractmethod
    def read_rows(self, name: str, rows: RowSelection = None) -> np.ndarray:
        """Rows of the 2-D view of tensor `name` as float32; `None` reads the whole tensor.

        A 1-D tensor is one row; a >2-D tensor is viewed as (shape[0], prod(shape[1:])).
        Only the bytes of the requested rows are read.
        """

    @abstractmethod
    def files(self) -> list[CheckpointFile]:
        """Every file the checkpoint consists of (weights, index, config, tokenizer)."""

    def read_rows_rounded(self, name: str, rows: RowSelection = None) -> Rounded | None:
        """`read_rows` with each entry's rounding interval in its storage (half a float ULP, half a quantisation
        step, unbounded past a clipping end code); None when this storage's rounding is not known."""
        return float_rounding(self.read_rows(name, rows), self.tensor(name).dtype)

    def stored_sha256(self, name: str) -> str | None:
        """sha256 of tensor `name`'s stored bytes when they are one byte range of a local file and hold the whole
        tensor: for plain little-endian floats (F32, F16, BF16) the value digest at that precision, for GGUF
        quantised blocks the digest of the blocks themselves. None for every other storage (packed across
        several tensors, remote) and in formats that do not say."""
        return None

    def tensor(self, name: str) -> TensorInfo:
        for info in self.tensors():
            if info.name == name:
                return info
        raise KeyError(name)

    def read(self, name: str) -> np.ndarray:
        """The whole tensor as float32 in its logical shape."""
        info = self.tensor(name)
        return self.read_rows(name).reshape(info.shape)

    def close(self) -> None:
        """Release open files; reading after close is an error."""

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
