"""The numpy Q6_K / Q4_K encoders produce blocks that gguf's own dequantiser (and our reader) decode to
within half a quantisation step of each sub-block's range."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize

from benchmarks.detection import derive
from modelprov.reader import open_checkpoint


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = (0.05 * rng.standard_normal((32, 1024))).astype(np.float32)
    x[3, :256] *= 20  # one loud super-block
    x[5, 256:512] = 0  # an all-zero super-block
    x[7] += 0.04  # all-positive values (no negative minimum)
    x[9, :32] = -0.01  # a constant sub-block
    return x


def _sub_ranges(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    sub = x.reshape(-1, 256 // size, size)
    return np.minimum(sub.min(axis=2), 0), np.maximum(sub.max(axis=2), 0)


def test_q6_k_round_trips_through_gguf_within_half_a_step(rows):
    blocks = derive.quantize_q6_k(rows)
    assert blocks.shape == (32, 1024 // 256 * 210) and blocks.dtype == np.uint8
    back = dequantize(blocks, gguf.GGMLQuantizationType.Q6_K)
    lo, hi = _sub_ranges(rows, 16)
    need = np.maximum(-lo, hi) / 31  # the step that just reaches the sub-block's largest magnitude
    step = need + need.max(axis=1, keepdims=True) / 127  # 8-bit sub-scales round the step up by < d
    bound = np.repeat(0.5 * step * 1.01, 16, axis=1).reshape(rows.shape)
    err = np.abs(back - rows)
    assert np.all(err <= bound + 1e-9)
    assert np.all(back[5, 256:512] == 0)
    assert np.sqrt(np.mean(err**2)) / rows.std() < 0.03


def test_q4_k_round_trips_through_gguf_within_half_a_step(rows):
    blocks = derive.quantize_q4_k(rows)
    assert blocks.shape == (32, 1024 // 256 * 144)
    back = dequantize(blocks, gguf.GGMLQuantizationType.Q4_K)
    lo, hi = _sub_ranges(rows, 32)
    dmin = (-lo).max(axis=1, keepdims=True) / 63 * 1.001  # the minimum rounds up by less than one dmin
    need = (hi - lo + dmin) / 15
    step = need + need.max(axis=1, keepdims=True) / 63
    bound = np.repeat(0.5 * step * 1.01, 32, axis=1).reshape(rows.shape)
    err = np.abs(back - rows)
    assert np.all(err <= bound + 1e-9)
    assert np.allclose(back[9, :32], -0.01, atol=1e-3)
    assert np.sqrt(np.mean(err**2)) / rows.std() < 0.12


@pytest.mark.parametrize("qtype,fallback", [("Q6_K", "Q8_0"), ("Q4_K", "Q5_0")])
def test_to_gguf_writes_k_quants_with_llama_cpp_fallbacks(tmp_path, qtype, fallback):
    config = {**derive.TINY_LLAMA_CONFIG, "hidden_size": 256, "intermediate_size": 320, "head_dim": 64}
    sd = derive.random_llama(config, seed=1)
    path = derive.to_gguf(sd, tmp_path / f"m.{qtype}.gguf", qtype, config)
    with open_checkpoint(path) as ck:
        dtypes = {t.name: t.dtype for t in ck.tensors()}
        assert dtypes["blk.0.attn_q.weight"] == qtype  # 256 inputs: whole super-blocks
        assert dtypes["blk.0.ffn_down.weight"] == fallback  # 320 inputs: llama.cpp's fallback type
        up = ck.read("blk.0.ffn_up.weight")
        assert ck.metadata["general.file_type"] == int(gguf.LlamaFileType[
            "MOSTLY_Q4_K_M" if qtype == "Q4_K" else "MOSTLY_Q6_K"])
    w = sd["model.layers.0.mlp.up_proj.weight"].numpy()
    rel = np.sqrt(np.mean((up - w) ** 2)) / w.std()
    assert rel < (0.03 if qtype == "Q6_K" else 0.12)
