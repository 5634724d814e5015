"""Present packed or scaled quantised safetensors weights as ordinary float tensors.

A quantised linear layer is stored as several tensors (packed integers, scales, zero points, group
indices). `find_quantised` groups them by module, checks their shapes against each other and the
checkpoint's `quantization_config`, and returns one logical `<module>.weight` per layer in PyTorch
orientation [out_features, in_features] with a dtype label naming the scheme; the auxiliary tensors are
hidden. `QuantisedWeight.read_rows` dequantises only the requested output rows.

Schemes and the public definitions they follow:

- ``FP8_E4M3_BLOCK`` / ``FP8_E5M2_BLOCK``: fp8 ``weight`` [out, in] with ``weight_scale_inv``
  [ceil(out/b0), ceil(in/b1)] (DeepSeek-V3 ``inference/kernel.py::weight_dequant`` and Qwen3-FP8;
  transformers ``integrations/finegrained_fp8.py::_dequantize_fp8_weight``): w = q · scale_inv[block].
  Block size from ``quantization_config.weight_block_size`` (default [128, 128]). compressed-tensors'
  ``strategy: block`` stores the same grid as ``weight_scale``.
- ``FP8_E4M3_TENSOR`` / ``_CHANNEL`` / ``_GROUP``: fp8 ``weight`` with ``weight_scale`` of shape [] or [1]
  (ModelOpt, compressed-tensors ``strategy: tensor``), [out] or [out, 1] (``channel``; FBGEMM fp8),
  or [out, in/g] (``group``): w = q · scale.
- ``INT8_TENSOR`` / ``_CHANNEL`` / ``_GROUP``: compressed-tensors ``int-quantized`` (``weight`` I8, same
  scale shapes, optional ``weight_zero_point``): w = (q − zero_point) · scale.
- ``INT4_PACKED`` (and ``INT8_PACKED``): compressed-tensors ``pack-quantized`` (``weight_packed`` I32
  [out, in·bits/32], values packed along the input axis from the low bits, stored with the offset
  2^(bits−1) added; ``weight_scale`` [out, groups]; ``weight_shape``): w = (q − 2^(bits−1) − zp) · scale.
- ``GPTQ_INT{2,4,8}``: AutoGPTQ / GPTQModel / optimum layout: ``qweight`` I32 [in·bits/32, out] packed
  along the input axis from the low bits; ``qzeros`` I32 [groups, out·bits/32] packed along the output
  axis; ``scales`` F16 [groups, out]; ``g_idx`` I32 [in] (group of each input; act-order makes it a
  permutation). w[o, i] = (q[i, o] − z[g_idx[i], o]) · s[g_idx[i], o]. The stored zero is z − 1 in the
  original format (``checkpoint_format``/``format`` "gptq" or absent: AutoGPTQ's kernels add 1), and z
  itself in ``gptq_v2`` (GPTQModel's ``convert_gptq_v1_to_v2_format`` adds the 1 at load).
- ``AWQ_INT4``: AutoAWQ GEMM (``version: gemm``): ``qweight`` I32 [in, out/8] packed along the output
  axis in the interleaved order [0, 2, 4, 6, 1, 3, 5, 7] (AutoAWQ ``utils/packing_utils.py``:
  ``AWQ_ORDER``; unpacking uses ``AWQ_REVERSE_ORDER`` [0, 4, 1, 5, 2, 6, 3, 7]); ``qzeros`` I32
  [in/group, out/8] in the same order; ``scales`` F16 [in/group, out]. w = (q − z) · s, no offset.

Malformed combinations (a missing zero-point tensor, scales whose shape disagrees with the weight) raise
`CheckpointError` naming the file and tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from modelprov.errors import CheckpointError
from ._base import RowSelection, TensorInfo
from ._dtypes import DTYPE_SIZES, numpy_dtype
from ._rounding import Rounded, affine_rounding, float_rounding
from ._rows import pread_exact, row_indices

__all__ = ["QuantisedWeight", "find_quantised", "dominant_scheme", "quantization_config", "stored_reader",
           "AWQ_ORDER", "AWQ_REVERSE_ORDER", "StoredReader", "FloatReader"]

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
"""AutoAWQ GEMM: nibble i of a packed int32 holds output column 8c + AWQ_ORDER[i]."""
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)
"""Output column 8c + k sits in nibble AWQ_REVERSE_ORDER[k]."""

DEFAULT_FP8_BLOCK = (128, 128)
CHUNK_BYTES = 16 * 1024 * 1024  # packed bytes unpacked at once: bounds temporaries of whole-tensor reads

StoredReader = Callable[[TensorInfo, int, int], np.ndarray]
"""`(info, first_row, n_rows)` -> those rows of a stored tensor in its own dtype, 2-D (n_rows, row_length)."""
FloatReader = Callable[[TensorInfo, RowSelection], np.ndarray]
"""`(info, rows)` -> selected rows of a stored tensor as float32 (the ordinary reader)."""

_FP8 = {"F8_E4M3": "FP8_E4M3", "F8_E5M2": "FP8_E5M2"}


@dataclass(frozen=True)
class QuantisedWeight:
    """One dequantisable weight: the logical tensor shown to callers and the stored tensors it is made of.

    `info` has the logical name (`<module>.weight`), shape [out, in], the scheme as dtype and the file and
    byte range of the packed data; `parts` maps roles ("q", "scale", "zero", "g_idx") to stored tensors.
    """

    info: TensorInfo
    scheme: str
    parts: dict[str, TensorInfo]
    bits: int = 8
    group_size: int = 0  # inputs per scale group (GPTQ/AWQ/packed/group)
    block: tuple[int, int] = (0, 0)  # FP8 block grid (rows, cols)
    zero_offset: int = 0  # added to stored zeros (GPTQ v1: 1)
    hidden: tuple[str, ...] = field(default=())  # every stored tensor name this weight hides

    def read_rows(self, rows: RowSelection, stored: StoredReader, as_float: FloatReader) -> np.ndarray:
        """Dequantised rows (output features) of the weight as float32, shape (n, in)."""
        out_features = self.info.shape[0]
        sel = row_indices(rows, out_features)
        idx = np.arange(sel.start, sel.stop) if isinstance(sel, slice) else np.asarray(sel, dtype=np.int64)
        kind = self.scheme.split("_")[0]
        if kind in ("FP8", "INT8") and not self.scheme.endswith("PACKED"):
            return self._scaled(rows, idx, as_float)
        if kind == "GPTQ":
            return self._gptq(idx, stored, as_float)
        if kind == "AWQ":
            return self._awq(idx, stored, as_float)
        return self._packed(idx, stored, as_float)

    def read_rows_rounded(self, rows: RowSelection, stored: StoredReader, as_float: FloatReader) -> Rounded:
        """`read_rows` with the rounding interval of every entry: half a step of its scale (unbounded past the
        end codes, where a quantiser clips); for fp8, half an fp8 ULP of the code times its scale."""
        out_features = self.info.shape[0]
        sel = row_indices(rows, out_features)
        idx = np.arange(sel.start, sel.stop) if isinstance(sel, slice) else np.asarray(sel, dtype=np.int64)
        q, zero, scale = self._grid(rows, idx, stored, as_float)
        values = (q - zero) * scale
        if self.scheme.startswith("FP8"):
            fp8 = float_rounding(q, "F8_E5M2" if "E5M2" in self.scheme else "F8_E4M3")
            half = fp8.below * np.abs(scale)
            return Rounded(values, half, half.copy())
        bottom, top = (-128, 127) if self.scheme.startswith("INT8") and not self.scheme.endswith("PACKED") \
            else (0, (1 << self.bits) - 1)
        return affine_rounding(values, scale, q, top, bottom)

    def _grid(self, rows: RowSelection, idx: np.ndarray, stored: StoredReader, as_float: FloatReader
              ) -> tuple[np.ndarray, np.ndarray | float, np.ndarray]:
        """Codes, zero points and scales of the selected rows, each expanded to (n, in): value = (q − zero) · scale."""
        n_in = self.info.shape[1]
        kind = self.scheme.split("_")[0]
        if kind in ("FP8", "INT8") and not self.scheme.endswith("PACKED"):
            q = as_float(self.parts["q"], rows)
            scale = _whole(as_float, self.parts["scale"])
            if self.block != (0, 0):
                b0, b1 = self.block
                s = scale.reshape(scale.shape[0], -1)[idx // b0]
                return q, 0.0, np.repeat(s, b1, axis=1)[:, :n_in]
            s = scale.reshape(-1)[:1].reshape(1, 1) if scale.size == 1 else scale.reshape(self.info.shape[0], -1)[idx]
            zero: np.ndarray | float = 0.0
            if "zero" in self.parts:
                z = _whole(as_float, self.parts["zero"])
                z = z.reshape(-1)[:1].reshape(1, 1) if z.size == 1 else z.reshape(self.info.shape[0], -1)[idx]
                zero = _expand(z, q.shape)
            return q, zero, _expand(s, q.shape)
        if kind == "GPTQ":
            g = self._g_idx(stored)
            scales = _whole(as_float, self.parts["scale"])[:, idx]
            zeros = _unpack_along_rows(_whole_stored(stored, self.parts["zero"]), self.bits)[:, idx]
            q = self._gptq_codes(idx, stored)
            return q, (zeros.astype(np.float32) + self.zero_offset)[g].T, scales[g].T
        if kind == "AWQ":
            scales = _whole(as_float, self.parts["scale"])[:, idx]
            zeros = _awq_unpack(_whole_stored(stored, self.parts["zero"]))[:, idx].astype(np.float32)
            g = np.arange(n_in) // self.group_size
            return self._awq_codes(idx, stored), zeros[g].T, scales[g].T
        n_out = self.info.shape[0]
        q = self._packed_codes(idx, stored)
        zero = float(1 << (self.bits - 1))
        if "zero" in self.parts:
            zero = zero + _expand(_whole(as_float, self.parts["zero"]).reshape(n_out, -1)[idx], q.shape)
        return q, zero, _expand(_whole(as_float, self.parts["scale"]).reshape(n_out, -1)[idx], q.shape)

    # ---- scaled fp8 / int8 -------------------------------------------------------------------------
    def _scaled(self, rows: RowSelection, idx: np.ndarray, as_float: FloatReader) -> np.ndarray:
        w = as_float(self.parts["q"], rows)
        n_in = self.info.shape[1]
        scale = _whole(as_float, self.parts["scale"])
        zero = _whole(as_float, self.parts["zero"]) if "zero" in self.parts else None
        if self.block != (0, 0):
            b0, b1 = self.block
            s = scale.reshape(scale.shape[0], -1)[idx // b0]  # (n, in blocks)
            _scale_columns(w, s, b1)
            return w
        if scale.size == 1:  # per tensor
            if zero is not None:
                w -= zero.reshape(-1)[0]
            w *= scale.reshape(-1)[0]
            return w
        s = scale.reshape(self.info.shape[0], -1)[idx]  # (n, groups): channel is one group of all inputs
        if zero is not None:
            z = zero.reshape(self.info.shape[0], -1)[idx]
            _add_columns(w, -z, math.ceil(n_in / z.shape[1]))
        _scale_columns(w, s, math.ceil(n_in / s.shape[1]))
        return w

    # ---- GPTQ ---------------------------------------------------------------------------------------
    def _gptq(self, idx: np.ndarray, stored: StoredReader, as_float: FloatReader) -> np.ndarray:
        scales = _whole(as_float, self.parts["scale"])[:, idx]  # (groups, n)
        zeros = _unpack_along_rows(_whole_stored(stored, self.parts["zero"]), self.bits)[:, idx]
        zeros = zeros.astype(np.float32) + self.zero_offset
        g = self._g_idx(stored)
        out = self._gptq_codes(idx, stored)  # (n, in): rows = output features
        for lo in range(0, out.shape[1], _rows_per_chunk(self.parts["q"]) * (32 // self.bits)):
            hi = min(out.shape[1], lo + _rows_per_chunk(self.parts["q"]) * (32 // self.bits))
            gg = g[lo:hi]
            out[:, lo:hi] = (out[:, lo:hi] - zeros[gg].T) * scales[gg].T
        return out

    def _gptq_codes(self, idx: np.ndarray, stored: StoredReader) -> np.ndarray:
        """The integer codes of the selected output rows as float32 (n, in), unpacked chunk by chunk."""
        n_in = self.info.shape[1]
        per_word = 32 // self.bits
        mask = (1 << self.bits) - 1
        shifts = (np.arange(per_word, dtype=np.uint32) * self.bits)
        q_info = self.parts["q"]
        out = np.empty((len(idx), n_in), dtype=np.float32)
        step = _rows_per_chunk(q_info)
        for first in range(0, q_info.shape[0], step):
            count = min(step, q_info.shape[0] - first)
            packed = stored(q_info, first, count).view(np.uint32)[:, idx]  # (count, n)
            q = (packed[:, None, :] >> shifts[None, :, None]) & mask  # (count, per_word, n)
            lo = first * per_word
            out[:, lo: lo + count * per_word] = q.reshape(count * per_word, len(idx)).T
        return out

    def _g_idx(self, stored: StoredReader) -> np.ndarray:
        n_in = self.info.shape[1]
        info = self.parts.get("g_idx")
        groups = self.parts["scale"].shape[0]
        if info is None:
            return np.arange(n_in) // self.group_size
        g = _whole_stored(stored, info).reshape(-1).astype(np.int64)
        if g.size != n_in or (g.size and (g.min() < 0 or g.max() >= groups)):
            raise CheckpointError(info.file, f"tensor {info.name!r}: group index must hold {n_in} entries in "
                                  f"[0, {groups}) (the scales' groups)")
        return g

    # ---- AWQ ----------------------------------------------------------------------------------------
    def _awq(self, idx: np.ndarray, stored: StoredReader, as_float: FloatReader) -> np.ndarray:
        scales = _whole(as_float, self.parts["scale"])[:, idx]
        zeros = _awq_unpack(_whole_stored(stored, self.parts["zero"]))[:, idx].astype(np.float32)
        out = self._awq_codes(idx, stored)
        g = np.arange(out.shape[1]) // self.group_size
        for lo in range(0, out.shape[1], self.group_size):
            out[:, lo: lo + self.group_size] -= zeros[g[lo]][:, None]
            out[:, lo: lo + self.group_size] *= scales[g[lo]][:, None]
        return out

    def _awq_codes(self, idx: np.ndarray, stored: StoredReader) -> np.ndarray:
        n_in = self.info.shape[1]
        col = idx // 8
        shift = (np.asarray(AWQ_REVERSE_ORDER, dtype=np.uint32)[idx % 8] * 4)
        q_info = self.parts["q"]
        out = np.empty((len(idx), n_in), dtype=np.float32)
        step = _rows_per_chunk(q_info)
        for first in range(0, n_in, step):
            count = min(step, n_in - first)
            packed = stored(q_info, first, count).view(np.uint32)[:, col]  # (count, n)
            out[:, first: first + count] = ((packed >> shift[None, :]) & 0xF).T
        return out

    # ---- compressed-tensors pack-quantized ----------------------------------------------------------
    def _packed(self, idx: np.ndarray, stored: StoredReader, as_float: FloatReader) -> np.ndarray:
        n_out = self.info.shape[0]
        out = self._packed_codes(idx, stored)
        out -= 1 << (self.bits - 1)
        scale = _whole(as_float, self.parts["scale"]).reshape(n_out, -1)[idx]
        if "zero" in self.parts:
            z = _whole(as_float, self.parts["zero"]).reshape(n_out, -1)[idx]
            _add_columns(out, -z, self.group_size)
        _scale_columns(out, scale, self.group_size)
        return out

    def _packed_codes(self, idx: np.ndarray, stored: StoredReader) -> np.ndarray:
        n_in = self.info.shape[1]
        q_info = self.parts["q"]
        out = np.empty((len(idx), n_in), dtype=np.float32)
        for pos, (first, count, take) in _row_chunks(idx, _rows_per_chunk(q_info)):
            out[pos] = _unpack_along_cols(stored(q_info, first, count)[take], self.bits)[:, :n_in]
        return out


# ------------------------------------------------------------------------------------------- helpers


def _whole(as_float: FloatReader, info: TensorInfo) -> np.ndarray:
    """A small auxiliary tensor (scales, zeros) as float32 in its logical shape."""
    return as_float(info, None).reshape(info.shape if info.shape else (1,))


def _whole_stored(stored: StoredReader, info: TensorInfo) -> np.ndarray:
    return stored(info, 0, info.rows).reshape(info.shape if len(info.shape) >= 2 else (-1,))


def _rows_per_chunk(info: TensorInfo) -> int:
    row_bytes = max(1, info.nbytes // max(info.rows, 1))
    return max(1, CHUNK_BYTES // row_bytes)


def _row_chunks(idx: np.ndarray, step: int) -> list[tuple[np.ndarray, tuple[int, int, np.ndarray]]]:
    """Group selected rows into stored-row windows of at most `step` rows: (output positions, (first, count,
    rows to take within the window))."""
    out = []
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    start = 0
    while start < len(sorted_idx):
        first = int(sorted_idx[start])
        stop = int(np.searchsorted(sorted_idx, first + step, side="left"))
        window = sorted_idx[start:stop]
        count = int(window[-1]) - first + 1
        out.append((order[start:stop], (first, count, window - first)))
        start = stop
    return out


def _expand(s: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Per-group (or per-tensor) values (n, groups) repeated over the inputs each group covers: (n, in)."""
    width = math.ceil(shape[1] / s.shape[1])
    return np.broadcast_to(np.repeat(s, width, axis=1)[:, : shape[1]], shape)


