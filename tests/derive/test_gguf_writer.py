"""`to_gguf` writes real GGUF files: gguf's reader sees the types asked for, values survive quantisation,
and a Llama round trip through `gguf_to_hf_llama` gives the same model back."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from gguf.quants import dequantize

from benchmarks.detection import derive

TINY_LLAMA = derive.TINY_LLAMA_CONFIG


def _read(path):
    reader = gguf.GGUFReader(str(path))
    return reader, {t.name: t for t in reader.tensors}


@pytest.mark.parametrize("qtype,tol", [("Q8_0", 0.01), ("Q4_0", 0.15), ("Q4_1", 0.1), ("F16", 1e-3)])
def test_bert_gguf_has_the_asked_types_and_close_values(minilm_dir, tmp_path, qtype, tol):
    sd, _ = derive.load_checkpoint(minilm_dir)
    path = derive.to_gguf(minilm_dir, tmp_path / f"m.{qtype}.gguf", qtype)
    reader, tensors = _read(path)
    assert reader.fields["general.architecture"].contents() == "bert"
    assert reader.fields["bert.block_count"].contents() == 6
    assert reader.fields["general.file_type"].contents() == int(gguf.LlamaFileType[f"MOSTLY_{qtype}"])
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == 30522 and tokens[101] == "[CLS]"
    q = tensors["blk.3.ffn_up.weight"]
    assert q.tensor_type.name == qtype
    assert tensors["blk.3.ffn_up.bias"].tensor_type.name == "F32"
    expected_table = "Q8_0" if qtype.startswith("Q4") else qtype
    assert tensors["token_embd.weight"].tensor_type.name == expected_table
    got = dequantize(q.data, q.tensor_type).reshape(1536, 384)
    want = sd["encoder.layer.3.intermediate.dense.weight"].numpy()
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert 0 < rel < tol


def test_llama_gguf_round_trip_restores_rotary_layout(tmp_path):
    sd = derive.random_llama()
    path = derive.to_gguf(sd, tmp_path / "tiny.gguf", "Q8_0", TINY_LLAMA)
    reader, tensors = _read(path)
    assert reader.fields["llama.attention.head_count_kv"].contents() == 2
    assert tensors["blk.0.attn_q.weight"].tensor_type.name == "Q8_0"
    stored_q = dequantize(tensors["blk.0.attn_q.weight"].data, gguf.GGMLQuantizationType.Q8_0).reshape(64, 64)
    # Stored in llama.cpp's interleaved layout, not HF's.
    hf_q = sd["model.layers.0.self_attn.q_proj.weight"].numpy()
    assert np.abs(stored_q - hf_q).max() > 10 * np.abs(stored_q - derive.llama_rope_permute(
        torch.from_numpy(hf_q), 4).numpy()).max()
    back_dir = derive.gguf_to_hf_llama(path, tmp_path / "back")
    back, config = derive.load_checkpoint(back_dir)
    assert set(back) == set(sd)
    for name in sd:
        err = float((back[name] - sd[name]).abs().max())
        assert err <= 0.01 * float(sd[name].abs().max()) + 1e-6, name
    ids = torch.tensor([[1, 5, 77, 300, 12, 9]])
    with torch.no_grad():
        a = derive.build_model(TINY_LLAMA, sd)(input_ids=ids).logits
        b = derive.build_model(config, back)(input_ids=ids).logits
    assert float((a - b).abs().max()) < 0.05 * float(a.abs().max())


def test_types_without_an_encoder_are_refused_clearly(minilm_dir, tmp_path):
    """Q4_K and Q6_K have the kit's encoders (tests/derive/test_kquants.py); Q5_K and the i-quants do not."""
    with pytest.raises(NotImplementedError, match="Q5_K"):
        derive.to_gguf(minilm_dir, tmp_path / "m.gguf", "Q5_K")
    assert not (tmp_path / "m.gguf").exists()


def test_fake_int8_is_per_row_absmax(minilm_dir):
    sd, _ = derive.load_checkpoint(minilm_dir)
    q = derive.fake_int8(sd)
    w = sd["encoder.layer.0.attention.self.query.weight"]
    got = q["encoder.layer.0.attention.self.query.weight"]
    steps = got / (w.abs().amax(dim=1, keepdim=True) / 127)
    assert torch.allclose(steps, steps.round(), atol=1e-3)  # on each row's int8 grid
    assert 0 < float((got - w).abs().max()) <= float(w.abs().max()) / 254 + 1e-7
    assert torch.equal(q["encoder.layer.0.attention.self.query.bias"], sd["encoder.layer.0.attention.self.query.bias"])
