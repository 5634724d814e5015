"""Unit tests on small synthetic tensors: sketches, digests, statistics, roles, placements, alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from modelprov.weights.fingerprint import (
    SketchSpec, ValueDigests, bf16_bits, digests_match, exact_precision, gguf_qk_permutation, sample_indices,
    sketch_indices,
)
import modelprov.weights.fingerprint as fingerprint_module
from modelprov.weights.alignment import AlignmentCosts, align_layers, describe_alignment
from modelprov.weights.naming import infer_role, roles_compatible
from modelprov.weights.similarity import centred_similarity, fisher_combined_log10_p, similarity, stouffer

SPEC = SketchSpec()


def _sketch(w: np.ndarray) -> np.ndarray:
    rows, cols = sketch_indices(w.shape, SPEC)
    return w[rows][:, cols]


def test_sample_depends_only_on_the_dimension():
    a, b = sample_indices(1000, 256), sample_indices(1000, 256)
    assert np.array_equal(a, b) and len(np.unique(a)) == 256 and np.all(np.diff(a) > 0)
    assert not np.array_equal(sample_indices(1001, 256)[:50], a[:50])
    assert np.array_equal(sample_indices(200, 256), np.arange(200))  # small dimensions are kept whole


def test_sketch_of_a_transposed_tensor_is_the_transposed_sketch():
    w = np.random.default_rng(0).standard_normal((700, 300))
    assert np.array_equal(_sketch(w.T), _sketch(w).T)


def _pair_with_correlation(shape: tuple[int, int], r: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two matrices with shared row/column scales (like a weight and its fine-tune) and a given correlation."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.normal(0, 0.5, (shape[0], 1))) * np.exp(rng.normal(0, 0.3, (1, shape[1])))
    base = rng.standard_normal(shape) * scale
    other = rng.standard_normal(shape) * scale
    return base, r * base / base.std() + np.sqrt(1 - r * r) * other / other.std()


@pytest.mark.parametrize("r", [0.0, 0.3, 0.7, 0.95, 0.999])
def test_sketch_estimate_is_within_001_of_exact_on_large_tensors(r: float):
    a, b = _pair_with_correlation((2048, 1024), r, seed=int(r * 1000))  # 2.1M entries
    exact = centred_similarity(a, b)
    estimate = centred_similarity(_sketch(a), _sketch(b))
    assert abs(estimate - exact) <= 0.01, (exact, estimate)


def test_sketch_estimate_on_real_embedding(minilm_dir: Path):
    """MiniLM's word embedding (11.7M entries) against a noisy version of itself at several strengths."""
    emb = load_file(str(minilm_dir / "model.safetensors"))["embeddings.word_embeddings.weight"]
    rng = np.random.default_rng(5)
    noise = rng.standard_normal(emb.shape).astype(np.float32) * emb.std()
    for k in (0.3, 1.0, 3.0):
        other = emb + k * noise
        exact = centred_similarity(emb, other)
        assert abs(centred_similarity(_sketch(emb), _sketch(other)) - exact) <= 0.01


def test_value_digests_recognise_a_dtype_cast():
    w = np.random.default_rng(1).standard_normal((64, 32)).astype(np.float32)
    assert np.array_equal(bf16_bits(w), torch.from_numpy(w).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16))
    ref, cast = ValueDigests(), ValueDigests()
    ref.update(w)
    cast.update(torch.from_numpy(w).to(torch.bfloat16).to(torch.float32).numpy())
    assert digests_match(cast.hexdigests(), ref.hexdigests()) == "bf16"
    moved = ValueDigests()
    moved.update(w + 1e-3)
    assert digests_match(moved.hexdigests(), ref.hexdigests()) is None


def test_exact_precision_hashes_a_one_block_copy_once(monkeypatch):
    w = np.random.default_rng(2).standard_normal((64, 32)).astype(np.float32)
    ref = ValueDigests()
    ref.update(w)
    cast = torch.from_numpy(w).to(torch.bfloat16).to(torch.float32).numpy()
    calls = []
    real = fingerprint_module.bf16_bits
    monkeypatch.setattr(fingerprint_module, "bf16_bits", lambda v: calls.append(v.shape) or real(v))
    assert exact_precision([w.copy()], ref.hexdigests(), 64) == "f32"
    assert calls == []  # a copy is confirmed at float32 without the lower precisions
    assert exact_precision([cast], ref.hexdigests(), 64) == "bf16"
    assert exact_precision([cast[:40], cast[40:]], ref.hexdigests(), 64) == "bf16"  # blocks: one pass, all three
    assert exact_precision([w[:40], w[40:]], ref.hexdigests(), 64) == "f32"
    assert exact_precision([w + 1e-3], ref.hexdigests(), 64) is None
    assert exact_precision([w], {}, 64) is None and exact_precision([], ref.hexdigests(), 64) is None