def _scale_columns(w: np.ndarray, s: np.ndarray, width: int) -> None:
    """w[:, j] *= s[:, j // width] in place, without materialising the expanded scale."""
    _apply_columns(w, s, width, np.multiply)


def _add_columns(w: np.ndarray, s: np.ndarray, width: int) -> None:
    _apply_columns(w, s, width, np.add)


def _apply_columns(w: np.ndarray, s: np.ndarray, width: int, op: Any) -> None:
    n, cols = w.shape
    full = min(cols // width, s.shape[1])
    if full:
        head = w[:, : full * width].reshape(n, full, width)
        op(head, s[:, :full, None], out=head)
    if full * width < cols:
        tail = w[:, full * width:]
        op(tail, s[:, full: full + 1], out=tail)


def _unpack_along_rows(packed: np.ndarray, bits: int) -> np.ndarray:
    """GPTQ qzeros: each int32 holds 32/bits consecutive columns, lowest bits first -> (rows, cols·32/bits)."""
    words = packed.view(np.uint32)
    shifts = np.arange(32 // bits, dtype=np.uint32) * bits
    vals = (words[:, :, None] >> shifts[None, None, :]) & ((1 << bits) - 1)
    return vals.reshape(words.shape[0], -1)


_unpack_along_cols = _unpack_along_rows  # compressed-tensors packs along the input (column) axis the same way


def _awq_unpack(packed: np.ndarray) -> np.ndarray:
    """AWQ qzeros/qweight words -> 4-bit values in natural column order (undoing AWQ_ORDER)."""
    vals = _unpack_along_rows(packed, 4).reshape(packed.shape[0], -1, 8)
    return vals[:, :, list(AWQ_REVERSE_ORDER)].reshape(packed.shape[0], -1)


# ------------------------------------------------------------------------------------------ detection


def quantization_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The checkpoint's `quantization_config` (or compressed-tensors' older `compression_config`), or {}."""
    if not config:
        return {}
    q = config.get("quantization_config") or config.get("compression_config") or {}
    return q if isinstance(q, dict) else {}


def _fail(info: TensorInfo, problem: str) -> CheckpointError:
    return CheckpointError(info.file, f"tensor {info.name!r}: {problem}")


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _weights_args(qcfg: dict[str, Any]) -> dict[str, Any]:
    """compressed-tensors: the `weights` arguments of the first config group (our checkpoints have one)."""
    groups = qcfg.get("config_groups")
    if isinstance(groups, dict):
        for group in groups.values():
            if isinstance(group, dict) and isinstance(group.get("weights"), dict):
                return group["weights"]
    return {}


def find_quantised(infos: dict[str, TensorInfo], config: dict[str, Any] | None, stored: StoredReader | None = None
                   ) -> tuple[dict[str, TensorInfo], dict[str, QuantisedWeight], dict[str, Any] | None]:
    """Group quantised tensors into logical weights.

    Returns the tensor table to present (logical weights in place of their packed tensor, auxiliary
    tensors removed, order otherwise kept), the `QuantisedWeight` of each logical name, and a summary for
    `checkpoint.metadata["quantisation"]` (None when nothing is quantised). `stored` reads the few small
    tensors a layout keeps its logical shape in (compressed-tensors `weight_shape`).
    """
    qcfg = quantization_config(config)
    found: dict[str, QuantisedWeight] = {}
    for name, info in infos.items():
        module, _, leaf = name.rpartition(".")
        if not module:
            continue
        q: QuantisedWeight | None = None
        if leaf == "qweight":
            q = _packed_int(module, info, infos, qcfg)
        elif leaf == "weight_packed":
            q = _compressed_packed(module, info, infos, qcfg, stored)
        elif leaf == "weight" and info.dtype in (*_FP8, "I8") and (
                f"{module}.weight_scale" in infos or f"{module}.weight_scale_inv" in infos):
            q = _scaled(module, info, infos, qcfg)
        if q is not None:
            found[q.info.name] = q
    if not found:
        return infos, {}, None
    hidden = {h for q in found.values() for h in q.hidden}
    by_packed = {q.parts["q"].name: q for q in found.values()}
    table: dict[str, TensorInfo] = {}
    for name, info in infos.items():
        if name in by_packed:
            logical = by_packed[name].info
            if logical.name in table or (logical.name in infos and logical.name != name):
                raise _fail(info, f"both a packed weight and a plain {logical.name!r} are stored")
            table[logical.name] = logical
        elif name not in hidden:
            table[name] = info
    schemes: dict[str, int] = {}
    for q in found.values():
        schemes[q.scheme] = schemes.get(q.scheme, 0) + q.info.numel
    summary = {"method": qcfg.get("quant_method"), "schemes": {k: schemes[k] for k in sorted(schemes)},
               "weights": len(found), "hidden_tensors": len(hidden)}
    return table, found, summary


def dominant_scheme(summary: dict[str, Any] | None) -> str | None:
    """The scheme holding the most parameters, e.g. "GPTQ_INT4"."""
    if not summary or not summary["schemes"]:
        return None
    return max(summary["schemes"].items(), key=lambda kv: (kv[1], kv[0]))[0]


def _aux(infos: dict[str, TensorInfo], module: str, leaf: str) -> TensorInfo | None:
    return infos.get(f"{module}.{leaf}")


def _present(infos: dict[str, TensorInfo], module: str, leaves: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{module}.{leaf}" for leaf in leaves if f"{module}.{leaf}" in infos)


def _packed_int(module: str, qweight: TensorInfo, infos: dict[str, TensorInfo],
                qcfg: dict[str, Any]) -> QuantisedWeight:
    """GPTQ or AWQ-GEMM `qweight` with its `qzeros` and `scales` (method from the config, else the shapes)."""
    if qweight.dtype != "I32" or len(qweight.shape) != 2:
        raise _fail(qweight, f"packed weight must be a 2-D I32 tensor, found {qweight.dtype} {list(qweight.shape)}")
    scales = _aux(infos, module, "scales")
    qzeros = _aux(infos, module, "qzeros")
    for leaf, part in (("scales", scales), ("qzeros", qzeros)):
        if part is None:
            raise _fail(qweight, f"packed weight has no {module}.{leaf} (cannot dequantise)")
    assert scales is not None and qzeros is not None
    if len(scales.shape) != 2 or len(qzeros.shape) != 2 or qzeros.dtype != "I32":
        raise _fail(scales, f"scales {list(scales.shape)} and qzeros {qzeros.dtype} {list(qzeros.shape)} must be "
                    "2-D (qzeros I32)")
    method = str(qcfg.get("quant_method", "")).lower()
    if method not in ("gptq", "awq"):  # no config: tell GPTQ (packed along inputs) from AWQ by the shapes
        method = "gptq" if scales.shape[1] == qweight.shape[1] else "awq"
    # bits from the config, else from how many zero points one int32 of qzeros holds (outputs per word)
    per_zero_word = scales.shape[1] // max(qzeros.shape[1], 1)
    bits = _int(qcfg.get("bits"), 32 // per_zero_word if per_zero_word in (4, 8, 16) else 4)
    if bits not in (2, 4, 8):
        raise _fail(qweight, f"{bits}-bit packing is not supported (2, 4 or 8 bits)")
    per_word = 32 // bits
    if method == "awq":
        version = str(qcfg.get("version", qcfg.get("format", "gemm"))).lower()
        if version != "gemm" or bits != 4:
            raise _fail(qweight, f"AWQ {version} {bits}-bit is not supported (only GEMM 4-bit)")
        n_in, n_out = qweight.shape[0], qweight.shape[1] * 8
        if scales.shape[1] != n_out or qzeros.shape != (scales.shape[0], qweight.shape[1]):
            raise _fail(scales, f"AWQ scales {list(scales.shape)} / qzeros {list(qzeros.shape)} do not fit qweight "
                        f"{list(qweight.shape)} (expected [groups, {n_out}] / [groups, {qweight.shape[1]}])")
        group = _group_size(qweight, qcfg, n_in, scales.shape[0])
        logical = replace(qweight, name=f"{module}.weight", dtype="AWQ_INT4", shape=(n_out, n_in))
        return QuantisedWeight(logical, "AWQ_INT4", {"q": qweight, "scale": scales, "zero": qzeros}, 4, group,
                               hidden=_present(infos, module, ("qzeros", "scales", "g_idx")))
    fmt = str(qcfg.get("checkpoint_format", qcfg.get("format", "gptq"))).lower()
    if fmt not in ("gptq", "gptq_v2"):
        raise _fail(qweight, f"GPTQ checkpoint format {fmt!r} is not supported (gptq or gptq_v2)")
    n_in, n_out = qweight.shape[0] * per_word, qweight.shape[1]
    if scales.shape[1] != n_out or qzeros.shape != (scales.shape[0], n_out // per_word) or n_out % per_word:
        raise _fail(scales, f"GPTQ scales {list(scales.shape)} / qzeros {list(qzeros.shape)} do not fit qweight "
                    f"{list(qweight.shape)} (expected [groups, {n_out}] / [groups, {n_out // per_word}])")
    g_idx = _aux(infos, module, "g_idx")
    group = n_in if g_idx is not None else _group_size(qweight, qcfg, n_in, scales.shape[0])
    if g_idx is not None and g_idx.numel != n_in:
        raise _fail(g_idx, f"group index has {g_idx.numel} entries; qweight has {n_in} inputs")
    label = f"GPTQ_INT{bits}"
    logical = replace(qweight, name=f"{module}.weight", dtype=label, shape=(n_out, n_in))
    return QuantisedWeight(logical, label, {"q": qweight, "scale": scales, "zero": qzeros,
                                            **({"g_idx": g_idx} if g_idx is not None else {})},
                           bits, group, zero_offset=1 if fmt == "gptq" else 0,
                           hidden=_present(infos, module, ("qzeros", "scales", "g_idx")))


def _group_size(part: TensorInfo, qcfg: dict[str, Any], n_in: int, groups: int) -> int:
    """Inputs per group: the config's `group_size` (-1 or absent: one group), checked against the scales."""
    size = _int(qcfg.get("group_size"), -1)
    if size <= 0:
        size = math.ceil(n_in / groups) if groups else n_in
    if groups != math.ceil(n_in / size):
        raise _fail(part, f"scales hold {groups} groups, but {n_in} inputs in groups of {size} make "
                    f"{math.ceil(n_in / size)}")
    return size


def _compressed_packed(module: str, packed: TensorInfo, infos: dict[str, TensorInfo],
                       qcfg: dict[str, Any], stored: StoredReader | None) -> QuantisedWeight:
    """compressed-tensors `pack-quantized`: `weight_packed` + `weight_scale` (+ `weight_shape`, zero point)."""
    scale = _aux(infos, module, "weight_scale")
    if scale is None:
        raise _fail(packed, f"packed weight has no {module}.weight_scale (cannot dequantise)")
    if packed.dtype != "I32" or len(packed.shape) != 2:
        raise _fail(packed, f"packed weight must be a 2-D I32 tensor, found {packed.dtype} {list(packed.shape)}")
    bits = _int(_weights_args(qcfg).get("num_bits"), 4)
    if bits not in (2, 4, 8):
        raise _fail(packed, f"{bits}-bit packing is not supported (2, 4 or 8 bits)")
    n_out = packed.shape[0]
    n_in = packed.shape[1] * (32 // bits)
    groups = scale.numel // n_out if n_out else 0
    if scale.numel != n_out * groups or groups < 1:
        raise _fail(scale, f"scale {list(scale.shape)} does not fit {n_out} packed rows")
    shape_info = _aux(infos, module, "weight_shape")
    if shape_info is not None and stored is not None and shape_info.numel == 2 and shape_info.dtype.startswith("I"):
        true_out, true_in = (int(v) for v in _whole_stored(stored, shape_info).reshape(-1))
        if true_out != n_out or not 0 < true_in <= n_in:
            raise _fail(shape_info, f"weight_shape [{true_out}, {true_in}] does not fit the packed weight "
                        f"{list(packed.shape)} ({n_out} rows of at most {n_in} values)")
        n_in = true_in  # the packed rows are padded to whole int32 words
    width = _int(_weights_args(qcfg).get("group_size"), 0) or math.ceil(n_in / groups)
    n_in = min(n_in, groups * width)
    logical = replace(packed, name=f"{module}.weight", dtype=f"INT{bits}_PACKED", shape=(n_out, n_in))
    zero = _aux(infos, module, "weight_zero_point")
    if zero is not None and (zero.dtype == "I32" or zero.numel != scale.numel):
        raise _fail(zero, f"zero point {zero.dtype} {list(zero.shape)} is packed or does not match the scale "
                    f"{list(scale.shape)} (packed asymmetric zero points are not supported)")
    return QuantisedWeight(logical, f"INT{bits}_PACKED", {"q": packed, "scale": scale,
                                                         **({"zero": zero} if zero is not None else {})},
                           bits, width, hidden=_present(infos, module, ("weight_scale", "weight_zero_point",
                                                                        "weight_shape", "input_scale")))


def _scaled(module: str, weight: TensorInfo, infos: dict[str, TensorInfo], qcfg: dict[str, Any]) -> QuantisedWeight:
    """fp8 or int8 `weight` with a per-tensor, per-channel, per-group or block scale."""
    if len(weight.shape) != 2:
        raise _fail(weight, f"scaled {weight.dtype} weight must be 2-D, found {list(weight.shape)}")
    n_out, n_in = weight.shape
    scale = _aux(infos, module, "weight_scale_inv") or _aux(infos, module, "weight_scale")
    assert scale is not None
    base = _FP8.get(weight.dtype, "INT8")
    numel = scale.numel
    args = _weights_args(qcfg)
    block_cfg = qcfg.get("weight_block_size") or args.get("block_structure")
    is_block = scale.name.endswith("_inv") or args.get("strategy") == "block" or bool(block_cfg)
    zero = _aux(infos, module, "weight_zero_point")
    block = (0, 0)
    if numel == 1:
        kind = "TENSOR"
    elif scale.shape in ((n_out,), (n_out, 1)) and not scale.name.endswith("_inv"):
        kind = "CHANNEL"
    elif is_block and len(scale.shape) == 2:
        b = block_cfg if isinstance(block_cfg, (list, tuple)) and len(block_cfg) == 2 else DEFAULT_FP8_BLOCK
        block = (_int(b[0], 128), _int(b[1], 128))
        expected = (math.ceil(n_out / block[0]), math.ceil(n_in / block[1]))
        if tuple(scale.shape) != expected:
            raise _fail(scale, f"block scale {list(scale.shape)} does not fit weight {[n_out, n_in]} in "
                        f"{list(block)} blocks (expected {list(expected)})")
        kind = "BLOCK"
    elif len(scale.shape) == 2 and scale.shape[0] == n_out and scale.shape[1] <= n_in:
        kind = "GROUP"
    else:
        raise _fail(scale, f"scale {list(scale.shape)} fits neither per-tensor, per-channel [{n_out}, 1], "
                    f"per-group [{n_out}, g] nor block scales of weight {[n_out, n_in]}")
    if zero is not None and zero.numel not in (1, numel):
        raise _fail(zero, f"zero point {list(zero.shape)} does not match scale {list(scale.shape)}")
    label = f"{base}_{kind}"
    logical = replace(weight, dtype=label)
    parts = {"q": weight, "scale": scale, **({"zero": zero} if zero is not None else {})}
    return QuantisedWeight(logical, label, parts, 8, block=block,
                           hidden=_present(infos, module, ("weight_scale", "weight_scale_inv", "weight_zero_point",
                                                           "input_scale")))


def stored_reader(fd_of: Callable[[Path], int]) -> StoredReader:
    """A `StoredReader` over local files with positioned reads (native dtype, no float conversion)."""
    def read(info: TensorInfo, first: int, count: int) -> np.ndarray:
        width = info.row_length
        row_bytes = width * DTYPE_SIZES[info.dtype]
        raw = pread_exact(fd_of(info.file), info, info.byte_range[0] + first * row_bytes, count * row_bytes)
        return np.frombuffer(raw, dtype=numpy_dtype(info.dtype)).reshape(count, width)

    return read

