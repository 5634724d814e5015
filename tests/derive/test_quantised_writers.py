"""The quantising writers produce checkpoints our reader dequantises to within each format's resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.detection import derive
from modelprov.reader import open_checkpoint

LINEARS = ("model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.k_proj.weight")


@pytest.fixture(scope="module")
def sd() -> derive.StateDict:
    """SmolLM2-like widths (576 inputs is not a multiple of 128: partial groups and blocks)."""
    gen = torch.Generator().manual_seed(0)
    return {LINEARS[0]: 0.05 * torch.randn(320, 576, generator=gen),
            LINEARS[1]: 0.05 * torch.randn(192, 576, generator=gen) + 0.01,
            "model.layers.0.input_layernorm.weight": 1 + 0.1 * torch.randn(576, generator=gen),
            "model.embed_tokens.weight": torch.randn(100, 576, generator=gen)}


def _half_step(bits: int) -> float:
    """Largest error in steps: half a step, plus the clamp at the range's end moved by the fp16 rounding of
    the scale (relative 2^-11) over the 2^(bits-1) steps from the zero point to that end."""
    return 0.5 + 2 ** (bits - 1) * 2**-11


def _read_all(folder) -> tuple[dict[str, np.ndarray], dict[str, str], dict]:
    with open_checkpoint(folder) as ck:
        return ({t.name: ck.read(t.name) for t in ck.tensors()}, {t.name: t.dtype for t in ck.tensors()},
                ck.metadata["quantisation"])


def _unchanged(sd, read) -> None:
    for name in ("model.layers.0.input_layernorm.weight", "model.embed_tokens.weight"):
        np.testing.assert_array_equal(read[name], sd[name].numpy())


def test_fp8_block_round_trip_within_e4m3_resolution(sd, tmp_path):
    q = derive.to_fp8_block(sd)
    assert q.quantization_config == {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": [128, 128]}
    assert q.state_dict[LINEARS[0] + "_scale_inv"].shape == (3, 5)  # ceil(320/128), ceil(576/128)
    derive.save_quantised(q, {"model_type": "llama"}, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["quantization_config"]["quant_method"] == "fp8"
    read, dtypes, summary = _read_all(tmp_path / "m")
    assert set(read) == set(sd) and summary["schemes"] == {"FP8_E4M3_BLOCK": 320 * 576 + 192 * 576}
    _unchanged(sd, read)
    for name in LINEARS:
        w = sd[name].numpy()
        scale = q.state_dict[name + "_scale_inv"].numpy().repeat(128, 0).repeat(128, 1)[: w.shape[0], : w.shape[1]]
        # E4M3: 3 mantissa bits (relative half-step 2^-4); subnormal half-step 2^-10 of the block scale
        assert np.all(np.abs(read[name] - w) <= np.abs(w) * 2**-4 + scale * 2**-10 + 1e-9)


def test_int8_compressed_round_trip_within_half_a_step(sd, tmp_path):
    q = derive.to_int8_compressed(sd)
    assert q.quantization_config["format"] == "int-quantized"
    assert q.state_dict[LINEARS[0]].dtype == torch.int8
    derive.save_quantised(q, {}, tmp_path / "m")
    read, dtypes, _ = _read_all(tmp_path / "m")
    _unchanged(sd, read)
    for name in LINEARS:
        step = q.state_dict[name[: -len("weight")] + "weight_scale"].numpy()
        assert dtypes[name] == "INT8_CHANNEL"
        assert np.all(np.abs(read[name] - sd[name].numpy()) <= step / 2 * (1 + 1e-5) + 1e-9)


@pytest.mark.parametrize("kwargs", [
    {}, {"sym": False}, {"checkpoint_format": "gptq_v2", "sym": False}, {"desc_act": True, "seed": 4},
    {"bits": 8, "group_size": 64}, {"bits": 2, "group_size": 64},
])
def test_gptq_round_trip_within_half_a_step(sd, tmp_path, kwargs):
    q = derive.to_gptq(sd, **kwargs)
    bits = kwargs.get("bits", 4)
    cfg = q.quantization_config
    assert cfg["quant_method"] == "gptq" and cfg["bits"] == bits
    assert cfg["checkpoint_format"] == kwargs.get("checkpoint_format", "gptq")
    derive.save_quantised(q, {}, tmp_path / "m")
    read, dtypes, _ = _read_all(tmp_path / "m")
    _unchanged(sd, read)
    for name in LINEARS:
        module = name[: -len(".weight")]
        assert dtypes[name] == f"GPTQ_INT{bits}"
        g_idx = q.state_dict[f"{module}.g_idx"].long()
        step = q.state_dict[f"{module}.scales"].float()[g_idx].T.numpy()  # [out, in]
        err = np.abs(read[name] - sd[name].numpy())
        assert np.all(err <= step * _half_step(bits) + 1e-7)
        assert err.mean() > step.mean() / 20  # really quantised, not copied


def test_gptq_v1_symmetric_zeros_are_stored_minus_one(sd):
    """Real GPTQ v1 4-bit symmetric checkpoints store zero 8 as 7: every qzeros word is 0x77777777."""
    qzeros = derive.to_gptq(sd).state_dict["model.layers.0.mlp.up_proj.qzeros"]
    assert np.all(qzeros.numpy().view(np.uint32) == 0x77777777)
    v2 = derive.to_gptq(sd, checkpoint_format="gptq_v2").state_dict["model.layers.0.mlp.up_proj.qzeros"]
    assert np.all(v2.numpy().view(np.uint32) == 0x88888888)


def test_awq_round_trip_within_half_a_step(sd, tmp_path):
    q = derive.to_awq(sd, group_size=64)
    assert q.quantization_config == {"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": True,
                                     "version": "gemm", "modules_to_not_convert": None}
    assert q.state_dict["model.layers.0.mlp.up_proj.qweight"].shape == (576, 40)
    derive.save_quantised(q, {}, tmp_path / "m")
    read, dtypes, _ = _read_all(tmp_path / "m")
    _unchanged(sd, read)
    for name in LINEARS:
        module = name[: -len(".weight")]
        assert dtypes[name] == "AWQ_INT4"
        step = q.state_dict[f"{module}.scales"].float().repeat_interleave(64, 0).T.numpy()
        err = np.abs(read[name] - sd[name].numpy())
        assert np.all(err <= step * _half_step(4) + 1e-7) and err.mean() > step.mean() / 20


def test_real_minilm_through_awq_stays_correlated_with_its_source(minilm_dir, tmp_path):
    """The real MiniLM weights (not Gaussian noise) survive 4-bit AWQ: each linear weight read back keeps a
    mean-centred correlation above 0.99 with its source, and the untouched tensors are bit-identical."""
    sd, config = derive.load_checkpoint(minilm_dir)
    derive.save_quantised(derive.to_awq(sd, group_size=128), config, tmp_path / "awq", tokenizer_from=minilm_dir)
    with open_checkpoint(tmp_path / "awq") as ck:
        assert ck.quantisation == "AWQ_INT4" and ck.metadata["quantisation"]["weights"] == 37
        assert {t.name for t in ck.tensors()} == set(sd)
        for info in ck.tensors():
            src = sd[info.name].float().numpy().reshape(info.shape)
            got = ck.read(info.name)
            if info.dtype != "AWQ_INT4":
                np.testing.assert_array_equal(got, src)
                continue
            a, b = got.ravel() - got.mean(), src.ravel() - src.mean()
            assert a @ b / np.sqrt((a @ a) * (b @ b)) > 0.99, info.name
