"""The training builders really train: weights move, the masked-LM loss falls, seeds are reproducible."""

from __future__ import annotations

import pytest
import torch

from benchmarks.detection import derive


def _max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], names) -> dict[str, float]:
    return {n: float((a[n].float() - b[n].float()).abs().max()) for n in names}


@pytest.mark.slow
def test_finetune_changes_every_encoder_weight_and_lowers_mlm_loss(minilm_dir, tmp_path):
    out = derive.finetune_bert(minilm_dir, tmp_path / "ft", steps=12, seed=0, keep_head=True)
    src, config = derive.load_checkpoint(minilm_dir)
    tuned, tuned_config = derive.load_checkpoint(out)
    assert tuned_config == config
    encoder = [n for n in src if n.startswith("encoder.") and n.endswith("weight")]
    diffs = _max_abs_diff(src, tuned, encoder)
    assert all(d > 0 for d in diffs.values()), [n for n, d in diffs.items() if d == 0]
    # Still a close relative of the source: every matrix moved by far less than its own scale.
    for n in encoder:
        assert diffs[n] < 0.5 * float(src[n].abs().max()), n
    assert any(n.startswith("cls.predictions.") for n in tuned)

    before = derive.build_model(config, src, masked_lm=True, seed=0)  # the head the fine-tune started from
    after = derive.build_model(config, tuned, masked_lm=True, seed=99)
    loss_before = derive.masked_lm_loss(before, minilm_dir)
    loss_after = derive.masked_lm_loss(after, minilm_dir)
    assert loss_after < loss_before - 0.5, (loss_before, loss_after)


def test_fresh_init_is_reproducible_and_seed_dependent(minilm_dir, tmp_path):
    a = derive.load_checkpoint(derive.fresh_init(minilm_dir, tmp_path / "a", seed=5))[0]
    b = derive.load_checkpoint(derive.fresh_init(minilm_dir, tmp_path / "b", seed=5))[0]
    c = derive.load_checkpoint(derive.fresh_init(minilm_dir, tmp_path / "c", seed=6))[0]
    src = derive.load_checkpoint(minilm_dir)[0]
    assert set(a) == set(src)
    assert all(a[n].shape == src[n].shape for n in src)
    assert all(torch.equal(a[n], b[n]) for n in a)
    w = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(a[w], c[w])
    assert not torch.allclose(a[w], src[w], atol=1e-3)


@pytest.mark.slow
def test_training_from_scratch_moves_away_from_its_init(minilm_dir, tmp_path):
    init = derive.load_checkpoint(derive.fresh_init(minilm_dir, tmp_path / "init", seed=7))[0]
    trained = derive.load_checkpoint(derive.train_bert_from_scratch(minilm_dir, tmp_path / "t", seed=7, steps=4))[0]
    w = "encoder.layer.3.intermediate.dense.weight"
    assert init[w].shape == trained[w].shape
    assert not torch.equal(init[w], trained[w])


@pytest.mark.slow
def test_finetune_is_deterministic(minilm_dir, tmp_path):
    a = derive.load_checkpoint(derive.finetune_bert(minilm_dir, tmp_path / "a", steps=2, seed=3, seq_len=16))[0]
    b = derive.load_checkpoint(derive.finetune_bert(minilm_dir, tmp_path / "b", steps=2, seed=3, seq_len=16))[0]
    src = derive.load_checkpoint(minilm_dir)[0]
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["encoder.layer.0.output.dense.weight"], src["encoder.layer.0.output.dense.weight"])


@pytest.mark.slow
def test_causal_finetune_moves_weights_and_lowers_next_token_loss(smollm2_independent_small, tmp_path):
    src, config = derive.load_checkpoint(smollm2_independent_small)
    out = derive.finetune_causal_lm(smollm2_independent_small, tmp_path / "ft", steps=6, lr=2e-3, seed=0,
                                    seq_len=32)
    tuned, tuned_config = derive.load_checkpoint(out)
    assert tuned_config == config and set(tuned) == set(src)
    w = "model.layers.1.mlp.down_proj.weight"
    assert not torch.equal(src[w], tuned[w])
    before = derive.causal_lm_loss(derive.build_model(config, src), smollm2_independent_small, n_blocks=8)
    after = derive.causal_lm_loss(derive.build_model(config, tuned), smollm2_independent_small, n_blocks=8)
    assert after < before, (before, after)
