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