def test_gguf_permutation_is_llama_cpp_s():
    from benchmarks.detection.derive import llama_rope_permute

    w = torch.arange(576 * 3, dtype=torch.float32).reshape(576, 3)
    assert np.array_equal(llama_rope_permute(w, 9).numpy(), w.numpy()[gguf_qk_permutation(576, 9)])


def test_statistics_follow_the_null():
    rng = np.random.default_rng(2)
    rs = [centred_similarity(rng.standard_normal(4096), rng.standard_normal(4096)) for _ in range(400)]
    assert abs(np.std(rs) * np.sqrt(4096) - 1.0) < 0.1  # sd 1/sqrt(n)
    s = similarity(0.5, 0.5, 10_000)
    assert s.z > 50 and s.log10_p == -300.0  # true tail ~1e-657: below the reporting floor
    assert similarity(0.0, 0.0, 10_000).log10_p == pytest.approx(np.log10(0.5), abs=1e-6)
    assert similarity(0.03, 0.03, 10_000, candidates=1000).log10_p > similarity(0.03, 0.03, 10_000).log10_p
    z, _ = stouffer([1.0, 1.0, 1.0, 1.0])
    assert z == pytest.approx(2.0)
    assert fisher_combined_log10_p([np.log10(0.5)] * 10) > -1


@pytest.mark.parametrize("name, shape, role", [
    ("encoder.layer.0.attention.self.query.weight", (384, 384), "attn_q"),
    ("encoder.layer.0.intermediate.dense.weight", (1536, 384), "mlp_up"),
    ("encoder.layer.0.output.dense.weight", (384, 1536), "mlp_down"),
    ("encoder.layer.0.attention.output.dense.weight", (384, 384), "attn_o"),
    ("encoder.layer.0.output.LayerNorm.weight", (384,), "norm_weight"),
    ("encoder.layer.0.output.LayerNorm.bias", (384,), "norm_bias"),
    ("embeddings.word_embeddings.weight", (30522, 384), "token_embedding"),
    ("model.layers.3.self_attn.k_proj.weight", (192, 576), "attn_k"),
    ("model.layers.3.mlp.gate_proj.weight", (1536, 576), "mlp_gate"),
    ("model.layers.3.mlp.gate_up_proj.weight", (3072, 576), "mlp_gate_up"),
    ("model.layers.3.post_attention_layernorm.weight", (576,), "norm_weight"),
    ("lm_head.weight", (49152, 576), "lm_head"),
    ("blk.3.attn_q.weight", (576, 576), "attn_q"),
    ("blk.3.ffn_down.weight", (576, 1536), "mlp_down"),
    ("token_embd.weight", (49152, 576), "token_embedding"),
    ("output_norm.weight", (576,), "norm_weight"),
    ("language_model.encoder.layers.0.self_attention.query_key_value.weight", (1152, 384), "attn_qkv"),
    ("language_model.encoder.layers.0.mlp.dense_h_to_4h.weight", (1536, 384), "mlp_up"),
    ("transformer.h.0.attn.c_attn.weight", (768, 2304), "attn_qkv"),
    ("visual.blocks.0.attn.qkv.weight", (3840, 1280), "attn_qkv"),
    ("visual.patch_embed.proj.weight", (1280, 3, 2, 14, 14), "patch_embed"),
    ("model.layers.0.mlp.gate.weight", (64, 2048), "router"),
    ("some.unknown.matrix", (10, 10), "other"),
])
def test_roles_across_naming_schemes(name: str, shape: tuple[int, ...], role: str):
    assert infer_role(name, shape) == role


def test_role_families():
    assert roles_compatible("attn_q", "attn_qkv") and roles_compatible("mlp_up", "mlp_gate_up")
    assert roles_compatible("other", "mlp_down") and not roles_compatible("attn_q", "mlp_down")


