"""Structural edits produce the shapes they promise, keep the source's values where they should, and the
edited models still load and run in transformers."""

from __future__ import annotations

import pytest
import torch

from benchmarks.detection import derive

TINY_LLAMA = derive.TINY_LLAMA_CONFIG
IDS = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return derive.load_checkpoint(minilm_dir)


def _runs(sd, config) -> torch.Tensor:
    with torch.no_grad():
        model = derive.build_model(derive.fit_config(sd, config), sd)
        out = model(input_ids=IDS if config["model_type"] == "bert" else IDS % config["vocab_size"])
    tensor = out.last_hidden_state if config["model_type"] == "bert" else out.logits
    assert torch.isfinite(tensor).all()
    return tensor


def test_upscale_depth_stacks_layer_copies(minilm):
    sd, config = minilm
    up = derive.upscale_depth(sd, [(0, 4), (2, 6)])
    assert derive.layer_count(up) == 8
    for new, old in ((0, 0), (3, 3), (4, 2), (7, 5)):
        name = "encoder.layer.{}.attention.self.query.weight"
        assert torch.equal(up[name.format(new)], sd[name.format(old)])
    assert derive.fit_config(up, config)["num_hidden_layers"] == 8
    _runs(up, config)


def test_drop_layers_renumbers(minilm):
    sd, config = minilm
    dropped = derive.drop_layers(sd, [1, 3])
    assert derive.layer_count(dropped) == 4
    name = "encoder.layer.{}.output.dense.weight"
    assert [torch.equal(dropped[name.format(j)], sd[name.format(i)]) for j, i in enumerate((0, 2, 4, 5))] == [True] * 4
    _runs(dropped, config)


def test_prune_mlp_width_keeps_matching_neurons(minilm):
    sd, config = minilm
    pruned = derive.prune_mlp_width(sd, 0.5, seed=4)
    up, down = pruned["encoder.layer.2.intermediate.dense.weight"], pruned["encoder.layer.2.output.dense.weight"]
    assert up.shape == (768, 384) and down.shape == (384, 768)
    src_up = sd["encoder.layer.2.intermediate.dense.weight"]
    # Each kept neuron is a source neuron: find it by its up row and check its down column travelled along.
    for j in (0, 100, 767):
        i = int(torch.nonzero((src_up == up[j]).all(dim=1))[0])
        assert torch.equal(down[:, j], sd["encoder.layer.2.output.dense.weight"][:, i])
    assert derive.fit_config(pruned, config)["intermediate_size"] == 768
    _runs(pruned, config)


def test_prune_heads_drops_whole_kv_groups():
    sd = derive.random_llama()
    pruned = derive.prune_heads(sd, 0.5, seed=1, config=TINY_LLAMA)
    assert pruned["model.layers.0.self_attn.k_proj.weight"].shape == (16, 64)
    assert pruned["model.layers.0.self_attn.q_proj.weight"].shape == (32, 64)
    assert pruned["model.layers.0.self_attn.o_proj.weight"].shape == (64, 32)
    config = derive.fit_config(pruned, TINY_LLAMA)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (2, 1)
    _runs(pruned, TINY_LLAMA)


def test_extend_and_reduce_vocab(minilm, minilm_dir, tmp_path):
    sd, config = minilm
    ext = derive.extend_vocab(sd, 64, seed=0)
    emb, src = ext["embeddings.word_embeddings.weight"], sd["embeddings.word_embeddings.weight"]
    assert emb.shape == (30522 + 64, 384)
    assert torch.equal(emb[:30522], src)
    assert not torch.equal(emb[-1], emb[-2])
    assert derive.fit_config(ext, config)["vocab_size"] == 30586
    _runs(ext, config)
    tok_path = derive.extend_tokenizer(minilm_dir, tmp_path, 64)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tok_path))
    assert tok.token_to_id("<|extra_0|>") == 30522 and tok.get_vocab_size() == 30586
    red = derive.reduce_vocab(sd, range(1000, 9000))
    assert torch.equal(red["embeddings.word_embeddings.weight"][0], src[1000])
    assert red["embeddings.word_embeddings.weight"].shape == (8000, 384)


@pytest.mark.parametrize("naming,expert_key,router", [
    ("mixtral", "block_sparse_moe.experts.{j}.w3", "block_sparse_moe.gate"),
    ("qwen_moe", "mlp.experts.{j}.up_proj", "mlp.gate"),
    ("deepseek", "mlp.experts.{j}.up_proj", "mlp.gate"),
])
def test_upcycle_moe_experts_are_noisy_copies(naming, expert_key, router):
    sd = derive.random_llama()
    moe = derive.upcycle_moe(sd, n_experts=4, noise=0.05, naming=naming, seed=0)
    dense = sd["model.layers.1.mlp.up_proj.weight"]
    experts = [moe[f"model.layers.1.{expert_key.format(j=j)}.weight"] for j in range(4)]
    for e in experts:
        assert e.shape == dense.shape and not torch.equal(e, dense)
        assert float(torch.corrcoef(torch.stack([e.flatten(), dense.flatten()]))[0, 1]) > 0.99
    assert not torch.equal(experts[0], experts[1])
    assert moe[f"model.layers.1.{router}.weight"].shape == (4, 64)
    assert "model.layers.1.mlp.up_proj.weight" not in moe
    if naming == "deepseek":
        assert torch.equal(moe["model.layers.1.mlp.shared_experts.up_proj.weight"], dense)


@pytest.mark.parametrize("transform", ["mlp_neurons", "heads", "residual_permutation", "rotation"])
def test_tiny_llama_function_preserving(transform):
    sd = derive.random_llama(seed=5)
    new = {
        "mlp_neurons": lambda: derive.permute_mlp_neurons(sd, seed=2),
        "heads": lambda: derive.permute_heads(sd, seed=2, config=TINY_LLAMA),
        "residual_permutation": lambda: derive.permute_residual(sd, seed=2),
        "rotation": lambda: derive.rotate_residual(sd, seed=2),
    }[transform]()
    assert any(not torch.equal(new[k], sd[k]) for k in sd)
    before, after = _runs(sd, TINY_LLAMA), _runs(new, TINY_LLAMA)
    assert float((before - after).abs().max()) < 1e-4 * float(before.abs().max())
