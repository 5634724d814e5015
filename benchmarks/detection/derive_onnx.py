"""ONNX test models: real `torch.onnx.export`s of a checkpoint and the graph rewrites products ship.

`export_onnx` exports a BERT or Llama checkpoint folder with the legacy (TorchScript) or the dynamo exporter
into `<out>/model.onnx` (dynamo writes its weights to `model.onnx.data`), tokenizer files beside it.
The rewrites take such a folder and write another: onnxruntime's `quantize_dynamic` (MatMulInteger), QDQ int8
(DequantizeLinear per output column), hand-rolled int8 (INT8 → Cast → Mul), MatMul+Add as Gemm, weights
moved to an external data file, and every name stripped (anonymous initialisers, nodes without names).
Needs `onnx` (and `onnxruntime` for `quantize_dynamic`), the test extras.
"""

from __future__ import annotations

import shutil
import types
from os import PathLike
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import derive

_SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
               "merges.txt", "vocab.json", "tokenizer.model")


def export_onnx(src_dir: PathLike, out_dir: PathLike, *, exporter: str = "legacy", seq_len: int = 16) -> Path:
    """`torch.onnx.export` of the checkpoint in `src_dir` (last hidden state for BERT, logits for Llama)."""
    sd, config = derive.load_checkpoint(src_dir)
    model = derive.build_model(config, sd)
    full = type(model).forward

    def forward(self, input_ids, attention_mask):  # positional inputs; outputs a plain tensor
        out = full(self, input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits

    model.forward = types.MethodType(forward, model)  # exported as is: parameter names keep no wrapper prefix
    ids = torch.ones(1, seq_len, dtype=torch.long)
    mask = torch.ones(1, seq_len, dtype=torch.long)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if exporter == "legacy":
            torch.onnx.export(model, (ids, mask), str(out / "model.onnx"), dynamo=False, opset_version=17,
                              input_names=["input_ids", "attention_mask"], output_names=["output"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}})
        elif exporter == "dynamo":
            torch.onnx.export(model, (ids, mask), str(out / "model.onnx"), dynamo=True,
                              input_names=["input_ids", "attention_mask"], output_names=["output"])
        else:
            raise ValueError(f"unknown exporter {exporter!r} (legacy or dynamo)")
    _copy_side_files(Path(src_dir), out)
    return out


