"""State-dict transformations: names follow the real conventions, values survive, layouts round-trip."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch

from benchmarks.detection import derive
from modelprov.reader import open_checkpoint


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return derive.load_checkpoint(minilm_dir)


def _gguf_name(name_map, name: str) -> str | None:
    return name_map.get_name(name, try_suffixes=(".weight", ".bias"))


def test_bert_gguf_names_match_llama_cpp_tensor_map(minilm):
    sd, config = minilm
    renamed = derive.rename_keys(sd, "gguf")
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, config["num_hidden_layers"])
    expected = {_gguf_name(name_map, n) for n in sd if _gguf_name(name_map, n)}
    assert expected <= set(renamed)
    assert len(renamed) == len(sd)
    assert torch.equal(renamed["blk.2.attn_q.weight"], sd["encoder.layer.2.attention.self.query.weight"])


def test_llama_gguf_names_match_the_real_smollm2_gguf(smollm2_gguf):
    reader = gguf.GGUFReader(str(smollm2_gguf))
    real = {t.name for t in reader.tensors}
    n_layers = 1 + max(int(n.split(".")[1]) for n in real if n.startswith("blk."))
    hf_names = {"model.embed_tokens.weight", "model.norm.weight"} | {
        f"model.layers.{i}.{p}.weight" for i in range(n_layers) for p in (
            "input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
            "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    renamed = derive.rename_keys({n: torch.zeros(1) for n in hf_names}, "gguf")
    assert set(renamed) == real


@pytest.mark.parametrize("scheme", derive.RENAME_SCHEMES)
def test_every_bert_tensor_gets_a_new_distinct_name(minilm, scheme):
    sd, _ = minilm
    renamed = derive.rename_keys(sd, scheme)
    assert len(renamed) == len(sd)
    assert not set(renamed) & set(sd)
    assert sorted(float(v.sum()) for v in renamed.values()) == sorted(float(v.sum()) for v in sd.values())


def test_fuse_qkv_stacks_q_k_v_rows_in_order(minilm):
    sd, _ = minilm
    fused = derive.fuse_qkv(sd)
    w = fused["encoder.layer.4.attention.self.qkv.weight"]
    b = fused["encoder.layer.4.attention.self.qkv.bias"]
    assert w.shape == (3 * 384, 384) and b.shape == (3 * 384,)
    for i, part in enumerate(("query", "key", "value")):
        assert torch.equal(w[i * 384:(i + 1) * 384], sd[f"encoder.layer.4.attention.self.{part}.weight"])
    assert not any(".attention.self.query." in n for n in fused)
    assert len(fused) == len(sd) - 6 * 4


def test_fuse_gate_up_on_llama_names():
    g = torch.randn(8, 4)
    u = torch.randn(8, 4)
    d = torch.randn(4, 8)
    sd = {"model.layers.0.mlp.gate_proj.weight": g, "model.layers.0.mlp.up_proj.weight": u,
          "model.layers.0.mlp.down_proj.weight": d}
    fused = derive.fuse_gate_up(sd)
    assert set(fused) == {"model.layers.0.mlp.gate_up_proj.weight", "model.layers.0.mlp.down_proj.weight"}
    assert torch.equal(fused["model.layers.0.mlp.gate_up_proj.weight"], torch.cat([g, u]))


def test_transpose_linear_keeps_embeddings_and_transposes_linears(minilm):
    sd, _ = minilm
    t = derive.transpose_linear(sd)
    assert t["encoder.layer.0.intermediate.dense.weight"].shape == (384, 1536)
    assert torch.equal(t["encoder.layer.0.intermediate.dense.weight"].T, sd["encoder.layer.0.intermediate.dense.weight"])
    assert torch.equal(t["embeddings.word_embeddings.weight"], sd["embeddings.word_embeddings.weight"])


@pytest.mark.parametrize("dtype,stored,tol", [("bfloat16", "BF16", 1e-2), ("float16", "F16", 1e-3),
                                               ("float8_e4m3fn", "F8_E4M3", 0.13)])
def test_cast_writes_the_dtype_and_stays_close(minilm, tmp_path, dtype, stored, tol):
    sd, config = minilm
    cast = derive.cast(sd, dtype)
    out = derive.save_checkpoint(cast, config, tmp_path / dtype)
    name = "encoder.layer.1.attention.self.key.weight"
    with open_checkpoint(out) as ck:
        assert ck.tensor(name).dtype == stored
        got = ck.read(name)
    np.testing.assert_array_equal(got, cast[name].float().numpy())
    want = sd[name].numpy()
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert 0 < rel < tol


def test_reshard_round_trips_through_open_checkpoint(minilm, minilm_dir, tmp_path):
    sd, config = minilm
    out = derive.reshard(sd, tmp_path / "sharded", 3, config, minilm_dir)
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert shards == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(sd)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in sd.values())
    with open_checkpoint(out) as ck:
        names = {t.name for t in ck.tensors()}
        assert names == set(sd)
        assert len({t.file for t in ck.tensors()}) == 3
        for name in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight", "pooler.dense.bias"):
            np.testing.assert_array_equal(ck.read(name), sd[name].numpy())


def test_composite_prefixed_and_subfolders_hold_both_sources(composite_minilm_vision,
                                                             composite_minilm_vision_subfolders,
                                                             minilm, minilm_independent_fresh):
    sd, _ = minilm
    other, _ = derive.load_checkpoint(minilm_independent_fresh)
    name = "encoder.layer.2.attention.self.value.weight"
    with open_checkpoint(composite_minilm_vision) as ck:
        names = {t.name for t in ck.tensors()}
        assert names == {f"model.vision_tower.{n}" for n in sd} | {f"model.language_model.{n}" for n in other}
        np.testing.assert_array_equal(ck.read(f"model.vision_tower.{name}"), sd[name].numpy())
        np.testing.assert_array_equal(ck.read(f"model.language_model.{name}"), other[name].numpy())
    with open_checkpoint(composite_minilm_vision_subfolders) as ck:
        names = {t.name for t in ck.tensors()}
        assert names == {f"vision_tower.{n}" for n in sd} | {f"language_model.{n}" for n in other}
        np.testing.assert_array_equal(ck.read(f"vision_tower.{name}"), sd[name].numpy())
