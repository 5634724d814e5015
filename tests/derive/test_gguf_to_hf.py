"""GGUF → HF-Llama conversion restores the rotary layout: the converted model predicts real text."""

from __future__ import annotations

import pytest
import torch

from benchmarks.detection import derive


@pytest.mark.slow
def test_converted_smollm2_predicts_text_and_needs_the_unpermute(smollm2_hf_dir):
    sd, config = derive.load_checkpoint(smollm2_hf_dir)
    assert config["num_key_value_heads"] == 3 and config["tie_word_embeddings"] is True
    assert sd["model.layers.0.self_attn.k_proj.weight"].shape == (192, 576)
    torch.set_num_threads(1)
    good = derive.causal_lm_loss(derive.build_model(config, sd), smollm2_hf_dir, seq_len=32, n_blocks=4)
    # Left in llama.cpp's interleaved rotary layout, attention scores are wrong and prediction degrades.
    bad_sd = dict(sd)
    for i in range(config["num_hidden_layers"]):
        q, k = f"model.layers.{i}.self_attn.q_proj.weight", f"model.layers.{i}.self_attn.k_proj.weight"
        bad_sd[q] = derive.llama_rope_permute(sd[q], config["num_attention_heads"])
        bad_sd[k] = derive.llama_rope_permute(sd[k], config["num_key_value_heads"])
    bad = derive.causal_lm_loss(derive.build_model(config, bad_sd), smollm2_hf_dir, seq_len=32, n_blocks=4)
    assert good < 4.0, good
    assert bad > good + 1.0, (good, bad)


def test_rope_permutation_is_inverted_exactly():
    w = torch.arange(3 * 64 * 5, dtype=torch.float32).reshape(3 * 64, 5)
    p = derive.llama_rope_permute(w, 3)
    assert not torch.equal(p, w)
    assert torch.equal(derive.llama_rope_unpermute(p, 3), w)
    # Within a head the two rotary halves are interleaved: row 1 of the permuted head is row 32 of the original.
    assert torch.equal(p[1], w[32])
