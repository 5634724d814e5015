"""Quantised ONNX weights, found from the graph and dequantised to float on read.

Patterns (ONNX operator definitions; onnxruntime's contrib operators where named):

- QDQ: ``DequantizeLinear(x, x_scale, x_zero_point)`` on an integer (or fp8) initialiser: y = (x − zp) · scale,
  per tensor, per axis (``axis``, default 1) or per block (``block_size``, opset 21).
- Dynamic quantisation (onnxruntime ``quantize_dynamic``): ``MatMulInteger(A, B, a_zp, b_zp)`` whose output is
  ``Cast`` to float and multiplied by ``a_scale · b_scale``; ``b_scale`` is the initialiser in that product.
  ``MatMulIntegerToFloat``, ``DynamicQuantizeMatMul`` and ``QLinearMatMul`` name their weight scale as an input.
- Hand-rolled: an integer initialiser → ``Cast`` to float → optional ``Sub`` of a zero point → ``Mul`` by a
  float scale, with numpy broadcasting (per tensor, per row or per output column).

Each found weight keeps its stored layout (MatMul weights [in, out]); scale and zero point are read once
(they are small) and broadcast onto the selected rows only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from modelprov.errors import CheckpointError
from ._onnx_model import Node, OnnxModel, StoredTensor
from ._rounding import Rounded, affine_rounding, float_rounding

_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (Cast targets that dequantise)
_QUANT_DTYPES = {"I8", "U8", "I16", "U16", "I32", "F8_E4M3", "F8_E5M2"}
_MAX_PARAM_ENTRIES = 16 * 1024 * 1024  # a scale or zero point larger than this is not a quantisation parameter
# op → (weight input, scale input, zero-point input); scale None: found from the output chain (MatMulInteger)
_INTEGER_MATMULS: dict[str, tuple[int, int | None, int | None]] = {
    "MatMulInteger": (1, None, 3), "MatMulIntegerToFloat": (1, 3, 5), "DynamicQuantizeMatMul": (1, 2, 3),
    "QLinearMatMul": (3, 4, 5),
}
_METHODS = {"qdq": "onnx-qdq", "integer": "onnx-dynamic", "cast": "onnx-cast-mul"}

ReadSmall = Callable[[StoredTensor], np.ndarray]
"""Reads a small stored tensor whole, as float32 in its dims."""


@dataclass(frozen=True)
class OnnxQuantised:
    """One dequantisable initialiser: y = (q − zero) · scale, parameters broadcast over the stored dims."""

    q: StoredTensor
    scheme: str  # e.g. "INT8_CHANNEL"
    method: str  # "onnx-qdq" | "onnx-dynamic" | "onnx-cast-mul"
    scale: np.ndarray  # same rank as q; each dim 1, q's dim, or q's dim / block
    zero: np.ndarray | None
    blocks: tuple[int, ...]
    use: tuple[Node, int]  # the node that consumes the dequantised weight, and at which input
    hidden: tuple[str, ...]  # scale and zero-point tensors this weight hides
    value: str = ""  # the graph value holding the float weight (exporters often give it the module path)

    def dequantise(self, rows: np.ndarray, q_rows: np.ndarray) -> np.ndarray:
        """`q_rows` (stored rows `rows` of the 2-D view, as float32) dequantised in place."""
        if self.zero is not None:
            q_rows -= _expand(self.zero, self.blocks, self.q.dims, rows)
        q_rows *= _expand(self.scale, self.blocks, self.q.dims, rows)
        return q_rows

    def rounded(self, rows: np.ndarray, q_rows: np.ndarray) -> Rounded:
        """The dequantised rows with each entry's rounding: half its scale step (open past the end codes); for
        an fp8 code, half its ULP times the scale."""
        scale = _expand(self.scale, self.blocks, self.q.dims, rows)
        values = self.dequantise(rows, q_rows.copy())
        if self.q.dtype in ("F8_E4M3", "F8_E5M2"):
            half = float_rounding(q_rows, self.q.dtype).below * np.abs(scale)
            return Rounded(values, half, half.copy())
        bits = {"I8": 8, "U8": 8, "I16": 16, "U16": 16, "I32": 32}[self.q.dtype or ""]
        signed = (self.q.dtype or "").startswith("I")
        bottom, top = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        return affine_rounding(values, scale, q_rows, top, bottom)


def find_onnx_quantised(model: OnnxModel, read_small: ReadSmall) -> dict[str, OnnxQuantised]:
    """Every quantised initialiser of the graph, by the stored tensor's name."""
    found: dict[str, OnnxQuantised] = {}
    for node in model.nodes:
        if node.op_type == "DequantizeLinear":
            q = _qdq(node, model, read_small)
        elif node.op_type in _INTEGER_MATMULS:
            q = _integer_matmul(node, model, read_small)
        elif node.op_type == "Cast" and node.inputs and node.inputs[0] in model.tensors:
            q = _cast_mul(node, model, read_small)
        else:
            q = None
        if q is not None and q.q.name not in found:
            found[q.q.name] = q
    return found


