"""The parts of an ONNX ModelProto the reader needs, parsed from the wire format without loading tensor data.

`parse_onnx` walks ModelProto → graph → nodes and initialisers (and Constant nodes' tensors) and returns each
tensor's type, dims and where its bytes are: a byte range of the `.onnx` file (`raw_data`, packed
`float_data`/`double_data`), a range of an external data file (checked to lie inside the model's folder and
inside that file), or, for the varint-encoded typed fields exporters use only for small tensors, the decoded
values. Sub-graphs (If/Loop bodies), model-local functions and sparse initialisers are not read.
"""

from __future__ import annotations

import ast
import functools
import math
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelprov.errors import CheckpointError
from ._protobuf import FIXED32, FIXED64, LENGTH, VARINT, Field, WireReader, signed64

# ONNX TensorProto.DataType → the reader's dtype names (those `to_float32` decodes).
ONNX_DTYPES: dict[int, str] = {
    1: "F32", 2: "U8", 3: "I8", 4: "U16", 5: "I16", 6: "I32", 7: "I64", 9: "BOOL", 10: "F16", 11: "F64",
    12: "U32", 13: "U64", 16: "BF16", 17: "F8_E4M3", 19: "F8_E5M2",
}
# Valid ONNX types the reader does not decode: such tensors are listed in metadata, not read.
ONNX_UNREAD_DTYPES: dict[int, str] = {
    8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128", 18: "FLOAT8E4M3FNUZ", 20: "FLOAT8E5M2FNUZ", 21: "UINT4",
    22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2", 27: "FLOAT6E2M3", 28: "FLOAT6E3M2",
}
_ITEM_SIZES = {"F32": 4, "U8": 1, "I8": 1, "U16": 2, "I16": 2, "I32": 4, "I64": 8, "BOOL": 1, "F16": 2, "F64": 8,
               "U32": 4, "U64": 8, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}
_NUMPY = {"F32": "<f4", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "I32": "<i4", "I64": "<i8", "BOOL": "u1",
          "F16": "<u2", "F64": "<f8", "U32": "<u4", "U64": "<u8", "BF16": "<u2", "F8_E4M3": "u1", "F8_E5M2": "u1"}
_MAX_INLINE_BYTES = 4 * 1024 * 1024  # varint-encoded tensor fields decoded in memory at most (exporters use raw_data)
_MAX_UNPACKED_BYTES = 1024 * 1024  # typed values written one per field (proto3 packs them): decoded one by one
_MAX_ATTR_INTS_BYTES = 64 * 1024  # a longer list-of-ints attribute is not read (attributes only inform naming)
_MAX_RANK = 64
_MAX_GRAPH_ITEMS = 5_000_000  # node inputs, outputs and attributes and tensors: a graph 50x a 70B model's
_MAX_METADATA_TEXT = 4096  # a name-scope list longer than this is ignored (it only helps naming)

# Fields: ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, StringStringEntryProto.
_MODEL_IR, _MODEL_PRODUCER, _MODEL_PRODUCER_VERSION, _MODEL_GRAPH, _MODEL_OPSET = 1, 2, 3, 7, 8
_GRAPH_NODE, _GRAPH_INIT = 1, 5
_NODE_IN, _NODE_OUT, _NODE_NAME, _NODE_OP, _NODE_ATTR, _NODE_DOMAIN, _NODE_META = 1, 2, 3, 4, 5, 7, 9
_ATTR_NAME, _ATTR_F, _ATTR_I, _ATTR_S, _ATTR_T, _ATTR_INTS = 1, 2, 3, 4, 5, 8
_T_DIMS, _T_TYPE, _T_FLOAT, _T_INT32, _T_INT64, _T_NAME, _T_RAW, _T_DOUBLE, _T_UINT64, _T_EXTERNAL, _T_LOCATION = (
    1, 2, 4, 5, 7, 8, 9, 10, 11, 13, 14)


