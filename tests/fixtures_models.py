"""Session fixtures that build derived and independent test models from the real small models.

Register in `tests/conftest.py` with ``pytest_plugins = ["tests.fixtures_models"]`` (or import the
fixture functions into a sub-directory's conftest). Each fixture builds lazily, once per session, into
`tmp_path_factory`; all builds are deterministic. They depend on the lead's `minilm_dir` and
`smollm2_gguf` fixtures. Ground truth is in the fixture name: `*_derived_*` really came from the
source, `*_independent_*` really did not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.detection import derive, derive_onnx

FINETUNE_STEPS = 12  # independent from-scratch models: enough real AdamW steps to move every weight
# The derived fine-tune is a real one: a few hundred AdamW steps (short sequences keep it near 100 s on 2 cores).
FINETUNE_DERIVED_STEPS = 300


# ----------------------------------------------------------------------------- MiniLM (BERT) family


@pytest.fixture(scope="session")
def minilm_derived_finetuned(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM fine-tuned with masked-LM (AdamW) on real text; BERT names, no MLM head."""
    return derive.finetune_bert(minilm_dir, tmp_path_factory.mktemp("minilm_ft") / "model",
                                steps=FINETUNE_DERIVED_STEPS, seed=0, seq_len=32, batch=4)


@pytest.fixture(scope="session")
def minilm_derived_renamed_llama(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM with every tensor renamed to Llama-style names (`model.layers.N.self_attn.q_proj…`)."""
    sd, config = derive.load_checkpoint(minilm_dir)
    return derive.save_checkpoint(derive.rename_keys(sd, "llama"), config,
                                  tmp_path_factory.mktemp("minilm_llama_names") / "model", tokenizer_from=minilm_dir)


@pytest.fixture(scope="session")
def minilm_derived_bf16_fused_transposed(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM with fused qkv, linear weights stored in × out, cast to bfloat16, Megatron names."""
    sd, config = derive.load_checkpoint(minilm_dir)
    sd = derive.cast(derive.transpose_linear(derive.rename_keys(derive.fuse_qkv(sd), "megatron")), "bfloat16")
    return derive.save_checkpoint(sd, config, tmp_path_factory.mktemp("minilm_bf16") / "model",
                                  tokenizer_from=minilm_dir)


@pytest.fixture(scope="session")
def minilm_derived_resharded(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM's exact tensors split into 3 shards with a `model.safetensors.index.json`."""
    sd, config = derive.load_checkpoint(minilm_dir)
    return derive.reshard(sd, tmp_path_factory.mktemp("minilm_shards") / "model", 3, config, minilm_dir)


@pytest.fixture(scope="session")
def minilm_independent_fresh(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained model of MiniLM's architecture (seed 1): shares shapes, not weights."""
    return derive.fresh_init(minilm_dir, tmp_path_factory.mktemp("minilm_fresh") / "model", seed=1)


@pytest.fixture(scope="session")
def minilm_independent_trained(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM's architecture trained from scratch (seed 2) on the same text: independent but trained."""
    return derive.train_bert_from_scratch(minilm_dir, tmp_path_factory.mktemp("minilm_scratch") / "model",
                                          seed=2, steps=FINETUNE_STEPS)


@pytest.fixture(scope="session")
def composite_minilm_vision(minilm_dir: Path, minilm_independent_fresh: Path,
                            tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder: MiniLM under `model.vision_tower.` (derived) and an independent BERT under
    `model.language_model.` (not derived)."""
    return derive.composite(minilm_dir, minilm_independent_fresh, tmp_path_factory.mktemp("composite") / "model")


@pytest.fixture(scope="session")
def composite_minilm_vision_subfolders(minilm_dir: Path, minilm_independent_fresh: Path,
                                       tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same as `composite_minilm_vision` as sub-model folders `vision_tower/` and `language_model/`."""
    return derive.composite(minilm_dir, minilm_independent_fresh,
                            tmp_path_factory.mktemp("composite_sub") / "model", layout="subfolders")


# ---------------------------------------------------------------------------- SmolLM2 (Llama) family


@pytest.fixture(scope="session")
def smollm2_hf_dir(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct as an HF-Llama safetensors checkpoint (dequantised Q4_1, rotary layout
    restored, tokenizer.json). The source reference for every Llama-family case."""
    return derive.gguf_to_hf_llama(smollm2_gguf, tmp_path_factory.mktemp("smollm2_hf") / "model")


@pytest.fixture(scope="session")
def smollm2_independent_small(smollm2_hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shrunk SmolLM2-architecture Llama (same tokenizer, GQA, rope) initialised from seed 3."""
    config = derive.small_llama_config(derive.read_config(smollm2_hf_dir))
    cfg_dir = derive.config_folder(config, tmp_path_factory.mktemp("small_llama_cfg") / "config", smollm2_hf_dir)
    return derive.fresh_init(cfg_dir, tmp_path_factory.mktemp("small_llama") / "model", seed=3)


# -------------------------------------------------------------------- harder derived cases (lazy)


@pytest.fixture(scope="session")
def minilm_derived_permuted(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM with MLP neurons, heads and the residual stream permuted: same function, no tensor in
    its original order (matching must be permutation-invariant)."""
    sd, config = derive.load_checkpoint(minilm_dir)
    sd = derive.permute_residual(derive.permute_heads(derive.permute_mlp_neurons(sd, 11), 12, config), 13)
    return derive.save_checkpoint(sd, config, tmp_path_factory.mktemp("minilm_perm") / "model",
                                  tokenizer_from=minilm_dir)


@pytest.fixture(scope="session")
def minilm_derived_pruned_upscaled(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM with MLP width pruned to 75% and depth up-scaled to layers 0-3 + 2-5 (8 layers)."""
    sd, config = derive.load_checkpoint(minilm_dir)
    sd = derive.upscale_depth(derive.prune_mlp_width(sd, 0.75, 14), [(0, 4), (2, 6)])
    return derive.save_checkpoint(sd, derive.fit_config(sd, config),
                                  tmp_path_factory.mktemp("minilm_pruned") / "model", tokenizer_from=minilm_dir)


@pytest.fixture(scope="session")
def minilm_derived_gguf_q8_0(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM as a Q8_0 GGUF file (llama.cpp BERT names), written by gguf.GGUFWriter."""
    return derive.to_gguf(minilm_dir, tmp_path_factory.mktemp("minilm_gguf") / "minilm.Q8_0.gguf", "Q8_0")


@pytest.fixture(scope="session")
def smollm2_derived_rotated(smollm2_hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 with norm gains folded and the residual stream rotated by a random orthogonal matrix,
    saved as bfloat16: same function, no row or column of any matrix kept."""
    sd, config = derive.load_checkpoint(smollm2_hf_dir)
    sd = derive.cast(derive.rotate_residual(sd, 21), "bfloat16")
    return derive.save_checkpoint(sd, derive.fit_config(sd, config),
                                  tmp_path_factory.mktemp("smollm2_rot") / "model", tokenizer_from=smollm2_hf_dir)


@pytest.fixture(scope="session")
def smollm2_derived_gguf_q4_0(smollm2_hf_dir: Path, smollm2_gguf: Path,
                              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 re-quantised to Q4_0 GGUF (llama.cpp names and q/k permutation, SmolLM2's tokenizer metadata)."""
    return derive.to_gguf(smollm2_hf_dir, tmp_path_factory.mktemp("smollm2_gguf") / "smollm2.Q4_0.gguf", "Q4_0",
                          tokenizer_gguf=smollm2_gguf)


# ----------------------------------------------------------------------------- ONNX (issue 14)
# Two real exports of MiniLM (legacy TorchScript and dynamo exporter); the other variants are cheap graph
# rewrites of the legacy export (seconds), so the session pays for three exports in all.


@pytest.fixture(scope="session")
def minilm_onnx_legacy(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM exported by torch.onnx's legacy exporter: weights embedded, MatMul weights `onnx::MatMul_<n>`
    [in, out], node names `/encoder/layer.0/attention/self/query/MatMul`; tokenizer files beside it."""
    return derive_onnx.export_onnx(minilm_dir, tmp_path_factory.mktemp("onnx_legacy") / "model")


@pytest.fixture(scope="session")
def minilm_onnx_dynamo(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM exported by the dynamo exporter: weights `val_<n>`, module paths only in node metadata, all
    tensors in the external data file `model.onnx.data`."""
    return derive_onnx.export_onnx(minilm_dir, tmp_path_factory.mktemp("onnx_dynamo") / "model", exporter="dynamo")


@pytest.fixture(scope="session")
def minilm_onnx_variants(minilm_onnx_legacy: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Rewrites of the legacy export: `cast_mul` (INT8 → Cast → Mul, per column and per row), `qdq`
    (DequantizeLinear per axis), `gemm` (Gemm, transB 1 and 0), `external` (weights in `model.onnx_data`),
    `anonymous` (no initialiser, node or metadata names), `dynamic_int8` (onnxruntime's quantize_dynamic) and
    `presliced` (the position table constant-folded to its first 64 rows, [1, 64, 384])."""
    root = tmp_path_factory.mktemp("onnx_variants")
    out = {
        "cast_mul": derive_onnx.rewrite(minilm_onnx_legacy, root / "cast_mul", derive_onnx.cast_mul_int8),
        "qdq": derive_onnx.rewrite(minilm_onnx_legacy, root / "qdq", derive_onnx.qdq_int8),
        "gemm": derive_onnx.rewrite(minilm_onnx_legacy, root / "gemm", derive_onnx.gemm),
        "external": derive_onnx.rewrite(minilm_onnx_legacy, root / "external", lambda model: None,
                                        external="model.onnx_data"),
        "anonymous": derive_onnx.rewrite(minilm_onnx_legacy, root / "anonymous", derive_onnx.anonymise),
        "dynamic_int8": derive_onnx.quantize_dynamic(minilm_onnx_legacy, root / "dynamic_int8"),
        "presliced": derive_onnx.rewrite(minilm_onnx_legacy, root / "presliced", derive_onnx.preslice_positions),
    }
    return out


@pytest.fixture(scope="session")
def minilm_onnx_independent(minilm_independent_fresh: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX export (legacy exporter) of an untrained model of MiniLM's architecture: not derived."""
    return derive_onnx.export_onnx(minilm_independent_fresh, tmp_path_factory.mktemp("onnx_fresh") / "model")