def summary(found: dict[str, OnnxQuantised]) -> dict[str, Any] | None:
    """`checkpoint.metadata["quantisation"]` in the form the safetensors readers give it."""
    if not found:
        return None
    schemes: dict[str, int] = {}
    for q in found.values():
        schemes[q.scheme] = schemes.get(q.scheme, 0) + q.q.numel
    methods = sorted({q.method for q in found.values()})
    return {"method": "+".join(methods), "schemes": {k: schemes[k] for k in sorted(schemes)},
            "weights": len(found), "hidden_tensors": len({h for q in found.values() for h in q.hidden})}


# ------------------------------------------------------------------------------------------------ patterns


def _quantised_input(model: OnnxModel, name: str) -> StoredTensor | None:
    t = model.tensors.get(name)
    return t if t is not None and t.dtype in _QUANT_DTYPES and len(t.dims) >= 1 else None


def _param(model: OnnxModel, name: str, read_small: ReadSmall, owner: StoredTensor) -> np.ndarray | None:
    t = model.tensors.get(name) if name else None
    if t is None:
        return None
    if t.numel > min(_MAX_PARAM_ENTRIES, max(owner.numel, 1)):
        raise CheckpointError(owner.file, f"tensor {owner.name!r}: quantisation parameter {t.name!r} has "
                              f"{t.numel} entries, more than the weight")
    return read_small(t)


def _qdq(node: Node, model: OnnxModel, read_small: ReadSmall) -> OnnxQuantised | None:
    if len(node.inputs) < 2 or not node.outputs:
        return None
    q = _quantised_input(model, node.inputs[0])
    use: tuple[Node, int] | None = _first_use(model.consumers, node.outputs[0])
    gathered = False
    if q is None:  # onnxruntime quantises embedding tables as Gather(q, ids) → DequantizeLinear (per tensor)
        gather = model.producers.get(node.inputs[0])
        if gather is None or gather.op_type != "Gather" or not gather.inputs or gather.attrs.get("axis", 0) != 0:
            return None
        q = _quantised_input(model, gather.inputs[0])
        use, gathered = (gather, 0), True
    if q is None:
        return None
    scale = _param(model, node.inputs[1], read_small, q)
    if scale is None or (gathered and scale.size != 1):
        return None
    zp_name = node.inputs[2] if len(node.inputs) > 2 else ""
    zero = _param(model, zp_name, read_small, q)
    if gathered and zero is not None and zero.size != 1:
        return None
    axis = node.attrs.get("axis", 1)
    block = node.attrs.get("block_size", 0)
    if not isinstance(axis, int) or not isinstance(block, int):
        raise CheckpointError(q.file, f"tensor {q.name!r}: DequantizeLinear axis/block_size are not integers")
    scale_g, blocks = _axis_grid(q, scale, axis, block, "scale")
    zero_g = _axis_grid(q, zero, axis, block, "zero point")[0] if zero is not None else None
    return OnnxQuantised(q, _scheme(q, scale_g, blocks), _METHODS["qdq"], scale_g, zero_g, blocks, use or (node, 0),
                         _hidden(node.inputs[1], zp_name), "" if gathered else node.outputs[0])


