"""Trust of the verdict (issue 15), on tiny synthetic Llamas: buffers every model of a config holds are never
evidence, a copy stored another way is "copied" with its storage named, and imitation is its own relation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.detection import derive
from modelprov.findings import Reference
from modelprov.index import ReferenceIndex, add_checkpoint
from modelprov.policy import Status, apply_policy
from modelprov.scan import scan
from modelprov.weights import storage
from modelprov.weights.nonlearned import reason_by_name, reason_by_value

CONFIG = {**derive.TINY_LLAMA_CONFIG, "num_hidden_layers": 4, "intermediate_size": 256, "vocab_size": 512,
          "hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32}


def _weights(path: Path, index: Path) -> list:
    report = scan(path, index, hash_files=False, tokenizer=False, code=False)
    return report, [f for f in report.findings if f.kind == "weights"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    """Two independent tiny Llamas (seeds 11 and 12), both with rotary inv_freq buffers, the first indexed."""
    root = tmp_path_factory.mktemp("trust")
    ref = derive.add_rotary_buffers(derive.random_llama(CONFIG, seed=11), CONFIG)
    other = derive.add_rotary_buffers(derive.random_llama(CONFIG, seed=12), CONFIG)
    derive.save_checkpoint(ref, CONFIG, root / "ref")
    derive.save_checkpoint(other, CONFIG, root / "other")
    add_checkpoint(ReferenceIndex.create(root / "index"), root / "ref", Reference("tiny-ref", org="Other", country="CN"))
    return ref, root / "other", root / "index"


def test_identical_rotary_buffers_of_independent_models_are_no_evidence(pair):
    _, other, index = pair
    report, findings = _weights(other, index)
    assert findings == []  # the old scanner said "model.layers copied … 100% bit-identical"
    [ref] = report.details["weights"]["references"]
    shared = ref["identical_non_learned"]
    assert len(shared) == CONFIG["num_hidden_layers"]
    assert all(s["suspect"].endswith("rotary_emb.inv_freq") and "rotary" in s["reason"] for s in shared)
    listed = {b["tensor"] for b in report.details["weights"]["non_learned"]}
    assert {s["suspect"] for s in shared} <= listed


def test_the_sovereign_policy_passes_an_independent_model_carrying_the_same_buffers(pair):
    _, other, index = pair
    report = scan(other, index, hash_files=False, tokenizer=False, code=False)
    result = apply_policy(report, "sovereign-foundation-model", home_country="KR")
    assert result.overall is not Status.FAIL


def test_buffers_are_recognised_by_name_and_by_value():
    assert reason_by_name("model.layers.3.self_attn.rotary_emb.inv_freq", (16,))
    assert reason_by_name("h.0.attn.bias", (1, 1, 64, 64)) and not reason_by_name("h.0.attn.c_attn.bias", (192,))
    assert not reason_by_name("h.0.attn.bias", (192,))  # a real bias vector, not a mask
    inv_freq = 1.0 / (500000.0 ** (np.arange(0, 64, 2) / 64))
    assert "base 500000" in reason_by_value(inv_freq.astype(np.float32))
    assert reason_by_value(np.arange(10, dtype=np.float32)) == "position ids 0..n-1"
    assert reason_by_value(np.zeros(7)) == "constant 0"
    assert reason_by_value(np.tril(np.ones((8, 8)))) == "causal mask"
    assert reason_by_value(np.random.default_rng(0).standard_normal(32)) is None


def test_a_transposed_fused_fp16_copy_in_gguf_row_order_is_copied_with_its_storage_named(pair, tmp_path: Path):
    ref, _, index = pair
    sd = derive.cast(derive.cast(derive.transpose_linear(derive.fuse_gate_up(derive.fuse_qkv(
        derive.rope_permute_qk(ref, CONFIG)))), "bfloat16"), "float16")
    _, [finding] = _weights(derive.save_checkpoint(sd, CONFIG, tmp_path / "conv1d"), index)
    assert finding.verdict == "copied" and finding.subject == "(whole model)"
    assert "copied (stored as" in finding.summary


@pytest.mark.parametrize("quantise,storage", [
    (derive.to_int8_compressed, "INT8_CHANNEL"), (lambda sd: derive.to_gptq(sd, 4, 64), "GPTQ_INT4")])
def test_a_round_to_nearest_quantised_copy_is_copied_not_derived(pair, tmp_path: Path, quantise, storage):
    ref, _, index = pair
    out = derive.save_quantised(quantise(ref), CONFIG, tmp_path / "q")
    _, [finding] = _weights(out, index)
    assert finding.verdict == "copied"  # the old scanner said "derived": no digest matches a rounded copy
    assert any(storage in s for s in finding.statistics["storage"])


def test_a_copy_dequantised_to_float32_is_copied_on_its_grid(pair, tmp_path: Path):
    """W8A16 export: int8 codes times a per-row scale written back as float32. The float32 rounding of each
    level once made 200-level rows miss the grid test, and the copy was called derived."""
    ref, _, index = pair
    out = derive.save_checkpoint(derive.fake_int8(ref), CONFIG, tmp_path / "w8")
    _, [finding] = _weights(out, index)
    assert finding.verdict == "copied"
    assert any("dequantised grid" in s for s in finding.statistics["storage"])


def test_the_grid_of_float32_dequantised_rows_is_found_and_plain_floats_have_none():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((64, 384)).astype(np.float32)
    scale = np.abs(w).max(axis=1, keepdims=True) / 127
    grid = storage.grid_rounding((np.round(w / scale) * scale).astype(np.float32))
    assert grid is not None and np.allclose(grid.below[grid.below < np.inf], np.repeat(scale / 2, 384, axis=1)[grid.below < np.inf], rtol=1e-3)
    assert storage.grid_rounding(w) is None


def test_a_quantised_finetune_stays_derived(pair, tmp_path: Path):
    ref, _, index = pair
    gen = torch.Generator().manual_seed(5)
    trained = {k: v + torch.randn(v.shape, generator=gen) * v.std() * 0.05 if v.ndim == 2 else v for k, v in ref.items()}
    out = derive.save_quantised(derive.to_int8_compressed(trained), CONFIG, tmp_path / "ft")
    _, [finding] = _weights(out, index)
    assert finding.verdict == "derived"


def test_a_gguf_copy_is_copied(pair, tmp_path: Path):
    ref, _, index = pair
    hf = derive.save_checkpoint(ref, CONFIG, tmp_path / "hf")
    _, [finding] = _weights(derive.to_gguf(hf, tmp_path / "tiny.Q4_0.gguf", "Q4_0"), index)
    assert finding.verdict == "copied" and any("Q4_0" in s or "Q8_0" in s for s in finding.statistics["storage"])


def test_embedding_only_alignment_is_output_aligned_not_derived(pair, tmp_path: Path):
    """A fresh model whose token embedding shares the reference's basis (as distillation leaves it: correlated,
    far from a copy) while every layer is its own: no weights reused."""
    ref, other, index = pair
    student = derive.random_llama(CONFIG, seed=13)
    emb = ref["model.embed_tokens.weight"]
    gen = torch.Generator().manual_seed(9)
    student["model.embed_tokens.weight"] = 0.2 * emb + torch.randn(emb.shape, generator=gen) * emb.std()
    report, [finding] = _weights(derive.save_checkpoint(student, CONFIG, tmp_path / "student"), index)
    assert finding.verdict == "output-aligned"  # the old scanner said "derived"
    assert "consistent with distillation" in finding.summary and "no weights reused" in finding.summary
    tested = finding.statistics["layers_tested"]
    assert tested and tested[0]["layers"] == CONFIG["num_hidden_layers"]
    result = apply_policy(report, "sovereign-foundation-model", home_country="KR")
    assert result.overall is Status.REVIEW
    assert not any(r.status is Status.FAIL for r in result.rules)


def test_compare_calls_a_quantised_copy_a_copy_and_a_finetune_not(pair, tmp_path: Path):
    from modelprov.weights import compare

    ref, _, _ = pair
    base = derive.save_checkpoint(ref, CONFIG, tmp_path / "base")
    copy = derive.save_quantised(derive.to_int8_compressed(ref), CONFIG, tmp_path / "int8")
    gen = torch.Generator().manual_seed(4)
    trained = {k: v + torch.randn(v.shape, generator=gen) * v.std() * 0.05 if v.ndim == 2 else v for k, v in ref.items()}
    tuned = derive.save_quantised(derive.to_int8_compressed(trained), CONFIG, tmp_path / "int8_ft")
    quantised = [t for t in compare(copy, base).tensors if t.a.endswith("proj.weight")]
    assert quantised and all(t.copy and "INT8" in t.copy and not t.identical for t in quantised)
    assert not any(t.copy for t in compare(tuned, base).tensors if t.a.endswith("proj.weight"))