@dataclass
class StoredTensor:
    """A tensor as the file stores it: ONNX type, dims, and either a byte range of `file` or decoded values."""

    name: str
    onnx_type: int
    dims: tuple[int, ...]
    file: Path
    byte_range: tuple[int, int]
    values: np.ndarray | None = None  # decoded typed-field values (then byte_range is the field's bytes)

    @property
    def dtype(self) -> str | None:
        return ONNX_DTYPES.get(self.onnx_type)

    @property
    def numel(self) -> int:
        return math.prod(self.dims)


@dataclass
class Node:
    """One graph node: operator, inputs and outputs by value name, attributes, and the module path if known."""

    op_type: str
    name: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None  # e.g. "m.encoder.layer.0.attention.self.query" from exporter metadata


@dataclass
class OnnxModel:
    """The graph (nodes in stored, topological order) and its tensors, with who consumes and produces each value."""

    nodes: list[Node]
    tensors: dict[str, StoredTensor]  # initialisers and Constant node values, by value name
    metadata: dict[str, Any]
    unread: dict[str, str]  # tensor name -> ONNX type the reader does not decode

    @functools.cached_property
    def consumers(self) -> dict[str, list[tuple[Node, int]]]:
        """Value name → every (node, input index) that reads it, in node order."""
        out: dict[str, list[tuple[Node, int]]] = {}
        for node in self.nodes:
            for k, name in enumerate(node.inputs):
                if name:
                    out.setdefault(name, []).append((node, k))
        return out

    @functools.cached_property
    def producers(self) -> dict[str, Node]:
        """Value name → the node that writes it."""
        return {name: node for node in self.nodes for name in node.outputs if name}


def parse_onnx(path: Path) -> OnnxModel:
    """Parse an `.onnx` file's graph and tensor table; bytes are only located, never read here."""
    try:
        size = path.stat().st_size
        if size == 0:
            raise CheckpointError(path, "file is empty (not an ONNX model)")
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _Parser(WireReader(buf, path), path, size).model()
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from None