def _integer_matmul(node: Node, model: OnnxModel, read_small: ReadSmall) -> OnnxQuantised | None:
    w_idx, s_idx, z_idx = _INTEGER_MATMULS[node.op_type]
    q = _quantised_input(model, node.inputs[w_idx]) if len(node.inputs) > w_idx else None
    if q is None:
        return None
    zp_name = node.inputs[z_idx] if z_idx is not None and len(node.inputs) > z_idx else ""
    if s_idx is None:
        scale_name = _scale_after(node, model)
    else:
        scale_name = node.inputs[s_idx] if len(node.inputs) > s_idx else ""
    scale = _param(model, scale_name, read_small, q) if scale_name else None
    if scale is None:
        return None
    return _broadcast_weight(model, q, scale, zp_name, read_small, "integer", (node, w_idx), scale_name, "")


def _scale_after(node: Node, model: OnnxModel) -> str:
    """MatMulInteger → Cast → Mul(·, s): the weight's scale is s, or the initialiser inside s = a_scale · b_scale."""
    cast = _only_use(model.consumers, node.outputs[0] if node.outputs else "")
    if cast is None or cast.op_type != "Cast":
        return ""
    mul = _only_use(model.consumers, cast.outputs[0] if cast.outputs else "")
    if mul is None or mul.op_type != "Mul":
        return ""
    for other in mul.inputs:
        if other in model.tensors and model.tensors[other].dtype in ("F32", "F16", "F64", "BF16"):
            return other
        producer = model.producers.get(other)
        if producer is not None and producer.op_type == "Mul":
            named = [i for i in producer.inputs if i in model.tensors]
            if len(named) == 1:
                return named[0]
    return ""


def _cast_mul(node: Node, model: OnnxModel, read_small: ReadSmall) -> OnnxQuantised | None:
    q = _quantised_input(model, node.inputs[0])
    if q is None or node.attrs.get("to") not in _FLOAT_TYPES or not node.outputs:
        return None
    nxt = _only_use(model.consumers, node.outputs[0])
    zp_name = ""
    if nxt is not None and nxt.op_type == "Sub" and len(nxt.inputs) == 2 and nxt.inputs[0] == node.outputs[0]:
        zp_name = nxt.inputs[1] if nxt.inputs[1] in model.tensors else ""
        if not zp_name:
            return None
        nxt = _only_use(model.consumers, nxt.outputs[0] if nxt.outputs else "")
    if nxt is None or nxt.op_type != "Mul" or len(nxt.inputs) != 2:
        return None
    scale_name = next((i for i in nxt.inputs if i in model.tensors), "")
    scale = _param(model, scale_name, read_small, q)
    if scale is None:
        return None
    use = _first_use(model.consumers, nxt.outputs[0]) if nxt.outputs else None
    return _broadcast_weight(model, q, scale, zp_name, read_small, "cast", use or (nxt, 0), scale_name,
                             nxt.outputs[0] if nxt.outputs else "")


def _broadcast_weight(model: OnnxModel, q: StoredTensor, scale: np.ndarray, zp_name: str, read_small: ReadSmall,
                      kind: str, use: tuple[Node, int], scale_name: str, value: str) -> OnnxQuantised:
    """A weight whose scale and zero point broadcast onto it the numpy way (Mul/Sub operands, MatMulInteger)."""
    zero = _param(model, zp_name, read_small, q)
    scale_g = _broadcast_grid(q, scale, "scale")
    zero_g = _broadcast_grid(q, zero, "zero point") if zero is not None else None
    blocks = (1,) * len(q.dims)
    return OnnxQuantised(q, _scheme(q, scale_g, blocks), _METHODS[kind], scale_g, zero_g, blocks, use,
                         _hidden(scale_name, zp_name), value)


