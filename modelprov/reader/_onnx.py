"""ONNX checkpoints (`*.onnx`, with external data files when present), read lazily and never executed.

The graph is parsed from the protobuf wire format (`_onnx_model.py`); initialiser bytes are read by offset and
length only when rows are asked for, embedded or external, so memory stays bounded as for safetensors.
Anonymous initialisers are named from the graph (`_onnx_names.py`), quantised ones dequantised (`_onnx_quant.py`).

Layout: tensors are listed **as stored**. A MatMul weight is stored [in, out] (rows = input features), the
transpose of PyTorch's nn.Linear; matching finds it with its transposed placements, as for GPT-2's Conv1D, and
`metadata["onnx"]["stored_in_out"]` counts them. Gemm with `transB=1` stores [out, in]. A leading 1 of a tensor
of rank ≥ 3 that is not a convolution kernel is dropped (a position table pre-sliced to [1, 64, H] is (64, H)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelprov.errors import CheckpointError
from ._base import CheckpointFile, RowSelection, TensorInfo
from ._dtypes import to_float32
from ._onnx_model import Node, OnnxModel, StoredTensor, parse_onnx
from ._onnx_names import MATMUL_OPS, recover_names, use_of
from ._onnx_quant import OnnxQuantised, find_onnx_quantised, summary
from ._quantised import dominant_scheme
from ._rounding import Rounded
from ._rows import pread_exact, read_stored_rows, row_indices
from ._table import TableCheckpoint

_FLOAT_DTYPES = frozenset({"F32", "F16", "BF16", "F64", "F8_E4M3", "F8_E5M2"})
_CONV_OPS = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv"})
_MAX_SMALL_BYTES = 64 * 1024 * 1024


class OnnxCheckpoint(TableCheckpoint):
    """One `.onnx` file (and its external data): float and dequantised initialisers, named from the graph."""

    format = "onnx"

    def __init__(self, path: Path, side_files: list[CheckpointFile], config: dict[str, Any] | None) -> None:
        super().__init__(path)
        self.config = config
        model = parse_onnx(path)
        self._sources: dict[str, tuple[TensorInfo, StoredTensor, OnnxQuantised | None]] = {}
        try:
            quantised = find_onnx_quantised(model, self._read_small)
            self._build(model, quantised)
        except CheckpointError:
            self.close()
            raise
        files = {path: "weights", **{t.file: "weights" for t in model.tensors.values()}}
        self._files = [*side_files, *(CheckpointFile(f, f.stat().st_size, role) for f, role in files.items())]
        found = summary(quantised)
        if found:
            self.metadata["quantisation"] = found
            self.quantisation = dominant_scheme(found)

    def _build(self, model: OnnxModel, quantised: dict[str, OnnxQuantised]) -> None:
        hidden = {h for q in quantised.values() for h in q.hidden}
        kept: list[StoredTensor] = []
        skipped = {"integer": 0, "scalar": 0, "unused": 0}
        for t in model.tensors.values():
            if t.name in hidden:
                continue
            if t.name not in quantised and t.dtype not in _FLOAT_DTYPES:
                skipped["integer"] += 1  # shape constants, position ids, masks: not weights
            elif t.numel <= 1:
                skipped["scalar"] += 1
            elif t.name not in model.consumers:
                skipped["unused"] += 1
            else:
                kept.append(t)
        uses = {t.name: quantised[t.name].use if t.name in quantised else use_of(model, t.name) for t in kept}
        names = recover_names(model, kept, {k: v for k, v in uses.items() if v is not None},
                              {name: q.value for name, q in quantised.items()})
        in_out = 0
        for t in kept:
            q = quantised.get(t.name)
            use = uses[t.name]
            shape = t.dims if q is not None else _presented_shape(t.dims, use)
            info = TensorInfo(names[t.name], q.scheme if q else str(t.dtype), shape, t.file, t.byte_range)
            self._add(info)
            self._sources[info.name] = (TensorInfo(info.name, str(t.dtype), shape, t.file, t.byte_range), t, q)
            in_out += bool(use and _stores_in_out(use, len(shape)))
        self.metadata["onnx"] = {
            **model.metadata, "nodes": len(model.nodes), "initializers": len(model.tensors) + len(model.unread),
            "renamed": sum(1 for k, v in names.items() if k != v), "stored_in_out": in_out,
            "skipped": {k: v for k, v in skipped.items() if v},
            "unread": {k: model.unread[k] for k in list(model.unread)[:50]},
        }

    def read_rows(self, name: str, rows: RowSelection = None) -> np.ndarray:
        stored_info, _, q = self._sources[name]
        out = self._stored_rows(name, rows)
        if q is None:
            return out
        return q.dequantise(self._row_ids(stored_info, rows), out)

    def read_rows_rounded(self, name: str, rows: RowSelection = None) -> Rounded | None:
        stored_info, _, q = self._sources[name]
        if q is None:
            return super().read_rows_rounded(name, rows)
        return q.rounded(self._row_ids(stored_info, rows), self._stored_rows(name, rows))

    @staticmethod
    def _row_ids(info: TensorInfo, rows: RowSelection) -> np.ndarray:
        sel = row_indices(rows, info.rows)
        return np.arange(sel.start, sel.stop) if isinstance(sel, slice) else np.asarray(sel, dtype=np.int64)

    def _stored_rows(self, name: str, rows: RowSelection) -> np.ndarray:
        """Selected rows of a tensor as stored (integer codes as float32 for a quantised one)."""
        stored_info, t, _ = self._sources[name]
        if t.values is not None:
            sel = row_indices(rows, stored_info.rows)
            picked = t.values.reshape(stored_info.rows, stored_info.row_length)[sel]
            out = to_float32(np.ascontiguousarray(picked), str(t.dtype)).reshape(picked.shape)
        else:
            out = read_stored_rows(self._fd(t.file), stored_info, rows)
        return out

    def _read_small(self, t: StoredTensor) -> np.ndarray:
        """A small tensor (scale, zero point) whole, as float32 in its dims."""
        if t.values is not None:
            return to_float32(t.values, str(t.dtype)).reshape(t.dims)
        start, end = t.byte_range
        if end - start > _MAX_SMALL_BYTES:
            raise CheckpointError(t.file, f"tensor {t.name!r}: {end - start} bytes is too large for a quantisation "
                                  "parameter")
        info = TensorInfo(t.name, str(t.dtype), t.dims, t.file, t.byte_range)
        return to_float32(pread_exact(self._fd(t.file), info, start, end - start), str(t.dtype)).reshape(t.dims)


def _presented_shape(dims: tuple[int, ...], use: tuple[Node, int] | None) -> tuple[int, ...]:
    """Stored dims, without leading 1s of a rank ≥ 3 tensor that is not a convolution kernel."""
    if use is not None and use[0].op_type in _CONV_OPS:
        return dims
    while len(dims) > 2 and dims[0] == 1:
        dims = dims[1:]
    return dims


def _stores_in_out(use: tuple[Node, int], rank: int) -> bool:
    """Whether the weight is stored [in, out]: MatMul's B, or Gemm's B without transB."""
    node, idx = use
    if rank != 2 or node.op_type not in MATMUL_OPS:
        return False
    if node.op_type == "Gemm":
        return idx == 1 and not node.attrs.get("transB", 0)
    return idx in (1, 3) if node.op_type == "QLinearMatMul" else idx == 1