def _similarity_matrix(mapping: list[int | None], n_ref: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.abs(rng.normal(0, 0.01, (len(mapping), n_ref)))
    for i, j in enumerate(mapping):
        if j is not None:
            m[i, j] = 0.95
    return m


def test_alignment_identity_and_dropped_layers():
    ident = list(range(12))
    assert align_layers(_similarity_matrix(ident, 12)) == ident
    dropped = [0, 1, 2, 5, 6, 7, 8, 11]
    assert align_layers(_similarity_matrix(dropped, 12)) == dropped
    assert "reference layers 3-4 skipped" in describe_alignment(dropped)


def test_alignment_finds_depth_upscaling():
    """SOLAR-style: layers 0-23 then 8-31 of a 32-layer reference."""
    solar = list(range(24)) + list(range(8, 32))
    assert align_layers(_similarity_matrix(solar, 32)) == solar
    assert any("restart" in note for note in describe_alignment(solar))
    repeated = [0, 1, 1, 2, 3, 3, 4]
    assert align_layers(_similarity_matrix(repeated, 5)) == repeated


def test_alignment_leaves_independent_layers_unmatched():
    m = np.abs(np.random.default_rng(3).normal(0, 0.02, (10, 10)))
    assert align_layers(m, AlignmentCosts()) == [None] * 10


def test_p_values_of_near_copies_are_floored_not_astronomical():
    from modelprov.weights.similarity import LOG10_P_FLOOR, similarity, stouffer

    copy = similarity(1.0, 1.0, 65_536)
    assert copy.log10_p == LOG10_P_FLOOR and copy.p_value > 0.0  # a float, not an underflow to 0
    z, log_p = stouffer([copy.z] * 200)
    assert z > copy.z and log_p == LOG10_P_FLOOR
    weak = similarity(0.02, 0.5, 65_536)  # ~5 sigma: far from the floor, reported as computed
    assert -8.0 < weak.log10_p < -5.0


def test_scipy_stats_free_statistics_equal_scipy_stats_exactly():
    """The scan avoids importing scipy.stats (~1 s); its replacements must give scipy.stats' values bit for bit."""
    import math

    from scipy import stats

    from modelprov.weights import residual
    from modelprov.weights.similarity import (
        LOG10_P_FLOOR, average_ranks, fisher_combined_log10_p, normal_isf, spearman_rho,
    )

    rng = np.random.default_rng(7)
    quantised = np.round(rng.standard_normal((40, 300)) * 4) / 4  # many ties, as in quantised weights
    quantised[3, 5] = -0.0
    quantised[7, 9] = np.nan  # a row with a NaN ranks as all NaN
    for x in (quantised, rng.standard_normal((5, 64)), rng.integers(0, 9, size=(6, 50)), np.zeros((2, 0))):
        assert np.array_equal(average_ranks(x), stats.rankdata(x, axis=1), equal_nan=True)
    for _ in range(20):
        a, b = rng.integers(0, 200, size=(2, 500))
        assert spearman_rho(a, b) == float(stats.spearmanr(a, b).statistic)
    assert math.isnan(spearman_rho(np.ones(5), np.arange(5)))
    for q in (0.5, 0.3, 1e-3, 1e-12, 1e-300, 0.0, 1.0, 0.999):
        assert normal_isf(q) == float(stats.norm.isf(q)) and math.copysign(1, normal_isf(q)) == math.copysign(
            1, float(stats.norm.isf(q)))
    for ps in ([-0.5, -2.0], [0.0, 0.0], [-300.0] * 30, [-1e-9], list(-rng.random(12) * 40)):
        statistic = -2.0 * math.log(10) * float(np.sum(ps))
        old = max(LOG10_P_FLOOR, float(stats.chi2.logsf(statistic, 2 * len(ps)) / math.log(10)))
        assert fisher_combined_log10_p(ps) == old
    for r in (rng.random(50) * 0.1, rng.random(7) - 0.4, np.full(9, 0.2) + rng.random(9) * 1e-3, rng.random(3) + 5):
        n, tries = len(r), 3
        t = float(np.mean(r)) / (float(np.std(r, ddof=1)) / math.sqrt(n))
        old = max(LOG10_P_FLOOR, min(0.0, float(stats.t.logsf(t, df=n - 1) / math.log(10)) + math.log10(tries)))
        assert residual._mean_test_log10_p(r, tries) == old
