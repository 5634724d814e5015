"""PyTorch `.bin`/`.pt`/`.pth` checkpoints, loaded with `torch.load(weights_only=True)`: never arbitrary objects.

The state dict must map names to tensors; a training checkpoint that nests it under `state_dict` or `model`
(beside optimiser state, epochs…) is read from there. Anything else (or anything the weights-only unpickler
refuses) is a `CheckpointError`. Zip files (torch ≥ 1.6) are memory-mapped and each tensor's storage is located
inside the archive, so row reads are positioned reads of just those bytes, as for safetensors. Legacy pickled
(pre-zip) files cannot be memory-mapped: they are loaded into memory whole (memory = the file's size).
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from modelprov.errors import CheckpointError
from ._base import CheckpointFile, RowSelection, TensorInfo
from ._rows import read_stored_rows, row_indices
from ._table import TableCheckpoint


def _torch_dtype_names() -> dict[Any, str]:
    import torch  # deferred: torch takes ~2 s to import; only legacy .bin/.pt checkpoints need it

    return {
        torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
        torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
        torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
        torch.uint64: "U64", torch.uint32: "U32", torch.uint16: "U16", torch.uint8: "U8", torch.bool: "BOOL",
    }


class PytorchCheckpoint(TableCheckpoint):
    """One or more `pytorch_model*.bin` files (zip serialisation), with sub-model name prefixes as for safetensors."""

    format = "pytorch"

    def __init__(self, path: Path, shards: list[tuple[Path, str]], extra_files: list[CheckpointFile],
                 config: dict[str, Any] | None) -> None:
        super().__init__(path)
        self.config = config
        self._tensors: dict[str, Any] = {}  # name -> mmapped torch tensor, for views that are not contiguous
        self._files = list(extra_files)
        dtype_names = _torch_dtype_names()
        for shard, prefix in shards:
            state = load_state_dict(shard)
            offsets = _storage_offsets(shard, state)
            for key, tensor in state.items():
                name = prefix + key
                dtype = dtype_names.get(tensor.dtype)
                if dtype is None:
                    raise CheckpointError(shard, f"tensor {key!r}: unsupported dtype {tensor.dtype}")
                start = offsets.get(tensor.untyped_storage().data_ptr())
                if start is not None and tensor.is_contiguous():
                    begin = start + tensor.storage_offset() * tensor.element_size()
                    byte_range = (begin, begin + tensor.numel() * tensor.element_size())
                else:
                    byte_range = (0, 0)  # not a contiguous run of the file: read through torch
                    self._tensors[name] = tensor
                self._add(TensorInfo(name, dtype, tuple(tensor.shape), shard, byte_range))
            self._files.append(CheckpointFile(shard, shard.stat().st_size, "weights"))

    def read_rows(self, name: str, rows: RowSelection = None) -> np.ndarray:
        info = self._infos[name]
        fallback = self._tensors.get(name)
        if fallback is not None:
            sel = row_indices(rows, info.rows)
            flat = fallback.reshape(info.rows, info.row_length)
            picked = flat[sel] if isinstance(sel, slice) else flat[np.asarray(sel)]
            return picked.float().numpy().astype(np.float32, copy=False)
        return read_stored_rows(self._fd(info.file), info, rows)

    def close(self) -> None:
        super().close()
        self._tensors.clear()


NESTED_KEYS = ("state_dict", "model")  # where training checkpoints keep the weights


def load_state_dict(path: Path) -> dict[str, Any]:
    """`torch.load` with the weights-only unpickler (mmap for zip files); a dict of tensors or a `CheckpointError`."""
    import torch  # deferred: see _torch_dtype_names

    try:
        mmap = zipfile.is_zipfile(path)  # pre-zip pickles cannot be memory-mapped: they are loaded whole
        state = torch.load(path, weights_only=True, mmap=mmap, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError, zipfile.BadZipFile,
            AttributeError, TypeError, KeyError, IndexError, struct.error) as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(path, f"cannot load as a weights-only PyTorch checkpoint ({detail})") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, f"holds a {type(state).__name__}, not a state dict of tensors")
    nested = next((k for k in NESTED_KEYS if isinstance(state.get(k), dict)), None)
    if nested is not None and not all(isinstance(v, torch.Tensor) for v in state.values()):
        state = state[nested]
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(path, f"state dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(path, f"entry {key!r} is a {type(value).__name__}, not a tensor")
    return state


def _storage_offsets(path: Path, state: dict[str, Any]) -> dict[int, int]:
    """Map each storage's mmapped address to its absolute file offset (empty if it cannot be established)."""
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
            starts = []
            order = [e for e in archive.infolist() if e.filename.endswith("/byteorder")]
            if order and archive.read(order[0]).strip() != b"little":
                return {}  # big-endian storages: let torch convert them
            for entry in archive.infolist():
                if "/data/" not in entry.filename or entry.filename.rsplit("/", 1)[-1].startswith("."):
                    continue
                if entry.compress_type != zipfile.ZIP_STORED:
                    return {}
                handle.seek(entry.header_offset)
                local = handle.read(30)
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                starts.append(entry.header_offset + 30 + name_len + extra_len)
    except (OSError, zipfile.BadZipFile, struct.error):
        return {}
    ptrs = sorted({t.untyped_storage().data_ptr() for t in state.values() if t.untyped_storage().nbytes()})
    starts.sort()
    if len(ptrs) != len(starts) or not ptrs:
        return {}
    base = ptrs[0] - starts[0]
    if any(p - s != base for p, s in zip(ptrs, starts)):
        return {}  # storages are not one contiguous mapping of the file: read through torch instead
    return {p: s for p, s in zip(ptrs, starts)}