def _copy_side_files(src: Path, dst: Path) -> None:
    for name in _SIDE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def rewrite(src_dir: PathLike, out_dir: PathLike, transform: Callable[..., None], *,
            external: str | None = None) -> Path:
    """Load `<src_dir>/model.onnx` (with its data), apply `transform(model)` in place, save `<out_dir>/model.onnx`
    (weights in the external file `external` when given), and copy the side files."""
    import onnx

    src, out = Path(src_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(src / "model.onnx"))
    transform(model)
    if external:
        onnx.save_model(model, str(out / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=external, size_threshold=1024)
    else:
        onnx.save_model(model, str(out / "model.onnx"))
    _copy_side_files(src, out)
    return out


def quantize_dynamic(src_dir: PathLike, out_dir: PathLike, *, per_channel: bool = False) -> Path:
    """onnxruntime's `quantize_dynamic` (int8 weights, MatMulInteger; embedding tables via Gather → DQ)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ort_quantize_dynamic(str(Path(src_dir) / "model.onnx"), str(out / "model.onnx"), weight_type=QuantType.QInt8,
                         per_channel=per_channel)
    _copy_side_files(Path(src_dir), out)
    return out


def _matmul_weights(model) -> dict[str, int]:
    """Output name of every MatMul whose B is a 2-D float initialiser → its number in graph order."""
    inits = {i.name: i for i in model.graph.initializer}
    found = [node.output[0] for node in model.graph.node
             if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2
             and inits[node.input[1]].data_type == 1]
    return {out: k for k, out in enumerate(found)}


def _swap_initializers(model, swaps: dict[str, list]) -> None:
    """Replace each initialiser named in `swaps` by the tensors listed for it (one pass over the table)."""
    keep = [i for i in model.graph.initializer if i.name not in swaps]
    del model.graph.initializer[:]
    model.graph.initializer.extend([*keep, *(t for new in swaps.values() for t in new)])


def _rebuild(model, replace: Callable[[object], list]) -> None:
    """Replace each node by the nodes `replace(node)` returns (itself, new ones before it, or none)."""
    from onnx import NodeProto

    nodes = []
    for node in model.graph.node:
        for new in replace(node):
            copy = NodeProto()
            copy.CopyFrom(new)
            nodes.append(copy)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _int8_per_column(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of `w` with one scale per slice along `axis` (kept as a size-1 dim): (q, scale)."""
    scale = np.maximum(np.abs(w).max(axis=axis, keepdims=True), 1e-12) / 127.0
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


def _quantise_matmuls(model, quantise: Callable[[object, str, np.ndarray, int], tuple[list, list]]) -> None:
    """Replace each MatMul weight W by what `quantise(node, name, W, k)` returns: (initialisers, nodes to insert
    before the MatMul, the last of which outputs `<name>_dq`, the float weight the MatMul then reads)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    targets = _matmul_weights(model)
    swaps: dict[str, list] = {}

    def replace(node) -> list:
        if node.op_type != "MatMul" or node.output[0] not in targets:
            return [node]
        name = node.input[1]
        swaps[name], before = quantise(node, name, numpy_helper.to_array(inits[name]), targets[node.output[0]])
        node.input[1] = f"{name}_dq"
        return [*before, node]

    _rebuild(model, replace)
    _swap_initializers(model, swaps)


def cast_mul_int8(model) -> None:
    """Every MatMul weight W [in, out] as INT8 → Cast(float) → Mul(scale): one scale per output column
    (scale [1, out]) on even-numbered weights, per input row ([in, 1]) on odd ones."""
    from onnx import TensorProto, helper, numpy_helper

    def quantise(node, name: str, w: np.ndarray, k: int) -> tuple[list, list]:
        q, scale = _int8_per_column(w, axis=0 if k % 2 == 0 else 1)
        q_name, s_name = f"{name}_int8", f"{name}_scale"
        cast = helper.make_node("Cast", [q_name], [f"{name}_cast"], to=TensorProto.FLOAT, name=f"{node.name}_cast")
        mul = helper.make_node("Mul", [f"{name}_cast", s_name], [f"{name}_dq"], name=f"{node.name}_scale")
        return [numpy_helper.from_array(q, q_name), numpy_helper.from_array(scale, s_name)], [cast, mul]

    _quantise_matmuls(model, quantise)


def qdq_int8(model) -> None:
    """Every MatMul weight W [in, out] as QDQ: INT8 initialiser → DequantizeLinear(scale [out], zero 0, axis=1)."""
    from onnx import helper, numpy_helper

    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in model.opset_import):
        raise ValueError("per-axis DequantizeLinear needs opset 13 or later")

    def quantise(node, name: str, w: np.ndarray, k: int) -> tuple[list, list]:
        q, scale = _int8_per_column(w, axis=0)
        names = (f"{name}_quantized", f"{name}_scale", f"{name}_zero_point")
        dq = helper.make_node("DequantizeLinear", list(names), [f"{name}_dq"], axis=1, name=f"{node.name}_dq")
        return [numpy_helper.from_array(q, names[0]), numpy_helper.from_array(scale.reshape(-1), names[1]),
                numpy_helper.from_array(np.zeros(scale.size, np.int8), names[2])], [dq]

    _quantise_matmuls(model, quantise)


def gemm(model) -> None:
    """Every MatMul(x, W) + Add(b) as Flatten → Gemm → Reshape back; even-numbered weights stored [out, in] with
    transB=1 (what exporters write for nn.Linear), odd ones [in, out] with transB=0."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    targets = _matmul_weights(model)
    fused: dict[str, tuple[int, str, str]] = {}  # MatMul output → (number, bias, Add output)
    for out, k in targets.items():
        adds = consumers.get(out, [])
        bias = next((i for i in adds[0].input if i in inits), None) if len(adds) == 1 and adds[0].op_type == "Add" else None
        if bias is not None:
            fused[out] = (k, bias, adds[0].output[0])
    dropped = {add_out for _, _, add_out in fused.values()}
    swaps: dict[str, list] = {}

    def replace(node) -> list:
        if node.op_type == "Add" and node.output[0] in dropped:
            return []
        if node.op_type != "MatMul" or node.output[0] not in fused:
            return [node]
        k, bias, y = fused[node.output[0]]
        name, x, base = node.input[1], node.input[0], node.name or f"gemm_{k}"
        w = numpy_helper.to_array(inits[name])
        trans = k % 2 == 0
        swaps[name] = [numpy_helper.from_array(np.ascontiguousarray(w.T) if trans else w, name),
                       numpy_helper.from_array(np.array([0], np.int64), f"{base}_starts"),
                       numpy_helper.from_array(np.array([-1], np.int64), f"{base}_ends"),
                       numpy_helper.from_array(np.array([w.shape[1]], np.int64), f"{base}_out_dim")]
        return [
            helper.make_node("Flatten", [x], [f"{base}_2d"], axis=-1, name=f"{base}_flatten"),
            helper.make_node("Gemm", [f"{base}_2d", name, bias], [f"{base}_gemm"], transB=int(trans),
                             name=f"{base}_Gemm"),
            helper.make_node("Shape", [x], [f"{base}_shape"], name=f"{base}_shape"),
            helper.make_node("Slice", [f"{base}_shape", f"{base}_starts", f"{base}_ends"], [f"{base}_lead"],
                             name=f"{base}_slice"),
            helper.make_node("Concat", [f"{base}_lead", f"{base}_out_dim"], [f"{base}_target"], axis=0,
                             name=f"{base}_concat"),
            helper.make_node("Reshape", [f"{base}_gemm", f"{base}_target"], [y], name=f"{base}_reshape"),
        ]

    _rebuild(model, replace)
    _swap_initializers(model, swaps)


def preslice_positions(model, rows: int = 64) -> None:
    """What a static-shape export constant-folds: the position table's Gather replaced by its first `rows` rows
    as a [1, rows, H] initialiser (the graph then runs for sequences of exactly `rows` tokens)."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    gathers = [n for n in model.graph.node if n.op_type == "Gather" and "position" in n.input[0] and n.input[0] in inits]
    if len(gathers) != 1:
        raise ValueError("expected one Gather of a position table")
    gather = gathers[0]
    table = numpy_helper.to_array(inits[gather.input[0]])
    sliced = f"{gather.output[0]}_folded"

    def replace(node) -> list:
        if node is not gather and node != gather:
            return [node]
        return [helper.make_node("Identity", [sliced], [gather.output[0]], name=node.name)]

    _rebuild(model, replace)
    _swap_initializers(model, {gather.input[0]: [numpy_helper.from_array(table[None, :rows].copy(), sliced)]})


def anonymise(model) -> None:
    """Strip every name a reviewer could read: initialisers become `onnx::Init_<n>`, node names and metadata go."""
    renames = {i.name: f"onnx::Init_{k}" for k, i in enumerate(model.graph.initializer)}
    for i in model.graph.initializer:
        i.name = renames[i.name]
    for node in model.graph.node:
        node.name = ""
        del node.metadata_props[:]
        for j, name in enumerate(node.input):
            if name in renames:
                node.input[j] = renames[name]
    del model.graph.value_info[:]
    for inp in model.graph.input:
        if inp.name in renames:
            inp.name = renames[inp.name]
