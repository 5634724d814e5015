"""Quantised safetensors layouts read as dequantised [out, in] weights: bit orders checked against known
answers from each format's public definition, scales against transformers' own fp8 dequantiser, and
malformed combinations rejected with one line naming the file and tensor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modelprov.cli.main import app
from modelprov.errors import CheckpointError
from modelprov.reader import open_checkpoint


def _write(folder: Path, tensors: dict[str, torch.Tensor], qcfg: dict | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    config = {"model_type": "llama", **({"quantization_config": qcfg} if qcfg else {})}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _words(*hex_words: int) -> torch.Tensor:
    return torch.tensor(np.array(hex_words, dtype=np.uint32).view(np.int32))


# ---- GPTQ -----------------------------------------------------------------------------------------

GPTQ_CFG = {"quant_method": "gptq", "bits": 4, "group_size": 8, "sym": True, "desc_act": False}


def _gptq_layer(fmt: str) -> dict[str, torch.Tensor]:
    """One 8-output x 8-input layer: qweight word in column o packs inputs 0..7 lowest nibble first."""
    qweight = torch.zeros(1, 8, dtype=torch.int32)
    qweight[0] = _words(*([0x76543210] * 4 + [0xFEDCBA98] * 4))
    # zeros per output, packed along outputs: outputs 0..7 get zero 1..8 (v1 stores zero - 1)
    stored = [z - (1 if fmt == "gptq" else 0) for z in range(1, 9)]
    word = sum(z << (4 * j) for j, z in enumerate(stored))
    return {"layer.qweight": qweight, "layer.qzeros": _words(word).reshape(1, 1),
            "layer.scales": torch.arange(1, 9, dtype=torch.float16).reshape(1, 8) / 4,
            "layer.g_idx": torch.zeros(8, dtype=torch.int32), "layer.bias": torch.ones(8)}


@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
def test_gptq_unpacks_inputs_low_nibble_first_and_applies_the_format_zero_offset(tmp_path, fmt):
    folder = _write(tmp_path / fmt, _gptq_layer(fmt), {**GPTQ_CFG, "checkpoint_format": fmt})
    with open_checkpoint(folder) as ck:
        infos = {t.name: t for t in ck.tensors()}
        assert set(infos) == {"layer.weight", "layer.bias"}  # qzeros, scales, g_idx hidden
        assert infos["layer.weight"].dtype == "GPTQ_INT4" and infos["layer.weight"].shape == (8, 8)
        assert ck.quantisation == "GPTQ_INT4"
        w = ck.read("layer.weight")
    q = np.array([list(range(8))] * 4 + [list(range(8, 16))] * 4, dtype=np.float32)  # [out, in]
    zero = np.arange(1, 9, dtype=np.float32)[:, None]
    scale = np.arange(1, 9, dtype=np.float32)[:, None] / 4
    np.testing.assert_array_equal(w, (q - zero) * scale)


def test_gptq_act_order_groups_follow_g_idx(tmp_path):
    layer = _gptq_layer("gptq_v2")
    layer["layer.scales"] = torch.tensor([[1.0] * 8, [10.0] * 8], dtype=torch.float16)
    layer["layer.qzeros"] = torch.zeros(2, 1, dtype=torch.int32)
    layer["layer.g_idx"] = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0], dtype=torch.int32)
    folder = _write(tmp_path / "act", layer, {**GPTQ_CFG, "desc_act": True, "checkpoint_format": "gptq_v2"})
    with open_checkpoint(folder) as ck:
        w = ck.read("layer.weight")
    np.testing.assert_array_equal(w[0], [0, 1, 20, 3, 40, 5, 60, 7])


def test_gptq_rows_read_in_any_order_match_the_whole_tensor(tmp_path):
    from benchmarks.detection import derive

    gen = torch.Generator().manual_seed(1)
    sd = {"model.layers.0.mlp.down_proj.weight": torch.randn(64, 96, generator=gen)}
    derive.save_quantised(derive.to_gptq(sd, group_size=32, desc_act=True, seed=3), {}, tmp_path / "g")
    with open_checkpoint(tmp_path / "g") as ck:
        whole = ck.read("model.layers.0.mlp.down_proj.weight")
        rows = [63, 0, 5, 5, 17]
        np.testing.assert_array_equal(ck.read_rows("model.layers.0.mlp.down_proj.weight", rows), whole[rows])
        np.testing.assert_array_equal(ck.read_rows("model.layers.0.mlp.down_proj.weight", slice(10, 20)),
                                      whole[10:20])


# ---- AWQ ------------------------------------------------------------------------------------------


def test_awq_undoes_the_interleaved_output_order(tmp_path):
    """AutoAWQ packs outputs [0, 2, 4, 6, 1, 3, 5, 7] into nibbles 0..7; nibble value i lands on output
    AWQ_ORDER[i], so outputs 0..7 read 0, 4, 1, 5, 2, 6, 3, 7."""
    layer = {"layer.qweight": _words(0x76543210).reshape(1, 1).repeat(4, 1),
             "layer.qzeros": _words(0).reshape(1, 1), "layer.scales": torch.ones(1, 8, dtype=torch.float16)}
    folder = _write(tmp_path / "awq", layer, {"quant_method": "awq", "bits": 4, "group_size": 4,
                                              "zero_point": True, "version": "gemm"})
    with open_checkpoint(folder) as ck:
        info = ck.tensor("layer.weight")
        assert (info.dtype, info.shape) == ("AWQ_INT4", (8, 4))
        w = ck.read("layer.weight")
    np.testing.assert_array_equal(w[:, 0], [0, 4, 1, 5, 2, 6, 3, 7])
    assert np.all(w == w[:, :1])


def test_awq_is_told_from_gptq_by_shape_without_a_config(tmp_path):
    layer = {"layer.qweight": torch.zeros(16, 1, dtype=torch.int32), "layer.qzeros": torch.zeros(2, 1, dtype=torch.int32),
             "layer.scales": torch.ones(2, 8, dtype=torch.float16)}
    with open_checkpoint(_write(tmp_path / "nocfg", layer, None)) as ck:
        assert ck.tensor("layer.weight").dtype == "AWQ_INT4"
        assert ck.tensor("layer.weight").shape == (8, 16)


# ---- fp8 / int8 scaled ----------------------------------------------------------------------------


def test_fp8_block_scales_match_transformers_dequantiser(tmp_path):
    from transformers.integrations.finegrained_fp8 import _dequantize_fp8_weight

    gen = torch.Generator().manual_seed(2)
    w = (torch.randn(200, 300, generator=gen) * 3).to(torch.float8_e4m3fn)
    scale_inv = torch.rand(2, 3, generator=gen) + 0.5
    folder = _write(tmp_path / "fp8", {"proj.weight": w, "proj.weight_scale_inv": scale_inv},
                    {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]})
    expected = _dequantize_fp8_weight(w.clone(), scale_inv, [128, 128], torch.float32).numpy()
    with open_checkpoint(folder) as ck:
        assert [t.name for t in ck.tensors()] == ["proj.weight"]
        assert ck.tensor("proj.weight").dtype == "FP8_E4M3_BLOCK"
        np.testing.assert_array_equal(ck.read("proj.weight"), expected)
        np.testing.assert_array_equal(ck.read_rows("proj.weight", [199, 0, 128]), expected[[199, 0, 128]])


@pytest.mark.parametrize("scale_shape,label", [((), "FP8_E4M3_TENSOR"), ((6, 1), "FP8_E4M3_CHANNEL"),
                                               ((6, 2), "FP8_E4M3_GROUP")])
def test_fp8_tensor_channel_and_group_scales(tmp_path, scale_shape, label):
    w = torch.arange(-24, 24, dtype=torch.float32).reshape(6, 8).to(torch.float8_e4m3fn)
    scale = torch.arange(1, 1 + int(np.prod(scale_shape)), dtype=torch.float32).reshape(scale_shape)
    folder = _write(tmp_path / label, {"p.weight": w, "p.weight_scale": scale, "p.input_scale": torch.tensor(1.0)},
                    {"quant_method": "compressed-tensors", "format": "float-quantized"})
    full = scale.reshape(-1, 1) if scale.ndim else scale
    if label.endswith("GROUP"):
        full = scale.repeat_interleave(4, dim=1)
    with open_checkpoint(folder) as ck:
        assert [(t.name, t.dtype) for t in ck.tensors()] == [("p.weight", label)]
        np.testing.assert_array_equal(ck.read("p.weight"), (w.float() * full).numpy())


def test_int8_channel_scale_and_zero_point(tmp_path):
    q = torch.arange(-8, 8, dtype=torch.int8).reshape(2, 8)
    folder = _write(tmp_path / "i8", {"p.weight": q, "p.weight_scale": torch.tensor([[0.5], [2.0]]),
                                       "p.weight_zero_point": torch.tensor([[1.0], [-1.0]])},
                    {"quant_method": "compressed-tensors", "format": "int-quantized"})
    with open_checkpoint(folder) as ck:
        assert ck.tensor("p.weight").dtype == "INT8_CHANNEL"
        w = ck.read("p.weight")
    np.testing.assert_array_equal(w, ((q.float() - torch.tensor([[1.0], [-1.0]])) * torch.tensor([[0.5], [2.0]])).numpy())


def test_compressed_tensors_pack_quantized_int4(tmp_path):
    """compressed-tensors `pack_to_int32`: values + 8, packed along inputs lowest bits first."""
    packed = _words(0x76543210, 0xFEDCBA98).reshape(1, 2)  # one output, inputs 0..15 hold 0..15
    folder = _write(tmp_path / "ct", {"p.weight_packed": packed, "p.weight_scale": torch.tensor([[1.0, 2.0]]),
                                       "p.weight_shape": torch.tensor([1, 16])},
                    {"quant_method": "compressed-tensors", "format": "pack-quantized",
                     "config_groups": {"group_0": {"weights": {"num_bits": 4, "group_size": 8}}}})
    with open_checkpoint(folder) as ck:
        assert [(t.name, t.dtype, t.shape) for t in ck.tensors()] == [("p.weight", "INT4_PACKED", (1, 16))]
        w = ck.read("p.weight")
    expected = (np.arange(16) - 8) * np.repeat([1.0, 2.0], 8)
    np.testing.assert_array_equal(w[0], expected)


def test_plain_fp8_without_scales_is_still_a_plain_tensor(tmp_path):
    w = torch.randn(4, 8).to(torch.float8_e4m3fn)
    with open_checkpoint(_write(tmp_path / "plain", {"p.weight": w}, None)) as ck:
        assert ck.tensor("p.weight").dtype == "F8_E4M3" and ck.quantisation is None
        np.testing.assert_array_equal(ck.read("p.weight"), w.float().numpy())


# ---- malformed ------------------------------------------------------------------------------------


def _missing_qzeros(tmp: Path) -> Path:
    layer = _gptq_layer("gptq")
    del layer["layer.qzeros"]
    return _write(tmp, layer, GPTQ_CFG)


def _bad_block_scale(tmp: Path) -> Path:
    return _write(tmp, {"p.weight": torch.zeros(200, 300).to(torch.float8_e4m3fn),
                        "p.weight_scale_inv": torch.ones(2, 2)}, {"quant_method": "fp8", "weight_block_size": [128, 128]})


def _bad_gptq_scales(tmp: Path) -> Path:
    layer = _gptq_layer("gptq")
    layer["layer.scales"] = torch.ones(1, 4, dtype=torch.float16)
    return _write(tmp, layer, GPTQ_CFG)


def _bad_group_count(tmp: Path) -> Path:
    layer = _gptq_layer("gptq")
    del layer["layer.g_idx"]
    return _write(tmp, layer, {**GPTQ_CFG, "group_size": 2})  # 8 inputs in groups of 2 need 4 scale rows


@pytest.mark.parametrize("build,tensor,words", [
    (_missing_qzeros, "layer.qweight", "no layer.qzeros"),
    (_bad_block_scale, "p.weight_scale_inv", "does not fit weight"),
    (_bad_gptq_scales, "layer.scales", "do not fit qweight"),
    (_bad_group_count, "layer.qweight", "groups"),
])
def test_malformed_quantised_layers_fail_in_one_line(tmp_path, cli, build, tensor, words):
    folder = build(tmp_path / "bad")
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(folder)
    assert f"{tensor!r}" in str(err.value) and words in str(err.value)
    assert str(err.value.path).endswith("model.safetensors")
    result = cli.invoke(app, ["inspect", str(folder)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.safetensors" in lines[0] and tensor in lines[0] and "Traceback" not in result.stderr


# ---- GGUF MoE expert stacks ------------------------------------------------------------------------


def test_gguf_expert_stack_reads_one_expert_per_row(tmp_path):
    """llama.cpp stores MoE experts as one 3-D tensor (`blk.N.ffn_up_exps.weight`, [n_expert, ffn, d] in
    PyTorch order); a row of the 2-D view is one whole expert, dequantised from its own blocks."""
    import gguf
    from gguf.quants import dequantize, quantize

    x = np.random.default_rng(0).standard_normal((4, 6, 64)).astype(np.float32)
    blocks = quantize(x, gguf.GGMLQuantizationType.Q8_0)
    writer = gguf.GGUFWriter(str(tmp_path / "moe.gguf"), "llama")
    writer.add_tensor("blk.0.ffn_up_exps.weight", blocks, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with open_checkpoint(tmp_path / "moe.gguf") as ck:
        info = ck.tensor("blk.0.ffn_up_exps.weight")
        assert (info.shape, info.rows, info.row_length) == ((4, 6, 64), 4, 6 * 64)
        expected = dequantize(blocks, gguf.GGMLQuantizationType.Q8_0)
        np.testing.assert_array_equal(ck.read(info.name), expected)
        np.testing.assert_array_equal(ck.read_rows(info.name, [2]).reshape(6, 64), expected[2])


def test_gptq_bits_come_from_the_zero_packing_without_a_config(tmp_path):
    from benchmarks.detection import derive

    gen = torch.Generator().manual_seed(5)
    sd = {"model.layers.0.mlp.up_proj.weight": torch.randn(32, 64, generator=gen)}
    q = derive.to_gptq(sd, bits=8, group_size=32)
    derive.save_quantised(q, {}, tmp_path / "g8")
    (tmp_path / "g8" / "config.json").write_text("{}")  # no quantization_config
    with open_checkpoint(tmp_path / "g8") as ck:
        assert ck.tensor("model.layers.0.mlp.up_proj.weight").dtype == "GPTQ_INT8"
        w = ck.read("model.layers.0.mlp.up_proj.weight")
    assert np.abs(w - sd["model.layers.0.mlp.up_proj.weight"].numpy()).max() < 0.02


def test_compressed_tensors_weight_shape_trims_the_word_padding(tmp_path):
    """12 inputs pack into 2 words (16 slots); `weight_shape` says the last 4 are padding."""
    packed = _words(0x76543210, 0x00003210).reshape(1, 2)
    cfg = {"quant_method": "compressed-tensors", "format": "pack-quantized",
           "config_groups": {"group_0": {"weights": {"num_bits": 4}}}}
    folder = _write(tmp_path / "pad", {"p.weight_packed": packed, "p.weight_scale": torch.tensor([[1.0]]),
                                        "p.weight_shape": torch.tensor([1, 12])}, cfg)
    with open_checkpoint(folder) as ck:
        assert ck.tensor("p.weight").shape == (1, 12)
        np.testing.assert_array_equal(ck.read("p.weight")[0], np.r_[np.arange(8), np.arange(4)] - 8.0)
    bad = _write(tmp_path / "bad", {"p.weight_packed": packed, "p.weight_scale": torch.tensor([[1.0]]),
                                     "p.weight_shape": torch.tensor([3, 12])}, cfg)
    with pytest.raises(CheckpointError, match="weight_shape"):
        open_checkpoint(bad)