class _Parser:
    def __init__(self, wire: WireReader, path: Path, size: int) -> None:
        self.wire, self.path, self.size = wire, path, size
        self.folder = path.parent
        self.external_sizes: dict[Path, int] = {}
        self.items = 0  # graph entries parsed so far (memory grows with them, not with tensor data)

    def count(self, at: int) -> None:
        """One more graph entry; a graph with more than `_MAX_GRAPH_ITEMS` is refused before memory runs out."""
        self.items += 1
        if self.items > _MAX_GRAPH_ITEMS:
            raise CheckpointError(self.path, f"graph holds more than {_MAX_GRAPH_ITEMS:,} node inputs, outputs, "
                                  f"attributes and tensors (at byte {at}); refused")

    def model(self) -> OnnxModel:
        w = self.wire
        meta: dict[str, Any] = {"opsets": {}}
        graph: Field | None = None
        for f in w.fields(0, self.size):
            if f.number == _MODEL_IR and f.wire == VARINT:
                meta["ir_version"] = signed64(f.value)
            elif f.number in (_MODEL_PRODUCER, _MODEL_PRODUCER_VERSION) and f.wire == LENGTH:
                meta["producer" if f.number == _MODEL_PRODUCER else "producer_version"] = w.text(f)[:200]
            elif f.number == _MODEL_OPSET and f.wire == LENGTH:
                domain, version = "", 0
                for g in w.fields(f.start, f.end):
                    if g.number == 1 and g.wire == LENGTH:
                        domain = w.text(g)[:200]
                    elif g.number == 2 and g.wire == VARINT:
                        version = signed64(g.value)
                meta["opsets"][domain or "ai.onnx"] = version
            elif f.number == _MODEL_GRAPH:
                w.expect(f, LENGTH)
                graph = f
        if graph is None or "ir_version" not in meta:
            raise CheckpointError(self.path, "not an ONNX model (no graph or IR version in the protobuf)")
        nodes: list[Node] = []
        tensors: dict[str, StoredTensor] = {}
        unread: dict[str, str] = {}
        for f in w.fields(graph.start, graph.end):
            if f.number == _GRAPH_NODE and f.wire == LENGTH:
                node, constant = self.node(f)
                nodes.append(node)
                if constant is not None:
                    self.add(tensors, unread, constant)
            elif f.number == _GRAPH_INIT and f.wire == LENGTH:
                self.add(tensors, unread, self.tensor(f))
        return OnnxModel(nodes, tensors, meta, unread)

    def add(self, tensors: dict[str, StoredTensor], unread: dict[str, str], t: StoredTensor) -> None:
        if t.name in tensors or t.name in unread:
            raise CheckpointError(self.path, f"tensor {t.name!r} is defined twice")
        if t.dtype is None:
            unread[t.name] = ONNX_UNREAD_DTYPES[t.onnx_type]
        else:
            tensors[t.name] = t

    def node(self, f: Field) -> tuple[Node, StoredTensor | None]:
        w = self.wire
        inputs: list[str] = []
        outputs: list[str] = []
        name = op = domain = ""
        attrs: dict[str, Any] = {}
        scope = None
        value: StoredTensor | None = None
        for g in w.fields(f.start, f.end):
            self.count(g.start)
            if g.number == _NODE_IN:
                inputs.append(w.text(g))
            elif g.number == _NODE_OUT:
                outputs.append(w.text(g))
            elif g.number == _NODE_NAME:
                name = w.text(g)
            elif g.number == _NODE_OP:
                op = w.text(g)
            elif g.number == _NODE_DOMAIN:
                domain = w.text(g)
            elif g.number == _NODE_ATTR and g.wire == LENGTH:
                key, attr = self.attribute(g)
                if isinstance(attr, StoredTensor):
                    value = attr if key == "value" else None
                elif key:
                    attrs[key] = attr
            elif g.number == _NODE_META and g.wire == LENGTH:
                key, text = self.entry(g)
                if key == "pkg.torch.onnx.name_scopes":
                    scope = _scope(text)
        if op == "Constant" and value is not None and len(outputs) == 1 and domain in ("", "ai.onnx"):
            value.name = outputs[0]
        else:
            value = None
        return Node(op, name, domain, tuple(inputs), tuple(outputs), attrs, scope), value

    def attribute(self, f: Field) -> tuple[str, Any]:
        """An attribute's name and value (int, float, bytes, list of ints, or a tensor for Constant)."""
        w = self.wire
        key = ""
        value: Any = None
        ints: list[int] = []
        for g in w.fields(f.start, f.end):
            if g.number == _ATTR_NAME and g.wire == LENGTH:
                key = w.text(g)
            elif g.number == _ATTR_I and g.wire == VARINT:
                value = signed64(g.value)
            elif g.number == _ATTR_F and g.wire == FIXED32:
                value = float(np.frombuffer(g.value.to_bytes(4, "little"), "<f4")[0])
            elif g.number == _ATTR_S and g.wire == LENGTH and g.end - g.start <= 256:
                value = bytes(w.buf[g.start:g.end])
            elif g.number == _ATTR_T and g.wire == LENGTH:
                value = self.tensor(g)
            elif g.number == _ATTR_INTS and g.end - g.start <= _MAX_ATTR_INTS_BYTES:
                ints += w.ints(g)
        return key, ints if ints and value is None else value

    def entry(self, f: Field) -> tuple[str, str]:
        key = value = ""
        for g in self.wire.fields(f.start, f.end):
            if g.number == 1 and g.wire == LENGTH:
                key = self.wire.text(g)
            elif g.number == 2 and g.wire == LENGTH and g.end - g.start <= _MAX_METADATA_TEXT:
                value = self.wire.text(g)
        return key, value

    def tensor(self, f: Field) -> StoredTensor:
        """A TensorProto: type, dims, and where its data is (checked against the dims)."""
        w = self.wire
        self.count(f.start)
        dims: list[int] = []
        onnx_type = 0
        name = ""
        data: list[Field] = []
        external: dict[str, str] = {}
        location = 0
        for g in w.fields(f.start, f.end):
            if g.number == _T_DIMS:
                if g.end - g.start > 10 * _MAX_RANK or len(dims) >= _MAX_RANK:  # checked before decoding
                    raise CheckpointError(self.path, f"tensor dims are not a shape (more than {_MAX_RANK} "
                                          "dimensions)")
                dims += w.ints(g)
            elif g.number == _T_TYPE and g.wire == VARINT:
                onnx_type = signed64(g.value)
            elif g.number == _T_NAME and g.wire == LENGTH:
                name = w.text(g)
            elif g.number in (_T_RAW, _T_FLOAT, _T_INT32, _T_INT64, _T_DOUBLE, _T_UINT64):
                data.append(g)
            elif g.number == _T_EXTERNAL and g.wire == LENGTH:
                key, value = self.entry(g)
                external[key] = value
            elif g.number == _T_LOCATION and g.wire == VARINT:
                location = signed64(g.value)
        label = repr(name) if name else "(unnamed)"
        if onnx_type not in ONNX_DTYPES and onnx_type not in ONNX_UNREAD_DTYPES:
            raise CheckpointError(self.path, f"tensor {label}: unknown data type {onnx_type}")
        if len(dims) > _MAX_RANK or any(d < 0 for d in dims):
            raise CheckpointError(self.path, f"tensor {label}: dims {dims[:8]} are not a shape (negative or "
                                  f"more than {_MAX_RANK} dimensions)")
        t = StoredTensor(name, onnx_type, tuple(dims), self.path, (0, 0))
        if t.dtype is None:
            return t  # listed as unread; its bytes are never touched
        nbytes = t.numel * _ITEM_SIZES[t.dtype]  # exact integers: absurd dims cannot overflow into a match
        if location == 1 or external:
            if data:
                raise CheckpointError(self.path, f"tensor {label}: both external and embedded data")
            return self.external(t, external, nbytes)
        if not data:
            if nbytes:
                raise CheckpointError(self.path, f"tensor {label}: dims {list(dims)} hold {t.numel} values but "
                                      "no data is stored")
            return t
        if len(data) == 1 and data[0].wire == LENGTH:
            return self.embedded(t, data[0], nbytes)
        if any(g.number == _T_RAW for g in data) or len({g.number for g in data}) > 1:
            raise w.fail(data[0].start, f"tensor {label} stores its data in several fields")
        return self.unpacked(t, data, f)

    def embedded(self, t: StoredTensor, data: Field, nbytes: int) -> StoredTensor:
        label = repr(t.name)
        length = data.end - data.start
        if data.number == _T_RAW or (data.number == _T_FLOAT and t.dtype == "F32") or (
                data.number == _T_DOUBLE and t.dtype == "F64"):
            if length != nbytes:
                raise CheckpointError(self.path, f"tensor {label}: {length} bytes of data do not match "
                                      f"{t.dtype} x {list(t.dims)} ({nbytes} bytes)")
            t.byte_range = (data.start, data.end)
            return t
        if data.number not in (_T_INT32, _T_INT64, _T_UINT64):
            raise CheckpointError(self.path, f"tensor {label}: {t.dtype} data stored in the wrong typed field")
        if length > _MAX_INLINE_BYTES:
            raise CheckpointError(self.path, f"tensor {label}: {length} bytes of varint-encoded values exceed the "
                                  f"{_MAX_INLINE_BYTES}-byte limit (exporters store large tensors as raw_data)")
        return self.decoded(t, self.wire.packed_varints(data), data)

    def unpacked(self, t: StoredTensor, data: list[Field], f: Field) -> StoredTensor:
        """Typed values written one per field (not packed): small tensors only, decoded in memory."""
        if f.end - f.start > _MAX_UNPACKED_BYTES:
            raise CheckpointError(self.path, f"tensor {t.name!r}: {f.end - f.start} bytes of unpacked values "
                                  f"exceed the {_MAX_UNPACKED_BYTES}-byte limit")
        number = data[0].number
        if number in (_T_FLOAT, _T_DOUBLE):
            fixed, width = (FIXED32, "<f4") if number == _T_FLOAT else (FIXED64, "<f8")
            if (t.dtype, number) not in (("F32", _T_FLOAT), ("F64", _T_DOUBLE)):
                raise CheckpointError(self.path, f"tensor {t.name!r}: {t.dtype} data stored in the wrong typed field")
            chunks = []
            for g in data:
                raw = g.value.to_bytes(g.end - g.start, "little") if g.wire == fixed else bytes(
                    self.wire.buf[g.start:g.end]) if g.wire == LENGTH else None
                if raw is None or len(raw) % np.dtype(width).itemsize:
                    raise self.wire.fail(g.start, f"tensor {t.name!r}: malformed {width[1:]} values")
                chunks.append(np.frombuffer(raw, width))
            return self._set_values(t, np.concatenate(chunks), (f.start, f.end))
        values = [v & 0xFFFFFFFFFFFFFFFF for g in data for v in self.wire.ints(g)]
        return self.decoded(t, np.asarray(values, dtype=np.uint64), Field(0, LENGTH, 0, f.start, f.end))

    def decoded(self, t: StoredTensor, raw: np.ndarray, data: Field) -> StoredTensor:
        """Varint values (int32_data, int64_data, uint64_data) as the tensor's own dtype."""
        dtype = t.dtype
        assert dtype is not None
        if dtype in ("F16", "BF16"):  # half-precision bit patterns travel in int32_data
            values = raw.astype(np.uint16)
        elif dtype in ("F32", "F64"):
            raise CheckpointError(self.path, f"tensor {t.name!r}: {dtype} data stored in an integer field")
        else:
            values = raw.view(np.int64).astype(_NUMPY[dtype]) if dtype.startswith("I") else raw.astype(_NUMPY[dtype])
        return self._set_values(t, values, (data.start, data.end))

    def _set_values(self, t: StoredTensor, values: np.ndarray, span: tuple[int, int]) -> StoredTensor:
        if values.size != t.numel:
            raise CheckpointError(self.path, f"tensor {t.name!r}: {values.size} stored values do not match dims "
                                  f"{list(t.dims)} ({t.numel} values)")
        t.values = np.ascontiguousarray(values)
        t.byte_range = span
        return t

    def external(self, t: StoredTensor, entries: dict[str, str], nbytes: int) -> StoredTensor:
        """Locate an external-data tensor: a relative path inside the model's folder, offset and length in range."""
        label = repr(t.name)
        location = entries.get("location", "")
        rel = Path(location)
        if not location or rel.is_absolute() or ".." in rel.parts or "\\" in location or "\x00" in location:
            raise CheckpointError(self.path, f"tensor {label}: external data location {location!r} is not a "
                                  "relative path inside the model's folder")
        target = self.folder / rel
        try:
            real = target.resolve(strict=True)
            inside = real.is_relative_to(self.folder.resolve())
        except (OSError, RuntimeError):
            raise CheckpointError(target, f"external data of tensor {label} is missing") from None
        if not inside:
            raise CheckpointError(self.path, f"tensor {label}: external data {location!r} resolves outside the "
                                  "model's folder")
        size = self.external_sizes.get(real)
        if size is None:
            if not real.is_file():
                raise CheckpointError(target, f"external data of tensor {label} is not a regular file")
            size = self.external_sizes[real] = os.stat(real).st_size
        try:
            offset = int(entries.get("offset", "0") or 0)
            length = int(entries["length"]) if entries.get("length") else nbytes
        except ValueError:
            raise CheckpointError(self.path, f"tensor {label}: external offset/length are not integers") from None
        if length != nbytes:
            raise CheckpointError(self.path, f"tensor {label}: external length {length} does not match "
                                  f"{t.dtype} x {list(t.dims)} ({nbytes} bytes)")
        if offset < 0 or offset + length > size:
            raise CheckpointError(target, f"tensor {label}: bytes [{offset}, {offset + length}) lie past the end "
                                  f"of the {size}-byte external data file")
        t.file = target
        t.byte_range = (offset, offset + length)
        return t


def _scope(text: str) -> str | None:
    """The innermost module path of torch.onnx's `pkg.torch.onnx.name_scopes` metadata, e.g. "m.encoder.layer.0"."""
    if not text or len(text) > _MAX_METADATA_TEXT:
        return None
    try:
        scopes = ast.literal_eval(text)  # a list of strings written by the exporter; literal_eval runs no code
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None
    if not isinstance(scopes, list) or len(scopes) < 2 or not all(isinstance(s, str) for s in scopes):
        return None
    return scopes[-2] or None  # the last entry names the operation inside the innermost module
