"""The storage's own rounding: every entry of a copy stored another way lies within its stored value's rounding
interval, and a perturbed (trained) copy does not (issue 15: a quantised or cast copy is still a copy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.detection import derive
from modelprov.reader import float_rounding, open_checkpoint
from modelprov.reader._rounding import gguf_rounding


def _within(x: np.ndarray, r) -> np.ndarray:
    return (x >= r.values - r.below) & (x <= r.values + r.above)


@pytest.mark.parametrize("dtype,torch_dtype", [("F16", torch.float16), ("BF16", torch.bfloat16),
                                               ("F8_E4M3", torch.float8_e4m3fn)])
def test_a_float_cast_lies_within_half_an_ulp(dtype, torch_dtype):
    x = torch.randn(64, 256) * 0.05
    stored = x.to(torch_dtype).to(torch.float32).numpy()
    assert _within(x.numpy(), float_rounding(stored, dtype)).all()
    moved = (x * 1.01).to(torch_dtype).to(torch.float32).numpy()  # a 1% change is more than a bf16 or fp16 ULP
    if dtype != "F8_E4M3":
        assert _within(x.numpy(), float_rounding(moved, dtype)).mean() < 0.5


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K"])
def test_gguf_block_rounding_decodes_like_gguf_and_holds_a_copy_but_not_a_finetune(qtype):
    import gguf

    rng = np.random.default_rng(7)
    x = (rng.standard_normal((16, 512)) * 0.03).astype(np.float32)
    y = x + rng.standard_normal(x.shape).astype(np.float32) * 0.03 * 0.05  # a 5% change, then quantised

    def encode(a: np.ndarray) -> np.ndarray:
        return {"Q4_K": derive.quantize_q4_k, "Q6_K": derive.quantize_q6_k}.get(qtype, lambda v: gguf.quants.quantize(
            v, gguf.GGMLQuantizationType[qtype]))(a)

    block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
    raw = encode(x)
    r = gguf_rounding(raw, qtype, type_size, 16)
    np.testing.assert_array_equal(r.values, gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype]))
    assert _within(x, r).all()
    assert _within(x, gguf_rounding(encode(y), qtype, type_size, 16)).mean() < 0.95


def test_unknown_block_grids_say_so():
    assert gguf_rounding(np.zeros((1, 110), dtype=np.uint8), "Q3_K", 110, 1) is None


@pytest.fixture(scope="module")
def small_linear_sd() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return {"model.layers.0.mlp.up_proj.weight": torch.randn(256, 256, generator=gen) * 0.02,
            "model.layers.0.self_attn.q_proj.weight": torch.randn(256, 256, generator=gen) * 0.02}


@pytest.mark.parametrize("writer", ["gptq", "awq", "int8", "fp8_block"])
def test_quantised_safetensors_rounding_holds_the_source(tmp_path: Path, small_linear_sd, writer):
    quantise = {"gptq": lambda sd: derive.to_gptq(sd, 4, 64), "awq": lambda sd: derive.to_awq(sd, 64),
                "int8": derive.to_int8_compressed, "fp8_block": derive.to_fp8_block}[writer]
    folder = derive.save_quantised(quantise(small_linear_sd), {"model_type": "llama"}, tmp_path / writer)
    name = "model.layers.0.mlp.up_proj.weight"
    rows = np.array([5, 0, 77, 200])
    with open_checkpoint(folder) as ckpt:
        r = ckpt.read_rows_rounded(name, rows)
        np.testing.assert_array_equal(r.values, ckpt.read_rows(name, rows))
    source = small_linear_sd[name].numpy()[rows]
    assert _within(source, r).all()
    assert not _within(source * 1.05, r).all()


@pytest.mark.parametrize("qtype", ["Q2_K", "Q5_K", "Q4_K", "Q6_K", "Q5_0", "Q4_1"])
def test_block_values_decode_like_gguf_on_arbitrary_blocks(qtype):
    """The decoders serve the reader's values too (issue 18): any block bytes, with finite fp16 scales, decode
    exactly as gguf's own `dequantize`."""
    import gguf

    from modelprov.reader._rounding import gguf_values

    qt = gguf.GGMLQuantizationType[qtype]
    _, type_size = gguf.GGML_QUANT_SIZES[qt]
    rng = np.random.default_rng(11)
    raw = rng.integers(0, 256, size=(24, type_size * 2), dtype=np.uint8)
    scales = (rng.standard_normal((24, 2, 2)) * 0.01).astype(np.float16).view(np.uint8).reshape(24, 2, 4)
    fields = {"Q2_K": [80], "Q5_K": [0], "Q4_K": [0], "Q6_K": [type_size - 2], "Q5_0": [0], "Q4_1": [0]}[qtype]
    for block in range(2):
        for at in fields:
            width = 4 if qtype in ("Q2_K", "Q5_K", "Q4_K", "Q4_1") else 2
            raw[:, block * type_size + at:block * type_size + at + width] = scales[:, block, :width]
    np.testing.assert_array_equal(gguf_values(raw, qtype, type_size, 24), gguf.quants.dequantize(raw, qt))


def test_gguf_reader_rows_equal_gguf_dequantize(smollm2_gguf: Path):
    """Sampled rows of the real SmolLM2 Q4_1 GGUF, read by the vectorised path, equal gguf's dequantisation of
    the whole tensor at those rows."""
    import gguf

    ckpt = open_checkpoint(smollm2_gguf)
    reader = gguf.GGUFReader(smollm2_gguf)
    checked = set()
    for t in reader.tensors:
        if t.tensor_type.name in checked or t.tensor_type.name in ("F32", "F16"):
            continue
        checked.add(t.tensor_type.name)
        whole = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ckpt.tensor(t.name).shape[0], -1)
        rows = np.asarray([0, 3, 4, 5, 100, whole.shape[0] - 1, 3])
        np.testing.assert_array_equal(ckpt.read_rows(t.name, rows).reshape(len(rows), -1), whole[rows])
    assert checked, "the GGUF holds quantised tensors"
    ckpt.close()
