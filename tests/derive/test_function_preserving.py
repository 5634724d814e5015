"""Function-preserving transforms leave the model's outputs unchanged while its tensors change."""

from __future__ import annotations

import pytest
import torch

from benchmarks.detection import derive

TOKENS = torch.tensor([[101, 7592, 1010, 2023, 2003, 1037, 3231, 1997, 1996, 2944, 102]])


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return derive.load_checkpoint(minilm_dir)


@pytest.fixture(scope="module")
def smollm2(smollm2_hf_dir):
    return derive.load_checkpoint(smollm2_hf_dir)


def _bert_out(sd, config):
    torch.set_num_threads(1)
    with torch.no_grad():
        out = derive.build_model(config, sd)(input_ids=TOKENS)
    return out.last_hidden_state[0], out.pooler_output[0]


def _llama_logits(sd, config):
    torch.set_num_threads(1)
    ids = torch.tensor([[1, 504, 3458, 282, 4144, 314, 260, 1345, 30, 378, 2056, 315]])
    with torch.no_grad():
        return derive.build_model(derive.fit_config(sd, config), sd)(input_ids=ids).logits[0]


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> bool:
    return float((a - b).abs().max()) <= rel * float(a.abs().max())


def _changed(a, b, name) -> bool:
    return a[name].shape != b[name].shape or not torch.equal(a[name], b[name])


@pytest.mark.parametrize("transform,changed", [
    ("mlp_neurons", ("encoder.layer.0.intermediate.dense.weight", "encoder.layer.5.output.dense.weight")),
    ("heads", ("encoder.layer.0.attention.self.key.weight", "encoder.layer.0.attention.output.dense.weight")),
])
def test_bert_permutations_keep_outputs(minilm, transform, changed):
    sd, config = minilm
    new = (derive.permute_mlp_neurons(sd, seed=1) if transform == "mlp_neurons"
           else derive.permute_heads(sd, seed=1, config=config))
    assert all(_changed(sd, new, name) for name in changed)
    (h0, p0), (h1, p1) = _bert_out(sd, config), _bert_out(new, config)
    assert _close(h0, h1) and _close(p0, p1)


def test_bert_residual_permutation_permutes_hidden_states_only(minilm):
    sd, config = minilm
    new = derive.permute_residual(sd, seed=1)
    assert _changed(sd, new, "embeddings.word_embeddings.weight")
    assert _changed(sd, new, "encoder.layer.2.output.LayerNorm.weight")
    (h0, p0), (h1, p1) = _bert_out(sd, config), _bert_out(new, config)
    assert not _close(h0, h1)
    perm = torch.from_numpy(derive.residual_permutation(h0.shape[-1], seed=1))
    assert _close(h0[:, perm], h1)
    assert _close(p0, p1)


@pytest.mark.slow
@pytest.mark.parametrize("transform", ["mlp_neurons", "heads", "residual_permutation", "rotation", "fold_norms"])
def test_llama_function_preserving(smollm2, transform):
    sd, config = smollm2
    new = {
        "mlp_neurons": lambda: derive.permute_mlp_neurons(sd, seed=2),
        "heads": lambda: derive.permute_heads(sd, seed=2, config=config),
        "residual_permutation": lambda: derive.permute_residual(sd, seed=2),
        "rotation": lambda: derive.rotate_residual(sd, seed=2),
        "fold_norms": lambda: derive.fold_norm_gains(sd),
    }[transform]()
    changed = {"mlp_neurons": "model.layers.3.mlp.down_proj.weight", "heads": "model.layers.3.self_attn.k_proj.weight",
               "residual_permutation": "model.embed_tokens.weight", "rotation": "model.layers.3.self_attn.o_proj.weight",
               "fold_norms": "model.layers.3.self_attn.q_proj.weight"}[transform]
    assert _changed(sd, new, changed)
    assert _close(_llama_logits(sd, config), _llama_logits(new, config), rel=1e-3)


@pytest.mark.slow
def test_rotation_leaves_no_column_direction_in_place(smollm2):
    full, _ = smollm2
    # Layer 0 with a slice of the vocabulary is enough to look at one rotated matrix.
    sd = {k: v for k, v in full.items() if k.startswith("model.layers.0.") or k == "model.norm.weight"}
    sd["model.embed_tokens.weight"] = full["model.embed_tokens.weight"][:256]
    w = "model.layers.0.mlp.up_proj.weight"
    rotated = derive.rotate_residual(sd, seed=3)[w]
    # Every column of a rotated reader matrix is a mix of all source columns: none keeps cosine ≈ 1.
    src = derive.fold_norm_gains(sd)[w]
    cos = torch.nn.functional.cosine_similarity(src, rotated, dim=0)
    assert float(cos.abs().max()) < 0.5