# ------------------------------------------------------------------------------------------------- helpers


def _hidden(*names: str) -> tuple[str, ...]:
    return tuple(n for n in names if n)


def _first_use(consumers: dict[str, list[tuple[Node, int]]], value: str) -> tuple[Node, int] | None:
    uses = consumers.get(value)
    return uses[0] if uses else None


def _only_use(consumers: dict[str, list[tuple[Node, int]]], value: str) -> Node | None:
    uses = consumers.get(value, [])
    return uses[0][0] if len(uses) == 1 else None


def _fail(q: StoredTensor, what: str, shape: tuple[int, ...], detail: str) -> CheckpointError:
    return CheckpointError(q.file, f"tensor {q.name!r}: {what} of shape {list(shape)} does not fit the weight "
                           f"{list(q.dims)} ({detail})")


def _axis_grid(q: StoredTensor, p: np.ndarray, axis: int, block: int, what: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """DequantizeLinear parameters as a grid over q's dims: per tensor, per axis, or per block along the axis."""
    rank = len(q.dims)
    blocks = [1] * rank
    if p.size == 1:
        return p.reshape((1,) * rank), tuple(blocks)
    if not -rank <= axis < rank:
        raise _fail(q, what, p.shape, f"axis {axis} is outside its {rank} dimensions")
    axis %= rank
    if block > 0:
        expected = tuple(math.ceil(d / block) if k == axis else d for k, d in enumerate(q.dims))
        if p.shape != expected:
            raise _fail(q, what, p.shape, f"blocks of {block} along axis {axis} need {list(expected)}")
        blocks[axis] = block
        return p, tuple(blocks)
    if p.ndim != 1 or p.size != q.dims[axis]:
        raise _fail(q, what, p.shape, f"per-axis parameters need {q.dims[axis]} entries along axis {axis}")
    return p.reshape(tuple(q.dims[axis] if k == axis else 1 for k in range(rank))), tuple(blocks)


def _broadcast_grid(q: StoredTensor, p: np.ndarray, what: str) -> np.ndarray:
    """A Mul/Sub operand broadcast onto q's dims the numpy (ONNX multidirectional) way; each dim 1 or q's."""
    rank = len(q.dims)
    if p.ndim > rank:
        raise _fail(q, what, p.shape, "more dimensions than the weight")
    grid = p.reshape((1,) * (rank - p.ndim) + p.shape)
    if any(g not in (1, d) for g, d in zip(grid.shape, q.dims)):
        raise _fail(q, what, p.shape, "not broadcastable onto it")
    return grid


def _scheme(q: StoredTensor, scale: np.ndarray, blocks: tuple[int, ...]) -> str:
    base = {"I8": "INT8", "U8": "UINT8", "I16": "INT16", "U16": "UINT16", "I32": "INT32", "F8_E4M3": "FP8_E4M3",
            "F8_E5M2": "FP8_E5M2"}[q.dtype or ""]
    if scale.size == 1:
        return f"{base}_TENSOR"
    if any(b > 1 for b in blocks):
        return f"{base}_BLOCK"
    return f"{base}_CHANNEL" if sum(d > 1 for d in scale.shape) == 1 else f"{base}_GROUP"


def _expand(grid: np.ndarray, blocks: tuple[int, ...], dims: tuple[int, ...], rows: np.ndarray) -> np.ndarray:
    """The parameter grid expanded over stored rows `rows` of q's 2-D view: (len(rows), row_length) float32."""
    if not dims:
        return grid.reshape(1, 1)
    a = grid if grid.shape[0] == 1 else grid[rows // blocks[0]]
    for k in range(1, len(dims)):
        if blocks[k] > 1:
            a = np.repeat(a, blocks[k], axis=k)[(slice(None),) * k + (slice(0, dims[k]),)]
    return np.broadcast_to(a, (len(rows), *dims[1:])).reshape(len(rows), -1)
