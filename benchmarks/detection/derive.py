"""Build derived and independent test models from the real small models (MiniLM, SmolLM2).

Every builder writes a checkpoint folder (``model.safetensors`` + ``config.json``, tokenizer files
copied when the source has them) and returns its path; every state-dict transformation is a pure
function ``StateDict -> StateDict`` so they compose. Everything is deterministic given a seed.
The weight-matching tests and the detection benchmark use these as ground truth: a *derived* model
really was made from its source (fine-tuned, renamed, re-quantised, permuted…), an *independent* one
really was not (fresh init, trained from scratch with another seed).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

StateDict = dict[str, torch.Tensor]
PathLike = str | os.PathLike[str]

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
    "merges.txt", "vocab.json", "tokenizer.model", "chat_template.jinja",
)

__all__ = [
    "StateDict",
    "RENAME_SCHEMES",
    "MOE_NAMINGS",
    "GGUF_QTYPES",
    "TINY_LLAMA_CONFIG",
    "read_config",
    "load_checkpoint",
    "save_checkpoint",
    "config_folder",
    "reshard",
    "training_texts",
    "build_model",
    "fresh_init",
    "masked_lm_loss",
    "causal_lm_loss",
    "finetune_bert",
    "finetune_causal_lm",
    "distill",
    "add_rotary_buffers",
    "train_bert_from_scratch",
    "train_from_scratch",
    "small_llama_config",
    "llama_rope_permute",
    "llama_rope_unpermute",
    "rope_permute_qk",
    "gguf_tensors",
    "gguf_to_hf_llama",
    "rename_keys",
    "cast",
    "is_linear_weight",
    "transpose_linear",
    "fuse_qkv",
    "fuse_gate_up",
    "composite",
    "family",
    "layer_count",
    "permute_mlp_neurons",
    "permute_heads",
    "permute_residual",
    "residual_permutation",
    "untie_embeddings",
    "fold_norm_gains",
    "random_orthogonal",
    "rotate_residual",
    "fit_config",
    "upscale_depth",
    "drop_layers",
    "prune_mlp_width",
    "prune_heads",
    "extend_vocab",
    "reduce_vocab",
    "extend_tokenizer",
    "reduce_tokenizer",
    "upcycle_moe",
    "fake_int8",
    "QuantisedStateDict",
    "save_quantised",
    "to_fp8_block",
    "to_int8_compressed",
    "to_gptq",
    "to_awq",
    "to_gguf",
    "quantize_q6_k",
    "quantize_q4_k",
    "K_QUANT_FALLBACK",
    "random_llama",
]


# --------------------------------------------------------------------------------------------- I/O


@contextmanager
def _building(out_dir: PathLike) -> Iterator[Path]:
    """A scratch folder beside `out_dir` that replaces it only if the block succeeds (no half-built cases)."""
    target = Path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield scratch
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def read_config(src_dir: PathLike) -> dict[str, Any]:
    """The folder's `config.json` as a dict (empty if there is none)."""
    path = Path(src_dir) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_checkpoint(src_dir: PathLike) -> tuple[StateDict, dict[str, Any]]:
    """All tensors of a safetensors folder (single file or shards) and its config.

    BERT's non-parameter buffer `embeddings.position_ids` is dropped: it is not a weight.
    """
    src = Path(src_dir)
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{src}: no *.safetensors files")
    sd: StateDict = {}
    for f in files:
        sd.update(load_file(str(f)))
    sd.pop("embeddings.position_ids", None)
    return sd, read_config(src)


def _contiguous_untied(sd: StateDict) -> StateDict:
    """Safetensors refuses shared storage; give every tensor its own contiguous memory."""
    seen: set[int] = set()
    out: StateDict = {}
    for name, t in sd.items():
        t = t.detach().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _copy_tokenizer(src_dir: PathLike | None, dst: Path) -> None:
    if src_dir is None:
        return
    for name in TOKENIZER_FILES:
        f = Path(src_dir) / name
        if f.is_file():
            shutil.copyfile(f, dst / name)


def _write_config(config: dict[str, Any], dst: Path) -> None:
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_checkpoint(sd: StateDict, config: dict[str, Any], out_dir: PathLike, *,
                    tokenizer_from: PathLike | None = None, n_shards: int = 1,
                    metadata: dict[str, str] | None = None) -> Path:
    """Write `sd` as safetensors (sharded with an index when `n_shards` > 1) plus config.json."""
    with _building(out_dir) as dst:
        _write_safetensors(sd, dst, n_shards, metadata)
        _write_config(config, dst)
        _copy_tokenizer(tokenizer_from, dst)
    return Path(out_dir)


def _write_safetensors(sd: StateDict, dst: Path, n_shards: int, metadata: dict[str, str] | None) -> None:
    sd = _contiguous_untied(sd)
    meta = {"format": "pt", **(metadata or {})}
    if n_shards <= 1:
        save_file(sd, str(dst / "model.safetensors"), metadata=meta)
        return
    names = list(sd)
    sizes = [sd[n].numel() * sd[n].element_size() for n in names]
    total = sum(sizes)
    # Greedy split in storage order into n_shards runs of roughly equal bytes (as save_pretrained does).
    bounds, acc, shard = [0] * len(names), 0, 0
    for i, size in enumerate(sizes):
        if shard < n_shards - 1 and acc >= total * (shard + 1) / n_shards:
            shard += 1
        bounds[i] = shard
        acc += size
    n_used = max(bounds) + 1
    weight_map: dict[str, str] = {}
    for s in range(n_used):
        fname = f"model-{s + 1:05d}-of-{n_used:05d}.safetensors"
        part = {n: sd[n] for n, b in zip(names, bounds) if b == s}
        save_file(part, str(dst / fname), metadata=meta)
        weight_map.update({n: fname for n in part})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def config_folder(config: dict[str, Any], out_dir: PathLike, tokenizer_from: PathLike | None = None) -> Path:
    """A folder with only config.json (and tokenizer files): the input `fresh_init`/`train_from_scratch` take."""
    with _building(out_dir) as dst:
        _write_config(config, dst)
        _copy_tokenizer(tokenizer_from, dst)
    return Path(out_dir)


def reshard(sd: StateDict, out_dir: PathLike, n_shards: int, config: dict[str, Any] | None = None,
            tokenizer_from: PathLike | None = None) -> Path:
    """Write `sd` as `model-0000x-of-0000n.safetensors` shards + `model.safetensors.index.json`."""
    return save_checkpoint(sd, config or {}, out_dir, tokenizer_from=tokenizer_from, n_shards=n_shards)


# ------------------------------------------------------------------------------------ training text


def training_texts() -> list[str]:
    """Real English prose available offline, in a fixed order: the Python language reference topics
    (`pydoc_data`) and the docstrings of a fixed list of standard-library modules."""
    import importlib
    import inspect
    import warnings

    from pydoc_data.topics import topics

    texts = [topics[k] for k in sorted(topics)]
    for mod_name in _DOC_MODULES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        doc = inspect.getdoc(mod)
        if doc:
            texts.append(doc)
        for name, obj in sorted(vars(mod).items()):
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # typing.io / typing.re deprecation on attribute access
                doc = inspect.getdoc(obj)
            if doc and len(doc) > 200:
                texts.append(doc)
    return [t for t in texts if t.strip()]


_DOC_MODULES = (
    "argparse", "asyncio", "bisect", "calendar", "collections", "configparser", "contextlib", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "doctest", "email.message", "enum", "fractions",
    "functools", "gettext", "heapq", "html.parser", "http.client", "inspect", "ipaddress", "itertools",
    "json", "logging", "mailbox", "optparse", "pathlib", "pdb", "pickle", "pydoc", "queue", "random",
    "re", "sched", "shutil", "smtplib", "socket", "sqlite3", "statistics", "string", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "trace", "turtle", "typing",
    "unittest", "urllib.request", "uuid", "warnings", "xml.etree.ElementTree", "zipfile",
)


def _token_stream(tokenizer_path: Path, held_out: bool) -> list[int]:
    """All training texts tokenized and concatenated; every 10th text is held out for evaluation."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.no_truncation()
    texts = [t for i, t in enumerate(training_texts()) if (i % 10 == 9) == held_out]
    ids: list[int] = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        ids.extend(enc.ids)
    return ids


def _blocks(ids: list[int], length: int) -> torch.Tensor:
    n = len(ids) // length
    return torch.tensor(ids[: n * length], dtype=torch.long).view(n, length)


# --------------------------------------------------------------------------------- model building


def _is_bert(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "bert"


def _hf_config(config: dict[str, Any]):
    from transformers import BertConfig, LlamaConfig

    kind = config.get("model_type")
    if kind == "bert":
        return BertConfig(**{k: v for k, v in config.items() if k != "model_type"})
    if kind == "llama":
        return LlamaConfig(**{k: v for k, v in config.items() if k != "model_type"})
    raise ValueError(f"no test-model builder for model_type {kind!r}")


def _instantiate(config: dict[str, Any], hf, sd: StateDict | None, masked_lm: bool) -> torch.nn.Module:
    from transformers import BertForMaskedLM, BertModel, LlamaForCausalLM
    from transformers.models.bert.modeling_bert import BertPooler

    if not _is_bert(config):
        return LlamaForCausalLM(hf)
    with_pooler = sd is None or "pooler.dense.weight" in sd
    if not masked_lm:
        return BertModel(hf, add_pooling_layer=with_pooler)
    model = BertForMaskedLM(hf)
    if with_pooler:  # kept so the saved checkpoint has the source's full tensor set (MLM leaves it alone)
        model.bert.pooler = BertPooler(hf)
        model._init_weights(model.bert.pooler.dense)
    return model


def build_model(config: dict[str, Any], sd: StateDict | None = None, *, masked_lm: bool = False,
                seed: int = 0) -> torch.nn.Module:
    """A transformers model for `config` (BertModel / BertForMaskedLM / LlamaForCausalLM) in eval mode,
    freshly initialised from `seed`, then loaded with `sd` if given (strictly for the encoder)."""
    from contextlib import nullcontext

    from transformers.initialization import no_init_weights

    hf = _hf_config(config)
    hf._attn_implementation = "eager"
    torch.manual_seed(seed)
    # Random initialisation of a model about to be overwritten is wasted time (seconds for SmolLM2).
    with no_init_weights() if sd is not None and not masked_lm else nullcontext():
        model = _instantiate(config, hf, sd, masked_lm)
    if sd is not None:
        target = model.bert if masked_lm and _is_bert(config) else model
        head = {k: v for k, v in sd.items() if k.startswith("cls.")} if masked_lm else {}
        body = {k.removeprefix("bert."): v for k, v in sd.items() if not k.startswith("cls.")}
        body.pop("embeddings.position_ids", None)
        missing, unexpected = target.load_state_dict(body, strict=False)
        missing = [m for m in missing if m != "embeddings.position_ids"
                   and not (m == "lm_head.weight" and hf.tie_word_embeddings)]
        if missing or unexpected:
            raise ValueError(f"state dict does not fit {type(target).__name__}: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        if head:
            model.load_state_dict({**{f"bert.{k}": v for k, v in body.items()}, **head}, strict=False)
        if not _is_bert(config) and hf.tie_word_embeddings:
            model.tie_weights()
    return model.eval()


def _model_state_dict(model: torch.nn.Module, config: dict[str, Any], keep_head: bool) -> StateDict:
    """Parameters under the source's own names (no `bert.` prefix, no MLM head unless asked)."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if k != "embeddings.position_ids"}
    sd.pop("bert.embeddings.position_ids", None)
    if _is_bert(config) and any(k.startswith("bert.") for k in sd):
        head = {k: v for k, v in sd.items() if k.startswith("cls.")}
        sd = {k.removeprefix("bert."): v for k, v in sd.items() if k.startswith("bert.")}
        if keep_head:
            sd.update({k: v for k, v in head.items() if k != "cls.predictions.decoder.weight"})
    if config.get("tie_word_embeddings") and "lm_head.weight" in sd:
        del sd["lm_head.weight"]
    return sd


def fresh_init(config_dir: PathLike, out_dir: PathLike, seed: int) -> Path:
    """An untrained model of the same architecture as `config_dir`, initialised from `seed`."""
    config = read_config(config_dir)
    model = build_model(config, seed=seed)
    return save_checkpoint(_model_state_dict(model, config, keep_head=False), config, out_dir,
                           tokenizer_from=config_dir, metadata={"derive": f"fresh_init seed={seed}"})


def _mask_tokens(ids: torch.Tensor, gen: torch.Generator, vocab: int, mask_id: int,
                 special: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 15% masking (80% [MASK], 10% random, 10% kept); returns inputs and the masked positions."""
    prob = torch.rand(ids.shape, generator=gen)
    chosen = prob < 0.15
    for s in special:
        chosen &= ids != s
    inputs = ids.clone()
    action = torch.rand(ids.shape, generator=gen)
    inputs[chosen & (action < 0.8)] = mask_id
    rand = chosen & (action >= 0.8) & (action < 0.9)
    inputs[rand] = torch.randint(vocab, ids.shape, generator=gen)[rand]
    return inputs, chosen


def _bert_batches(src_dir: Path, seq_len: int, held_out: bool) -> tuple[torch.Tensor, dict[str, int]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(src_dir / "tokenizer.json"))
    cls_id, sep_id, mask_id = (tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[MASK]"))
    body = _blocks(_token_stream(src_dir / "tokenizer.json", held_out), seq_len - 2)
    n = body.shape[0]
    blocks = torch.cat([torch.full((n, 1), cls_id), body, torch.full((n, 1), sep_id)], dim=1)
    return blocks, {"cls": cls_id, "sep": sep_id, "mask": mask_id}


def _mlm_step_loss(model, blocks: torch.Tensor, gen: torch.Generator, ids: dict[str, int]) -> torch.Tensor:
    inputs, chosen = _mask_tokens(blocks, gen, model.config.vocab_size, ids["mask"], (ids["cls"], ids["sep"]))
    hidden = model.bert(input_ids=inputs).last_hidden_state
    # Only masked positions go through the vocabulary head: a sixth of the head's cost.
    logits = model.cls(hidden[chosen])
    return torch.nn.functional.cross_entropy(logits, blocks[chosen])


def masked_lm_loss(model, tokenizer_dir: PathLike, *, seq_len: int = 64, n_blocks: int = 64,
                   seed: int = 1234) -> float:
    """Mean masked-LM loss of a `BertForMaskedLM` on held-out text with fixed masks (lower is better)."""
    blocks, ids = _bert_batches(Path(tokenizer_dir), seq_len, held_out=True)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.no_grad():
        return float(_mlm_step_loss(model, blocks[:n_blocks], gen, ids))


def causal_lm_loss(model, tokenizer_dir: PathLike, *, seq_len: int = 64, n_blocks: int = 32) -> float:
    """Mean next-token loss of a causal LM on held-out text."""
    blocks = _blocks(_token_stream(Path(tokenizer_dir) / "tokenizer.json", held_out=True), seq_len)[:n_blocks]
    model.eval()
    with torch.no_grad():
        return float(model(input_ids=blocks, labels=blocks).loss)


def _train(model: torch.nn.Module, blocks: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
           steps: int, lr: float, batch: int, seed: int) -> list[float]:
    """AdamW with linear warm-up (a tenth of the steps, at most 10) and cosine decay over seeded random
    batches; returns the step losses."""
    warmup = max(1, min(10, steps // 10))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: deterministic, and far faster on a shared box
    try:
        return _train_loop(model, blocks, loss_fn, steps, lr, batch, seed, warmup)
    finally:
        torch.set_num_threads(threads)  # leave the caller's process as it was


def _train_loop(model: torch.nn.Module, blocks: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                steps: int, lr: float, batch: int, seed: int, warmup: int) -> list[float]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        idx = torch.randint(blocks.shape[0], (batch,), generator=gen)
        loss = loss_fn(blocks[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _train_bert(model, src_dir: Path, out_dir: PathLike, config: dict[str, Any], *, steps: int, lr: float,
                seed: int, seq_len: int, batch: int, keep_head: bool, note: str) -> Path:
    blocks, ids = _bert_batches(src_dir, seq_len, held_out=False)
    gen = torch.Generator().manual_seed(seed + 1)
    losses = _train(model, blocks, lambda b: _mlm_step_loss(model, b, gen, ids), steps, lr, batch, seed)
    sd = _model_state_dict(model, config, keep_head=keep_head)
    meta = {"derive": note, "first_losses": json.dumps(losses[:5]), "last_losses": json.dumps(losses[-5:])}
    return save_checkpoint(sd, config, out_dir, tokenizer_from=src_dir, metadata=meta)


def finetune_bert(src_dir: PathLike, out_dir: PathLike, steps: int = 40, lr: float = 2e-4, seed: int = 0,
                  *, seq_len: int = 64, batch: int = 8, keep_head: bool = False) -> Path:
    """Fine-tune a BERT checkpoint with masked-LM on real text (AdamW, real optimizer steps).

    The MLM head (absent from sentence-embedding checkpoints like MiniLM) starts from `seed`; with
    `keep_head` its tensors (`cls.predictions.*`) are saved too, so the MLM loss can be measured later.
    """
    src = Path(src_dir)
    sd, config = load_checkpoint(src)
    model = build_model(config, sd, masked_lm=True, seed=seed)
    return _train_bert(model, src, out_dir, config, steps=steps, lr=lr, seed=seed, seq_len=seq_len,
                       batch=batch, keep_head=keep_head, note=f"finetune_bert steps={steps} lr={lr} seed={seed}")


def train_bert_from_scratch(config_dir: PathLike, out_dir: PathLike, seed: int, steps: int = 40,
                            lr: float = 5e-4, *, seq_len: int = 64, batch: int = 8) -> Path:
    """An *independent* BERT of the same architecture: fresh init from `seed`, then masked-LM training."""
    src = Path(config_dir)
    config = read_config(src)
    model = build_model(config, masked_lm=True, seed=seed)
    return _train_bert(model, src, out_dir, config, steps=steps, lr=lr, seed=seed, seq_len=seq_len,
                       batch=batch, keep_head=False, note=f"train_bert_from_scratch steps={steps} seed={seed}")


def train_from_scratch(config_dir: PathLike, out_dir: PathLike, seed: int, steps: int = 40,
                       lr: float = 1e-3, *, seq_len: int = 64, batch: int = 8) -> Path:
    """An *independent* model of `config_dir`'s architecture trained from `seed` (MLM for BERT,
    next-token for Llama, on the same real text)."""
    src = Path(config_dir)
    config = read_config(src)
    if _is_bert(config):
        return train_bert_from_scratch(src, out_dir, seed, steps, lr, seq_len=seq_len, batch=batch)
    return _train_causal(build_model(config, seed=seed), src, out_dir, config, steps=steps, lr=lr, seed=seed,
                         seq_len=seq_len, batch=batch, note=f"train_from_scratch steps={steps} seed={seed}")


def distill(teacher_dir: PathLike, out_dir: PathLike, seed: int, steps: int = 150, lr: float = 1e-3, *,
            seq_len: int = 64, batch: int = 8) -> Path:
    """A student of the teacher's architecture, freshly initialised from `seed` and trained only to match the
    teacher's hidden states after every layer (MSE) on random token sequences (a data-free distillation that
    reaches the whole vocabulary): no teacher weight is copied; only its outputs are imitated."""
    src = Path(teacher_dir)
    sd, config = load_checkpoint(src)
    teacher = build_model(config, {k: v.float() for k, v in sd.items()})
    student = build_model(config, seed=seed)
    for p in teacher.parameters():
        p.requires_grad_(False)

    def hidden(model, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (model if _is_bert(config) else model.model)(input_ids=b, output_hidden_states=True).hidden_states[1:]

    def loss(b: torch.Tensor) -> torch.Tensor:
        pairs = list(zip(hidden(student, b), hidden(teacher, b)))
        return sum(torch.nn.functional.mse_loss(s, t) for s, t in pairs) / len(pairs)

    gen = torch.Generator().manual_seed(seed)
    vocab = int(config["vocab_size"])
    blocks = torch.randint(min(1000, vocab // 4), vocab, (steps * batch, seq_len), generator=gen)
    losses = _train(student, blocks, loss, steps, lr, batch, seed)
    meta = {"derive": f"distill steps={steps} seed={seed} (every layer's hidden states, random tokens)",
            "first_losses": json.dumps(losses[:5]), "last_losses": json.dumps(losses[-5:])}
    return save_checkpoint(cast(_model_state_dict(student, config, keep_head=False), next(iter(sd.values())).dtype),
                           config, out_dir, tokenizer_from=src, metadata=meta)


def add_rotary_buffers(sd: StateDict, config: dict[str, Any]) -> StateDict:
    """Each Llama layer's `self_attn.rotary_emb.inv_freq` buffer, as older Hugging Face checkpoints ship it: a
    function of head_dim and rope_theta only, identical in every model of the configuration."""
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    theta = float(config.get("rope_theta", 10000.0))
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    out = dict(sd)
    for name in sd:
        m = re.match(r"(.*layers\.\d+\.self_attn)\.q_proj\.weight$", name)
        if m:
            out[f"{m.group(1)}.rotary_emb.inv_freq"] = inv_freq.clone()
    return out


def finetune_causal_lm(src_dir: PathLike, out_dir: PathLike, steps: int = 10, lr: float = 5e-5, seed: int = 0,
                       *, seq_len: int = 64, batch: int = 4, dtype: torch.dtype | None = None) -> Path:
    """Fine-tune a Llama checkpoint with next-token loss on real text (AdamW, real optimizer steps);
    saved in `dtype` (default: the source's)."""
    src = Path(src_dir)
    sd, config = load_checkpoint(src)
    dtype = dtype or next(iter(sd.values())).dtype
    model = build_model(config, {k: v.float() for k, v in sd.items()})
    return _train_causal(model, src, out_dir, config, steps=steps, lr=lr, seed=seed, seq_len=seq_len,
                         batch=batch, note=f"finetune_causal_lm steps={steps} lr={lr} seed={seed}", dtype=dtype)


def _train_causal(model, src: Path, out_dir: PathLike, config: dict[str, Any], *, steps: int, lr: float,
                  seed: int, seq_len: int, batch: int, note: str, dtype: torch.dtype = torch.float32) -> Path:
    blocks = _blocks(_token_stream(src / "tokenizer.json", held_out=False), seq_len)
    losses = _train(model, blocks, lambda b: model(input_ids=b, labels=b).loss, steps, lr, batch, seed)
    meta = {"derive": note, "first_losses": json.dumps(losses[:5]), "last_losses": json.dumps(losses[-5:])}
    sd = cast(_model_state_dict(model, config, keep_head=False), dtype)
    return save_checkpoint(sd, config, out_dir, tokenizer_from=src, metadata=meta)


def small_llama_config(src_config: dict[str, Any], *, hidden_size: int = 192, num_hidden_layers: int = 4,
                       intermediate_size: int = 512, num_attention_heads: int = 3,
                       num_key_value_heads: int = 1) -> dict[str, Any]:
    """A SmolLM2-architecture Llama config (same vocabulary, rope, norms; GQA) shrunk for fast training."""
    out = dict(src_config)
    out.update(hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
               intermediate_size=intermediate_size, num_attention_heads=num_attention_heads,
               num_key_value_heads=num_key_value_heads, head_dim=hidden_size // num_attention_heads,
               max_position_embeddings=2048)
    return out


# ------------------------------------------------------------------------------------- GGUF → HF


_GGUF_LLAMA_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def llama_rope_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's HF→GGUF row permutation of attn_q/attn_k (`LlamaModel.permute` in
    convert_hf_to_gguf.py): within each head, interleave the two rotary halves."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_permute_qk(sd: StateDict, config: dict[str, Any]) -> StateDict:
    """Every Llama layer's q_proj and k_proj rows in llama.cpp's rotary order (as a GGUF stores them), names kept."""
    heads, kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    out = dict(sd)
    for name, t in sd.items():
        if name.endswith("self_attn.q_proj.weight"):
            out[name] = llama_rope_permute(t, heads)
        elif name.endswith("self_attn.k_proj.weight"):
            out[name] = llama_rope_permute(t, kv)
    return out


def llama_rope_unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Inverse of `llama_rope_permute` (GGUF → HF rotary layout)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_field(reader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.contents()
    return value


def gguf_tensors(gguf_path: PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF file dequantised to float32, in PyTorch order (rows = output features)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(gguf_path))
    out: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        arr = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        shape = tuple(int(d) for d in reversed(t.shape))
        out[t.name] = torch.from_numpy(np.array(arr, dtype=np.float32).reshape(shape))
    return out


def gguf_to_hf_llama(gguf_path: PathLike, out_dir: PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Write a Llama GGUF as an HF-Llama safetensors checkpoint: dequantised, HF names, q/k rotary
    permutation undone, matching config.json and a tokenizer.json converted by transformers."""
    from gguf import GGUFReader

    gguf_path = Path(gguf_path)
    reader = GGUFReader(str(gguf_path))
    arch = _gguf_field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{gguf_path}: architecture {arch!r}, expected 'llama'")
    n_head = int(_gguf_field(reader, "llama.attention.head_count"))
    n_kv = int(_gguf_field(reader, "llama.attention.head_count_kv", n_head))
    hidden = int(_gguf_field(reader, "llama.embedding_length"))
    tensors = gguf_tensors(gguf_path)
    sd: StateDict = {}
    for name, w in tensors.items():
        parts = name.split(".")
        if parts[0] == "blk":
            layer, kind = int(parts[1]), parts[2]
            hf = f"model.layers.{layer}.{_GGUF_LLAMA_NAMES[kind]}.{parts[-1]}"
        else:
            kind = parts[0]
            hf = f"{_GGUF_LLAMA_NAMES[kind]}.{parts[-1]}"
        if kind == "attn_q":
            w = llama_rope_unpermute(w, n_head)
        elif kind == "attn_k":
            w = llama_rope_unpermute(w, n_kv)
        sd[hf] = w.to(dtype)
    vocab = sd["model.embed_tokens.weight"].shape[0]
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": int(_gguf_field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_gguf_field(reader, "llama.block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": hidden // n_head,
        "max_position_embeddings": int(_gguf_field(reader, "llama.context_length", 2048)),
        "rms_norm_eps": float(_gguf_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(_gguf_field(reader, "llama.rope.freq_base", 10000.0)),
        "hidden_act": "silu",
        "tie_word_embeddings": "lm_head.weight" not in sd,
        "bos_token_id": int(_gguf_field(reader, "tokenizer.ggml.bos_token_id", 1)),
        "eos_token_id": int(_gguf_field(reader, "tokenizer.ggml.eos_token_id", 2)),
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    with _building(out_dir) as dst:
        _write_safetensors(sd, dst, 1, {"derive": f"gguf_to_hf_llama {gguf_path.name}"})
        _write_config(config, dst)
        if "tokenizer.ggml.model" in reader.fields:
            _save_gguf_tokenizer(gguf_path, dst)
    return Path(out_dir)


def _save_gguf_tokenizer(gguf_path: Path, dst: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True)
    tok.save_pretrained(str(dst))


# ------------------------------------------------------------------------ state-dict transformations

# Per-layer BERT parameter → name in each scheme ({i} = layer index).
_BERT_LAYER_RENAMES: dict[str, dict[str, str]] = {
    "attention.self.query": {"llama": "self_attn.q_proj", "megatron": "self_attention.query", "gguf": "attn_q"},
    "attention.self.key": {"llama": "self_attn.k_proj", "megatron": "self_attention.key", "gguf": "attn_k"},
    "attention.self.value": {"llama": "self_attn.v_proj", "megatron": "self_attention.value", "gguf": "attn_v"},
    "attention.self.qkv": {"llama": "self_attn.qkv_proj", "megatron": "self_attention.query_key_value",
                           "gguf": "attn_qkv"},
    "attention.output.dense": {"llama": "self_attn.o_proj", "megatron": "self_attention.dense",
                               "gguf": "attn_output"},
    "attention.output.LayerNorm": {"llama": "post_attention_layernorm", "megatron": "post_attention_layernorm",
                                   "gguf": "attn_output_norm"},
    "intermediate.dense": {"llama": "mlp.up_proj", "megatron": "mlp.dense_h_to_4h", "gguf": "ffn_up"},
    "output.dense": {"llama": "mlp.down_proj", "megatron": "mlp.dense_4h_to_h", "gguf": "ffn_down"},
    "output.LayerNorm": {"llama": "post_feedforward_layernorm", "megatron": "post_mlp_layernorm",
                         "gguf": "layer_output_norm"},
}
_BERT_LAYER_PREFIX = {"llama": "model.layers.{i}.", "megatron": "language_model.encoder.layers.{i}.",
                      "gguf": "blk.{i}."}
_BERT_GLOBAL_RENAMES: dict[str, dict[str, str]] = {
    "embeddings.word_embeddings": {"llama": "model.embed_tokens", "megatron": "language_model.embedding.word_embeddings",
                                   "gguf": "token_embd"},
    "embeddings.position_embeddings": {"llama": "model.embed_positions",
                                       "megatron": "language_model.embedding.position_embeddings",
                                       "gguf": "position_embd"},
    "embeddings.token_type_embeddings": {"llama": "model.embed_token_types",
                                         "megatron": "language_model.embedding.tokentype_embeddings",
                                         "gguf": "token_types"},
    "embeddings.LayerNorm": {"llama": "model.embed_norm", "megatron": "language_model.embedding.layernorm",
                             "gguf": "token_embd_norm"},
    "pooler.dense": {"llama": "model.pooler", "megatron": "language_model.pooler.dense", "gguf": "cls"},
}
# HF-Llama parameter → name in each scheme.
_LLAMA_LAYER_RENAMES: dict[str, dict[str, str]] = {
    hf: {"gguf": gg} for gg, hf in _GGUF_LLAMA_NAMES.items() if "." in hf and not hf.startswith("model.")
}
for _hf, _mg in {
    "input_layernorm": "self_attention.linear_qkv.layer_norm",
    "post_attention_layernorm": "mlp.linear_fc1.layer_norm",
    "self_attn.q_proj": "self_attention.linear_q", "self_attn.k_proj": "self_attention.linear_k",
    "self_attn.v_proj": "self_attention.linear_v", "self_attn.qkv_proj": "self_attention.linear_qkv",
    "self_attn.o_proj": "self_attention.linear_proj", "mlp.gate_proj": "mlp.linear_fc1_gate",
    "mlp.up_proj": "mlp.linear_fc1_up", "mlp.gate_up_proj": "mlp.linear_fc1", "mlp.down_proj": "mlp.linear_fc2",
}.items():
    _LLAMA_LAYER_RENAMES.setdefault(_hf, {})["megatron"] = _mg
_LLAMA_LAYER_RENAMES["input_layernorm"]["gguf"] = "attn_norm"
_LLAMA_LAYER_RENAMES["post_attention_layernorm"]["gguf"] = "ffn_norm"
_LLAMA_LAYER_RENAMES["self_attn.qkv_proj"]["gguf"] = "attn_qkv"
_LLAMA_LAYER_RENAMES["mlp.gate_up_proj"] = {**_LLAMA_LAYER_RENAMES["mlp.gate_up_proj"], "gguf": "ffn_gate_up"}
_LLAMA_LAYER_PREFIX = {"gguf": "blk.{i}.", "megatron": "decoder.layers.{i}."}
_LLAMA_GLOBAL_RENAMES = {
    "model.embed_tokens": {"gguf": "token_embd", "megatron": "embedding.word_embeddings"},
    "model.norm": {"gguf": "output_norm", "megatron": "decoder.final_layernorm"},
    "lm_head": {"gguf": "output", "megatron": "output_layer"},
}
RENAME_SCHEMES = ("llama", "megatron", "gguf")


def _leaf(name: str) -> tuple[str, str]:
    stem, _, leaf = name.rpartition(".")
    return stem, leaf


def rename_keys(sd: StateDict, scheme: str) -> StateDict:
    """Rename every tensor to another naming convention without touching values.

    BERT names → "llama" (model.layers.N.self_attn.q_proj…), "megatron" (language_model.encoder.layers…)
    or "gguf" (blk.N.attn_q…); HF-Llama names → "megatron" (decoder.layers.N.self_attention…) or "gguf".
    Unknown names (e.g. `cls.*`) are kept.
    """
    if scheme not in RENAME_SCHEMES:
        raise ValueError(f"unknown naming scheme {scheme!r}; choose from {RENAME_SCHEMES}")
    is_llama = any(k.startswith("model.layers.") or k == "model.embed_tokens.weight" for k in sd)
    layer_re = re.compile(r"^(?:model\.layers|encoder\.layer)\.(\d+)\.(.+)$")
    layer_table, global_table, prefix = (
        (_LLAMA_LAYER_RENAMES, _LLAMA_GLOBAL_RENAMES, _LLAMA_LAYER_PREFIX) if is_llama
        else (_BERT_LAYER_RENAMES, _BERT_GLOBAL_RENAMES, _BERT_LAYER_PREFIX))
    if scheme not in prefix:
        raise ValueError(f"scheme {scheme!r} is not defined for {'Llama' if is_llama else 'BERT'} names")
    out: StateDict = {}
    for name, t in sd.items():
        stem, leaf = _leaf(name)
        m = layer_re.match(stem)
        new = name
        if m and m.group(2) in layer_table and scheme in layer_table[m.group(2)]:
            new = prefix[scheme].format(i=m.group(1)) + layer_table[m.group(2)][scheme] + "." + leaf
        elif stem in global_table and scheme in global_table[stem]:
            new = global_table[stem][scheme] + "." + leaf
        if new in out:
            raise ValueError(f"renaming maps two tensors to {new!r}")
        out[new] = t
    return out


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
    "float8_e4m3fn": torch.float8_e4m3fn, "fp8": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
}


def cast(sd: StateDict, dtype: str | torch.dtype) -> StateDict:
    """Cast every floating-point tensor to `dtype` (bf16, fp16, fp8 e4m3/e5m2 …); integers are kept."""
    target = _DTYPES[dtype] if isinstance(dtype, str) else dtype
    return {k: (v.to(target) if v.is_floating_point() else v) for k, v in sd.items()}


_EMBEDDING_HINTS = ("embed", "embd", "wte", "wpe", "token_types", "position_embd", "lm_head", "output.weight")


def is_linear_weight(name: str, t: torch.Tensor) -> bool:
    """A 2-D `.weight` that is a linear layer's (out × in) matrix, not an embedding table or the LM head."""
    return t.ndim == 2 and name.endswith("weight") and not any(h in name for h in _EMBEDDING_HINTS)


def transpose_linear(sd: StateDict) -> StateDict:
    """Store every linear weight as in × out (GPT-2 Conv1D / JAX style); embeddings are left as they are."""
    return {k: (v.t().contiguous() if is_linear_weight(k, v) else v) for k, v in sd.items()}


# (q, k, v, fused) name fragments for each naming convention.
_QKV_PATTERNS = (
    ("attention.self.query", "attention.self.key", "attention.self.value", "attention.self.qkv"),
    ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.qkv_proj"),
    ("self_attention.query", "self_attention.key", "self_attention.value", "self_attention.query_key_value"),
    ("self_attention.linear_q", "self_attention.linear_k", "self_attention.linear_v", "self_attention.linear_qkv"),
    ("attn_q", "attn_k", "attn_v", "attn_qkv"),
)
_GATE_UP_PATTERNS = (
    ("mlp.gate_proj", "mlp.up_proj", "mlp.gate_up_proj"),
    ("mlp.linear_fc1_gate", "mlp.linear_fc1_up", "mlp.linear_fc1"),
    ("ffn_gate", "ffn_up", "ffn_gate_up"),
)


def _fuse(sd: StateDict, patterns: Sequence[tuple[str, ...]]) -> StateDict:
    """Replace each complete group of sibling tensors by their row-wise concatenation, at the place of
    the group's first member in storage order."""
    group_of: dict[str, tuple[str, list[str]]] = {}
    for name in sd:
        for *parts, fused in patterns:
            if f".{parts[0]}." in f".{name}":
                siblings = [name.replace(parts[0], p, 1) for p in parts]
                if all(s in sd for s in siblings):
                    for s in siblings:
                        group_of[s] = (name.replace(parts[0], fused, 1), siblings)
                break
    out: StateDict = {}
    for name, t in sd.items():
        if name not in group_of:
            out[name] = t
            continue
        fused_name, siblings = group_of[name]
        if fused_name not in out:
            out[fused_name] = torch.cat([sd[s] for s in siblings], dim=0)
    return out


def fuse_qkv(sd: StateDict) -> StateDict:
    """Concatenate each layer's q, k, v weights (and biases) row-wise into one `qkv` tensor."""
    return _fuse(sd, _QKV_PATTERNS)


def fuse_gate_up(sd: StateDict) -> StateDict:
    """Concatenate each Llama-style layer's gate and up projections row-wise into `gate_up_proj` (Phi-3 style)."""
    return _fuse(sd, _GATE_UP_PATTERNS)


# ----------------------------------------------------------------------------------- composites


def composite(vision_src_dir: PathLike, language_src_dir: PathLike, out_dir: PathLike, *,
              layout: str = "prefixed", vision_prefix: str = "model.vision_tower.",
              language_prefix: str = "model.language_model.") -> Path:
    """A model with two sub-components: `vision_src_dir`'s tensors as the vision tower, `language_src_dir`'s
    as the language model.

    layout="prefixed": one folder, tensors prefixed (`model.vision_tower.…`, `model.language_model.…`).
    layout="subfolders": sub-model folders `vision_tower/` and `language_model/` with their own configs.
    """
    v_sd, v_cfg = load_checkpoint(vision_src_dir)
    l_sd, l_cfg = load_checkpoint(language_src_dir)
    config = {"model_type": "composite_test", "architectures": ["CompositeForTesting"],
              "vision_config": v_cfg, "text_config": l_cfg}
    if layout == "prefixed":
        sd = {**{vision_prefix + k: v for k, v in v_sd.items()}, **{language_prefix + k: v for k, v in l_sd.items()}}
        return save_checkpoint(sd, config, out_dir, tokenizer_from=language_src_dir,
                               metadata={"derive": "composite prefixed"})
    if layout != "subfolders":
        raise ValueError(f"unknown composite layout {layout!r}")
    with _building(out_dir) as dst:
        for sub, sd, cfg, tok in (("vision_tower", v_sd, v_cfg, None),
                                  ("language_model", l_sd, l_cfg, language_src_dir)):
            (dst / sub).mkdir()
            _write_safetensors(sd, dst / sub, 1, {"derive": f"composite {sub}"})
            _write_config(cfg, dst / sub)
            _copy_tokenizer(tok, dst / sub)
        _write_config(config, dst)
        _copy_tokenizer(language_src_dir, dst)
    return Path(out_dir)


# ------------------------------------------------------------------------- architecture-aware roles

_LAYER_RE = re.compile(r"^(model\.layers|encoder\.layer)\.(\d+)\.(.+)$")


def family(sd: StateDict) -> str:
    """'bert' or 'llama', from the tensor names (HF conventions)."""
    if any(k.startswith("encoder.layer.") for k in sd):
        return "bert"
    if any(k.startswith("model.layers.") for k in sd):
        return "llama"
    raise ValueError("state dict has neither BERT (encoder.layer.N) nor HF-Llama (model.layers.N) names")


def layer_count(sd: StateDict) -> int:
    return 1 + max(int(m.group(2)) for k in sd if (m := _LAYER_RE.match(k)))


def _layer_prefix(sd: StateDict, i: int) -> str:
    return f"encoder.layer.{i}." if family(sd) == "bert" else f"model.layers.{i}."


# MLP parameter roles: rows of "in" tensors (and their biases) and columns of "out" tensors are neurons.
_MLP_IN = {"bert": ("intermediate.dense",), "llama": ("mlp.gate_proj", "mlp.up_proj")}
_MLP_OUT = {"bert": ("output.dense",), "llama": ("mlp.down_proj",)}
_ATTN_IN = {"bert": ("attention.self.query", "attention.self.key", "attention.self.value"),
            "llama": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")}
_ATTN_OUT = {"bert": "attention.output.dense", "llama": "self_attn.o_proj"}


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, *salt])


def _select_neurons(sd: StateDict, out: StateDict, layer: str, fam: str, index: torch.Tensor) -> None:
    """Keep/reorder MLP neurons `index` (rows of up/gate + biases, columns of down) of one layer."""
    for part in _MLP_IN[fam]:
        for leaf in ("weight", "bias"):
            name = f"{layer}{part}.{leaf}"
            if name in sd:
                out[name] = sd[name][index].contiguous()
    for part in _MLP_OUT[fam]:
        name = f"{layer}{part}.weight"
        out[name] = sd[name][:, index].contiguous()


def permute_mlp_neurons(sd: StateDict, seed: int) -> StateDict:
    """Reorder every layer's MLP neurons (a different seeded permutation per layer): function-preserving."""
    fam, out = family(sd), dict(sd)
    for i in range(layer_count(sd)):
        layer = _layer_prefix(sd, i)
        width = sd[f"{layer}{_MLP_IN[fam][0]}.weight"].shape[0]
        _select_neurons(sd, out, layer, fam, torch.from_numpy(_rng(seed, i).permutation(width)))
    return out


def _head_dims(config: dict[str, Any]) -> tuple[int, int, int]:
    n = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n)
    hd = int(config.get("head_dim") or config["hidden_size"] // n)
    return n, n_kv, hd


def _select_heads(sd: StateDict, out: StateDict, layer: str, fam: str, q_heads: np.ndarray,
                  kv_heads: np.ndarray, hd: int) -> None:
    """Keep/reorder attention heads: q rows (and o columns) by `q_heads`, k/v rows by `kv_heads`."""
    q_rows = torch.from_numpy((q_heads[:, None] * hd + np.arange(hd)).reshape(-1))
    kv_rows = torch.from_numpy((kv_heads[:, None] * hd + np.arange(hd)).reshape(-1))
    for part, rows in zip(_ATTN_IN[fam], (q_rows, kv_rows, kv_rows)):
        for leaf in ("weight", "bias"):
            name = f"{layer}{part}.{leaf}"
            if name in sd:
                out[name] = sd[name][rows].contiguous()
    name = f"{layer}{_ATTN_OUT[fam]}.weight"
    out[name] = sd[name][:, q_rows].contiguous()


def _gqa_heads(kv_order: np.ndarray, group: int, rng: np.random.Generator) -> np.ndarray:
    """Query heads that follow a kv-head order: each kv head's own group of queries, shuffled within."""
    return np.concatenate([kv * group + rng.permutation(group) for kv in kv_order])


def permute_heads(sd: StateDict, seed: int, config: dict[str, Any]) -> StateDict:
    """Reorder attention heads per layer: function-preserving. With grouped-query attention the kv heads
    are permuted and each keeps its own group of query heads (themselves shuffled within the group)."""
    fam, out = family(sd), dict(sd)
    n, n_kv, hd = _head_dims(config)
    for i in range(layer_count(sd)):
        rng = _rng(seed, i)
        kv = rng.permutation(n_kv)
        _select_heads(sd, out, _layer_prefix(sd, i), fam, _gqa_heads(kv, n // n_kv, rng), kv, hd)
    return out


# Residual-stream roles (HF names). "read" matrices take the residual as input (its columns are hidden
# dims), "write" matrices produce it (rows), "vector" tensors live in it (norm gains/biases, output biases).
_RESIDUAL_ROLES = {
    "bert": [
        (re.compile(r"^embeddings\.(word|position|token_type)_embeddings\.weight$"), "read"),
        (re.compile(r"^embeddings\.LayerNorm\.(weight|bias)$"), "vector"),
        (re.compile(r"\.attention\.self\.(query|key|value)\.weight$"), "read"),
        (re.compile(r"\.attention\.output\.dense\.weight$"), "write"),
        (re.compile(r"\.attention\.output\.dense\.bias$"), "vector"),
        (re.compile(r"\.attention\.output\.LayerNorm\.(weight|bias)$"), "vector"),
        (re.compile(r"\.intermediate\.dense\.weight$"), "read"),
        (re.compile(r"\.layer\.\d+\.output\.dense\.weight$"), "write"),
        (re.compile(r"\.layer\.\d+\.output\.dense\.bias$"), "vector"),
        (re.compile(r"\.layer\.\d+\.output\.LayerNorm\.(weight|bias)$"), "vector"),
        (re.compile(r"^pooler\.dense\.weight$"), "read"),
    ],
    "llama": [
        (re.compile(r"^model\.embed_tokens\.weight$"), "read"),
        (re.compile(r"(layernorm|^model\.norm)\.weight$"), "vector"),
        (re.compile(r"\.(q_proj|k_proj|v_proj|gate_proj|up_proj)\.weight$"), "read"),
        (re.compile(r"\.(o_proj|down_proj)\.weight$"), "write"),
        (re.compile(r"^lm_head\.weight$"), "read"),
    ],
}


def _residual_role(fam: str, name: str) -> str | None:
    for pattern, role in _RESIDUAL_ROLES[fam]:
        if pattern.search(name):
            return role
    return None


def _map_residual(sd: StateDict, read: Callable[[torch.Tensor], torch.Tensor],
                  write: Callable[[torch.Tensor], torch.Tensor],
                  vector: Callable[[torch.Tensor], torch.Tensor]) -> StateDict:
    """Change the residual basis h → h·M: `read` maps W → W·M, `write` maps W → Mᵀ·W, `vector` maps
    tensors that live in the stream."""
    fam = family(sd)
    fns = {"read": read, "write": write, "vector": vector}
    return {name: (fns[role](t) if (role := _residual_role(fam, name)) else t) for name, t in sd.items()}


def permute_residual(sd: StateDict, seed: int) -> StateDict:
    """Permute the hidden dimensions of the whole residual stream: function-preserving for BERT and Llama
    (a permutation commutes with LayerNorm/RMSNorm, so norm gains are simply permuted too). BERT's
    `last_hidden_state` comes out permuted; its pooled output and Llama's logits are unchanged."""
    perm = torch.from_numpy(residual_permutation(_hidden_size(sd), seed))
    return _map_residual(sd, read=lambda w: w[:, perm].contiguous(), write=lambda w: w[perm].contiguous(),
                         vector=lambda v: v[perm].contiguous())


def residual_permutation(hidden: int, seed: int) -> np.ndarray:
    """The hidden-dimension order `permute_residual(sd, seed)` applies (new dim j = old dim perm[j])."""
    return _rng(seed, 10_000).permutation(hidden)


def _hidden_size(sd: StateDict) -> int:
    key = "embeddings.word_embeddings.weight" if family(sd) == "bert" else "model.embed_tokens.weight"
    return sd[key].shape[1]


def untie_embeddings(sd: StateDict) -> StateDict:
    """Give a tied Llama model its own `lm_head.weight` (a copy of the embeddings)."""
    if "lm_head.weight" in sd or family(sd) != "llama":
        return dict(sd)
    return {**sd, "lm_head.weight": sd["model.embed_tokens.weight"].clone()}


def fold_norm_gains(sd: StateDict) -> StateDict:
    """Multiply every RMSNorm gain into the linear layers that read its output and set the gain to 1
    (Llama only; unties the LM head, since the final norm's gain goes into it)."""
    if family(sd) != "llama":
        raise ValueError("norm folding is defined for RMSNorm (Llama) models only")
    out = untie_embeddings(sd)
    readers = {"input_layernorm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
               "post_attention_layernorm": ("mlp.gate_proj", "mlp.up_proj")}
    for i in range(layer_count(sd)):
        layer = f"model.layers.{i}."
        for norm, parts in readers.items():
            gain = out[f"{layer}{norm}.weight"]
            for part in parts:
                name = f"{layer}{part}.weight"
                out[name] = (out[name].to(torch.float64) * gain.to(torch.float64)).to(out[name].dtype)
            out[f"{layer}{norm}.weight"] = torch.ones_like(gain)
    gain = out["model.norm.weight"]
    out["lm_head.weight"] = (out["lm_head.weight"].to(torch.float64) * gain.to(torch.float64)).to(gain.dtype)
    out["model.norm.weight"] = torch.ones_like(gain)
    return out


def random_orthogonal(n: int, seed: int) -> torch.Tensor:
    """A Haar-random n×n orthogonal matrix (float64), from the QR of a seeded Gaussian matrix."""
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def rotate_residual(sd: StateDict, seed: int) -> StateDict:
    """Rotate a Llama model's residual stream by a random orthogonal Q (SliceGPT / QuaRot style):
    function-preserving, yet no weight matrix keeps its values or even its row/column directions.

    Caveat: RMSNorm(x·Q) = RMSNorm(x)·Q only for a *uniform* gain, so every norm gain is first folded
    into the linears that read it (`fold_norm_gains`), which unties the LM head; save with
    `fit_config` so `tie_word_embeddings` is false. Not defined for BERT: LayerNorm's mean subtraction
    does not commute with a rotation.
    """
    folded = fold_norm_gains(sd)
    q = random_orthogonal(_hidden_size(sd), seed)

    def rotate(w: torch.Tensor, left: bool) -> torch.Tensor:
        m = q.to(torch.float32)
        return ((m.T @ w.float()) if left else (w.float() @ m)).to(w.dtype)

    return _map_residual(folded, read=lambda w: rotate(w, False), write=lambda w: rotate(w, True),
                         vector=lambda v: v)


def fit_config(sd: StateDict, config: dict[str, Any]) -> dict[str, Any]:
    """`config` updated to the shapes in `sd` (layers, widths, vocabulary, heads, tying) after a transform."""
    out = dict(config)
    fam = family(sd)
    out["num_hidden_layers"] = layer_count(sd)
    first = _layer_prefix(sd, 0)
    n, n_kv, hd = _head_dims(config)
    out["intermediate_size"] = sd[f"{first}{_MLP_IN[fam][0]}.weight"].shape[0]
    if fam == "llama":
        out["num_attention_heads"] = sd[f"{first}{_ATTN_IN[fam][0]}.weight"].shape[0] // hd
        out["num_key_value_heads"] = sd[f"{first}{_ATTN_IN[fam][1]}.weight"].shape[0] // hd
        out["head_dim"] = hd
        out["vocab_size"] = sd["model.embed_tokens.weight"].shape[0]
        out["tie_word_embeddings"] = "lm_head.weight" not in sd
    else:
        # BERT keeps num_attention_heads (transformers derives the head size from it); head pruning is
        # recorded the way BERT configs did it, as `pruned_heads`.
        out["vocab_size"] = sd["embeddings.word_embeddings.weight"].shape[0]
    return out


# ---------------------------------------------------------------------------------- structural


def _renumber(sd: StateDict, old_layers: Sequence[int]) -> StateDict:
    """A model whose layer j is a copy of the source's layer `old_layers[j]`; non-layer tensors kept."""
    by_layer: dict[int, list[tuple[str, str]]] = {}
    out: StateDict = {}
    for name, t in sd.items():
        m = _LAYER_RE.match(name)
        if m:
            by_layer.setdefault(int(m.group(2)), []).append((m.group(1), m.group(3)))
        else:
            out[name] = t
    for j, old in enumerate(old_layers):
        if old not in by_layer:
            raise ValueError(f"layer {old} does not exist (model has {len(by_layer)})")
        for stack, rest in by_layer[old]:
            out[f"{stack}.{j}.{rest}"] = sd[f"{stack}.{old}.{rest}"].clone()
    return out


def upscale_depth(sd: StateDict, layer_ranges: Sequence[tuple[int, int]]) -> StateDict:
    """SOLAR-style depth up-scaling: stack copies of layer ranges, e.g. [(0, 24), (8, 32)] (end exclusive)."""
    return _renumber(sd, [i for start, end in layer_ranges for i in range(start, end)])


def drop_layers(sd: StateDict, layers: Sequence[int]) -> StateDict:
    """Remove the given layers and renumber the rest."""
    drop = set(layers)
    return _renumber(sd, [i for i in range(layer_count(sd)) if i not in drop])


def prune_mlp_width(sd: StateDict, keep_fraction: float, seed: int) -> StateDict:
    """Keep a seeded random `keep_fraction` of every layer's MLP neurons (in their original order)."""
    fam, out = family(sd), dict(sd)
    for i in range(layer_count(sd)):
        layer = _layer_prefix(sd, i)
        width = sd[f"{layer}{_MLP_IN[fam][0]}.weight"].shape[0]
        keep = np.sort(_rng(seed, i).choice(width, size=max(1, round(width * keep_fraction)), replace=False))
        _select_neurons(sd, out, layer, fam, torch.from_numpy(keep))
    return out


def prune_heads(sd: StateDict, keep_fraction: float, seed: int, config: dict[str, Any]) -> StateDict:
    """Keep a seeded random `keep_fraction` of every layer's attention heads (whole kv groups under GQA)."""
    fam, out = family(sd), dict(sd)
    n, n_kv, hd = _head_dims(config)
    group = n // n_kv
    for i in range(layer_count(sd)):
        rng = _rng(seed, i)
        kv = np.sort(rng.choice(n_kv, size=max(1, round(n_kv * keep_fraction)), replace=False))
        q = np.concatenate([k * group + np.arange(group) for k in kv])
        _select_heads(sd, out, _layer_prefix(sd, i), fam, q, kv, hd)
    return out


def _vocab_tensors(sd: StateDict) -> list[str]:
    names = ["embeddings.word_embeddings.weight", "model.embed_tokens.weight", "lm_head.weight",
             "cls.predictions.bias"]
    return [n for n in names if n in sd]


def extend_vocab(sd: StateDict, n_new: int, seed: int) -> StateDict:
    """Append `n_new` token rows to the embeddings (and LM head): each the mean row plus seeded noise of
    the rows' standard deviation, as vocabulary-extension recipes initialise new tokens."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(sd)
    for name in _vocab_tensors(sd):
        t = sd[name].to(torch.float32)
        mean, std = t.mean(dim=0, keepdim=True), t.std(dim=0, keepdim=True)
        new = mean + std * torch.randn((n_new, *t.shape[1:]), generator=gen)
        out[name] = torch.cat([t, new]).to(sd[name].dtype)
    return out


def reduce_vocab(sd: StateDict, keep_ids: Sequence[int]) -> StateDict:
    """Keep only the token rows `keep_ids` (in that order) of the embeddings and LM head."""
    index = torch.as_tensor(list(keep_ids), dtype=torch.long)
    return {k: (v[index].contiguous() if k in _vocab_tensors(sd) else v) for k, v in sd.items()}


def extend_tokenizer(src_dir: PathLike, out_dir: PathLike, n_new: int) -> Path:
    """Write `src_dir`'s tokenizer.json with `n_new` added tokens `<|extra_i|>` (ids follow the vocabulary),
    and its vocab.txt (WordPiece) with the same tokens appended, so both files agree with `extend_vocab`."""
    from tokenizers import AddedToken, Tokenizer

    src, out = Path(src_dir), Path(out_dir)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    base = tok.get_vocab_size()
    new = [f"<|extra_{i}|>" for i in range(n_new)]
    tok.add_tokens([AddedToken(t, special=False) for t in new])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    if (src / "vocab.txt").is_file():
        lines = (src / "vocab.txt").read_text(encoding="utf-8").splitlines()
        if len(lines) != base:
            raise ValueError(f"{src / 'vocab.txt'} has {len(lines)} tokens, tokenizer.json {base}")
        (out / "vocab.txt").write_text("\n".join(lines + new) + "\n", encoding="utf-8")
    return out / "tokenizer.json"


def _remap_post_processor(proc: Any, new_id: dict[int, int]) -> None:
    """Special-token ids inside a tokenizer.json post-processor (TemplateProcessing, BertProcessing, …)."""
    if isinstance(proc, dict):
        if proc.get("type") == "Sequence":
            for p in proc.get("processors", []):
                _remap_post_processor(p, new_id)
        for spec in (proc.get("special_tokens") or {}).values():
            spec["ids"] = [new_id[i] for i in spec["ids"]]
        for key in ("sep", "cls"):
            if isinstance(proc.get(key), list) and len(proc[key]) == 2:
                proc[key][1] = new_id[proc[key][1]]


def reduce_tokenizer(src_dir: PathLike, out_dir: PathLike, keep_ids: Sequence[int]) -> Path:
    """Write `src_dir`'s tokenizer keeping only tokens `keep_ids`, renumbered in that order (new id i is old
    id keep_ids[i], as `reduce_vocab` reorders the embedding rows): tokenizer.json (vocabulary, added tokens,
    post-processor ids; BPE merges whose parts are gone are dropped) and vocab.txt when the source has one.
    Special tokens the post-processor or model needs must be kept."""
    src, out = Path(src_dir), Path(out_dir)
    data = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    model = data["model"]
    old_vocab: dict[str, int] = model["vocab"]
    by_id = {i: t for t, i in old_vocab.items()}
    by_id.update({a["id"]: a["content"] for a in data.get("added_tokens", [])})
    keep = [int(i) for i in keep_ids]
    if len(set(keep)) != len(keep) or any(i not in by_id for i in keep):
        raise ValueError("keep_ids must be distinct ids of the source vocabulary")
    new_id = {old: new for new, old in enumerate(keep)}
    model["vocab"] = {by_id[old]: new for new, old in enumerate(keep) if by_id[old] in old_vocab}
    if model.get("unk_token") is not None and model["unk_token"] not in model["vocab"]:
        raise ValueError(f"the unknown token {model['unk_token']!r} must be kept")
    if isinstance(model.get("merges"), list):
        def parts(m: Any) -> list[str]:
            return m.split(" ") if isinstance(m, str) else list(m)
        model["merges"] = [m for m in model["merges"]
                           if all(p in model["vocab"] for p in parts(m)) and "".join(parts(m)) in model["vocab"]]
    data["added_tokens"] = [{**a, "id": new_id[a["id"]]} for a in data.get("added_tokens", []) if a["id"] in new_id]
    try:
        _remap_post_processor(data.get("post_processor"), new_id)
        if isinstance(data.get("padding"), dict) and "pad_id" in data["padding"]:
            data["padding"]["pad_id"] = new_id[data["padding"]["pad_id"]]
    except KeyError as exc:
        raise ValueError(f"the post-processor's special token id {exc} must be kept") from None
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    if (src / "vocab.txt").is_file():
        lines = (src / "vocab.txt").read_text(encoding="utf-8").splitlines()
        (out / "vocab.txt").write_text("\n".join(lines[i] for i in keep) + "\n", encoding="utf-8")
    return out / "tokenizer.json"


MOE_NAMINGS = ("mixtral", "qwen_moe", "deepseek")


def upcycle_moe(sd: StateDict, n_experts: int, noise: float, naming: str = "mixtral", seed: int = 0) -> StateDict:
    """Sparse upcycling of a Llama model: every layer's dense MLP becomes `n_experts` experts, each the
    dense MLP plus Gaussian noise of `noise` × the tensor's std, with a seeded router (std 0.02).

    naming "mixtral": block_sparse_moe.experts.j.w1/w2/w3 + block_sparse_moe.gate; "qwen_moe":
    mlp.experts.j.{gate,up,down}_proj + mlp.gate; "deepseek": like qwen_moe plus the exact dense MLP as
    mlp.shared_experts.
    """
    if naming not in MOE_NAMINGS:
        raise ValueError(f"unknown MoE naming {naming!r}; choose from {MOE_NAMINGS}")
    if family(sd) != "llama":
        raise ValueError("upcycling is defined for Llama-style (gate/up/down) MLPs")
    gen = torch.Generator().manual_seed(seed)
    out: StateDict = {}
    mixtral = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}
    for name, t in sd.items():
        m = re.match(r"^(model\.layers\.\d+\.)mlp\.(gate_proj|up_proj|down_proj)\.weight$", name)
        if not m:
            out[name] = t
            continue
        layer, part = m.groups()
        std = float(t.float().std())
        for j in range(n_experts):
            expert = (t.float() + noise * std * torch.randn(t.shape, generator=gen)).to(t.dtype)
            if naming == "mixtral":
                out[f"{layer}block_sparse_moe.experts.{j}.{mixtral[part]}.weight"] = expert
            else:
                out[f"{layer}mlp.experts.{j}.{part}.weight"] = expert
        if naming == "deepseek":
            out[f"{layer}mlp.shared_experts.{part}.weight"] = t.clone()
        if part == "gate_proj":
            router = 0.02 * torch.randn((n_experts, t.shape[1]), generator=gen)
            key = "block_sparse_moe.gate" if naming == "mixtral" else "mlp.gate"
            out[f"{layer}{key}.weight"] = router.to(t.dtype)
    return out


# ---------------------------------------------------------------------------------- quantisation


def fake_int8(sd: StateDict) -> StateDict:
    """Per-row absmax int8 quantisation and back (W ≈ round(W / s) · s, s = max|row| / 127) for every
    2-D floating tensor; vectors are kept. The values a W8A16 checkpoint would dequantise to."""
    out: StateDict = {}
    for name, t in sd.items():
        if t.ndim != 2 or not t.is_floating_point():
            out[name] = t
            continue
        w = t.to(torch.float32)
        scale = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
        out[name] = (torch.round(w / scale).clamp(-127, 127) * scale).to(t.dtype)
    return out


class QuantisedStateDict(NamedTuple):
    """A quantised state dict (packed integers, scales, zero points) and the `quantization_config` a real
    quantiser writes into config.json beside it (`save_quantised` writes both)."""

    state_dict: StateDict
    quantization_config: dict[str, Any]


def save_quantised(quantised: QuantisedStateDict, config: dict[str, Any], out_dir: PathLike, *,
                   tokenizer_from: PathLike | None = None, n_shards: int = 1) -> Path:
    """Write a quantised checkpoint: its tensors, and `config` with the `quantization_config` added."""
    return save_checkpoint(quantised.state_dict, {**config, "quantization_config": quantised.quantization_config},
                           out_dir, tokenizer_from=tokenizer_from, n_shards=n_shards)


def _quantisable(name: str, t: torch.Tensor, in_multiple: int = 1, out_multiple: int = 1) -> bool:
    """A linear layer's weight that a weight-only quantiser would pack (embeddings and LM head stay float,
    as GPTQ/AWQ/llm-compressor leave them by default)."""
    return (is_linear_weight(name, t) and t.is_floating_point() and name.endswith(".weight")
            and t.shape[1] % in_multiple == 0 and t.shape[0] % out_multiple == 0)


def _quantise_linears(sd: StateDict, quantise: Callable[[str, torch.Tensor], StateDict],
                      in_multiple: int = 1, out_multiple: int = 1) -> StateDict:
    """`sd` with every quantisable linear weight replaced by the tensors `quantise(module, float32 weight)`
    returns (keys relative to the module, e.g. "qweight"); everything else kept as it is."""
    out: StateDict = {}
    for name, t in sd.items():
        if not _quantisable(name, t, in_multiple, out_multiple):
            out[name] = t
            continue
        module = name[: -len(".weight")]
        for leaf, value in quantise(module, t.to(torch.float32)).items():
            out[f"{module}.{leaf}"] = value
    return out


def _stored_scale(scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The scale as it will be stored, back in float32, so values are quantised with exactly that scale."""
    return scale.to(dtype).to(torch.float32)


def to_fp8_block(sd: StateDict, block: tuple[int, int] = (128, 128)) -> QuantisedStateDict:
    """DeepSeek-V3 / Qwen3-FP8 block-wise fp8: each linear weight becomes float8_e4m3fn with a float32
    `weight_scale_inv` [ceil(out/b0), ceil(in/b1)] (block absmax / 448); w ≈ q · scale_inv per block."""
    b0, b1 = block
    fmax = torch.finfo(torch.float8_e4m3fn).max

    def quantise(module: str, w: torch.Tensor) -> StateDict:
        rows, cols = w.shape
        pr, pc = -rows % b0, -cols % b1
        padded = torch.nn.functional.pad(w, (0, pc, 0, pr))
        blocks = padded.reshape((rows + pr) // b0, b0, (cols + pc) // b1, b1)
        scale = blocks.abs().amax(dim=(1, 3)).clamp_min(1e-12) / fmax
        expanded = scale.repeat_interleave(b0, 0).repeat_interleave(b1, 1)[:rows, :cols]
        return {"weight": (w / expanded).clamp(-fmax, fmax).to(torch.float8_e4m3fn),
                "weight_scale_inv": scale.contiguous()}

    out = _quantise_linears(sd, quantise)
    return QuantisedStateDict(out, {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                    "weight_block_size": [b0, b1]})


def _compressed_tensors_config(weights: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A `quantization_config` as llm-compressor writes it for one weight-only config group."""
    return {"quant_method": "compressed-tensors", "format": fmt, "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                          "input_activations": None, "output_activations": None}},
            "ignore": ["lm_head"], "kv_cache_scheme": None}


def to_int8_compressed(sd: StateDict) -> QuantisedStateDict:
    """compressed-tensors `int-quantized` W8A16: each linear weight becomes int8 with a per-channel
    `weight_scale` [out, 1] (row absmax / 127, stored in the weight's float dtype); w ≈ q · scale."""

    def quantise(module: str, w: torch.Tensor) -> StateDict:
        dtype = sd[f"{module}.weight"].dtype
        scale = _stored_scale(w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0, dtype)
        return {"weight": torch.round(w / scale).clamp(-128, 127).to(torch.int8), "weight_scale": scale.to(dtype)}

    out = _quantise_linears(sd, quantise)
    weights = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel", "group_size": None,
               "dynamic": False, "observer": "minmax"}
    return QuantisedStateDict(out, _compressed_tensors_config(weights, "int-quantized"))


def _pack_rows(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned `bits`-bit values along axis 0 into int32 words, lowest bits first (GPTQ qweight)."""
    per = 32 // bits
    v = values.astype(np.uint32).reshape(values.shape[0] // per, per, *values.shape[1:])
    shifts = (np.arange(per, dtype=np.uint32) * bits).reshape(1, per, *([1] * (values.ndim - 1)))
    return np.bitwise_or.reduce(v << shifts, axis=1).view(np.int32)


def _pack_cols(values: np.ndarray, bits: int, order: Sequence[int] | None = None) -> np.ndarray:
    """Pack along axis 1 (GPTQ qzeros; AWQ qweight/qzeros with `order` = AWQ's interleaving)."""
    per = 32 // bits
    v = values.reshape(values.shape[0], values.shape[1] // per, per)
    if order is not None:
        v = v[:, :, list(order)]  # word nibble i holds column 8c + order[i]
    return np.ascontiguousarray(_pack_rows(np.moveaxis(v, 2, 0), bits)[0])


def _minmax_params(w: torch.Tensor, maxq: int, sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row scale and zero point of one group (GPTQ's `Quantizer.find_params`, round-to-nearest):
    asymmetric over [min(w,0), max(w,0)], or symmetric with zero (maxq+1)/2."""
    xmin = w.amin(dim=1).clamp_max(0)
    xmax = w.amax(dim=1).clamp_min(0)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = -xmax
    scale = _stored_scale(((xmax - xmin) / maxq).clamp_min(1e-8), torch.float16)
    zero = torch.full_like(scale, (maxq + 1) // 2) if sym else torch.round(-xmin / scale).clamp(0, maxq)
    return scale, zero


def to_gptq(sd: StateDict, bits: int = 4, group_size: int = 128, *, sym: bool = True, desc_act: bool = False,
            checkpoint_format: str = "gptq", seed: int = 0) -> QuantisedStateDict:
    """GPTQ checkpoint layout (AutoGPTQ/optimum): `qweight` int32 [in·bits/32, out], `qzeros` int32
    [groups, out·bits/32], `scales` fp16 [groups, out], `g_idx` int32 [in]. Values are round-to-nearest
    (no Hessian error feedback: the storage format, not GPTQ's solver, is what a reader must handle).
    `checkpoint_format` "gptq" stores zero − 1 (the original format), "gptq_v2" the zero itself.
    `desc_act` quantises inputs in a seeded order (act-order), so `g_idx` is not monotone."""
    if bits not in (2, 4, 8) or checkpoint_format not in ("gptq", "gptq_v2"):
        raise ValueError("bits must be 2, 4 or 8 and checkpoint_format 'gptq' or 'gptq_v2'")
    per, maxq = 32 // bits, 2**bits - 1

    def quantise(module: str, w: torch.Tensor) -> StateDict:
        n_out, n_in = w.shape
        order = torch.from_numpy(_rng(seed, n_out, n_in).permutation(n_in)) if desc_act else torch.arange(n_in)
        g_idx = torch.empty(n_in, dtype=torch.long)
        g_idx[order] = torch.arange(n_in) // group_size
        groups = math.ceil(n_in / group_size)
        scales = torch.empty(groups, n_out)
        zeros = torch.empty(groups, n_out)
        for g in range(groups):
            scales[g], zeros[g] = _minmax_params(w[:, g_idx == g], maxq, sym)
        q = torch.clamp(torch.round(w / scales[g_idx].T) + zeros[g_idx].T, 0, maxq).to(torch.int64)
        stored_zeros = zeros.to(torch.int64) - (1 if checkpoint_format == "gptq" else 0)
        return {"qweight": torch.from_numpy(_pack_rows(q.T.numpy(), bits)),
                "qzeros": torch.from_numpy(_pack_cols((stored_zeros.numpy() & maxq), bits)),
                "scales": scales.to(torch.float16), "g_idx": g_idx.to(torch.int32)}

    out = _quantise_linears(sd, quantise, per, per)
    return QuantisedStateDict(out, {"quant_method": "gptq", "bits": bits, "group_size": group_size,
                                    "desc_act": desc_act, "sym": sym, "damp_percent": 0.1,
                                    "true_sequential": True, "static_groups": False,
                                    "checkpoint_format": checkpoint_format})


AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
"""AutoAWQ GEMM packing: nibble i of each int32 holds output column 8c + AWQ_ORDER[i]."""


def to_awq(sd: StateDict, group_size: int = 128) -> QuantisedStateDict:
    """AutoAWQ GEMM layout: `qweight` int32 [in, out/8] and `qzeros` int32 [in/group, out/8] packed in AWQ's
    interleaved order, `scales` fp16 [in/group, out]; asymmetric 4-bit with zero points, round-to-nearest
    (AWQ's activation-aware scale search changes values, not the format)."""
    def quantise(module: str, w: torch.Tensor) -> StateDict:
        n_out, n_in = w.shape
        grouped = w.reshape(n_out * (n_in // group_size), group_size)
        scale, zero = _minmax_params(grouped, 15, sym=False)
        q = torch.clamp(torch.round(grouped / scale[:, None]) + zero[:, None], 0, 15).reshape(n_out, n_in)
        zeros = zero.reshape(n_out, -1).T.to(torch.int64).numpy()  # [groups, out]
        return {"qweight": torch.from_numpy(_pack_cols(q.T.to(torch.int64).numpy(), 4, AWQ_ORDER)),
                "qzeros": torch.from_numpy(_pack_cols(zeros, 4, AWQ_ORDER)),
                "scales": scale.reshape(n_out, -1).T.contiguous().to(torch.float16)}

    out = _quantise_linears(sd, quantise, group_size, 8)
    return QuantisedStateDict(out, {"quant_method": "awq", "bits": 4, "group_size": group_size,
                                    "zero_point": True, "version": "gemm", "modules_to_not_convert": None})


QK_K = 256  # values per K-quant super-block


def _f16_up(x: np.ndarray) -> np.ndarray:
    """Round up to the next float16 (a stored super-block scale must not shrink the range it covers)."""
    h = x.astype(np.float16)
    low = h.astype(np.float32) < x
    h[low] = np.nextafter(h[low], np.float16(np.inf))
    return h


def quantize_q6_k(rows: np.ndarray) -> np.ndarray:
    """ggml Q6_K blocks (210 bytes per 256 values: ql[128], qh[64], int8 scales[16], fp16 d) of float rows.

    Round-to-nearest: each 16-value sub-block gets scale d·sc (sc int8 ≤ 127, chosen so |x| ≤ 31·d·sc, no
    clamping) and q = round(x / (d·sc)) in [-32, 31], stored as q + 32 split into 4 low bits (ql) and 2 high
    bits (qh) in the order `gguf.quants.Q6_K.dequantize_blocks` (llama.cpp `dequantize_row_q6_K`) reads.
    """
    x = np.asarray(rows, dtype=np.float32)
    blocks = x.reshape(-1, QK_K)
    n = blocks.shape[0]
    sub = blocks.reshape(n, 16, 16)
    need = np.abs(sub).max(axis=2) / 31  # sub-block scale that reaches the largest value
    d = _f16_up(need.max(axis=1) / 127)
    d32 = d.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d32[:, None] > 0, np.ceil(need / d32[:, None]), 0).clip(0, 127)
        step = d32[:, None] * sc
        q = np.where(step[:, :, None] > 0, np.rint(sub / step[:, :, None]), 0).clip(-32, 31)
    u = (q.astype(np.int16) + 32).astype(np.uint8).reshape(n, 2, 128)  # two halves of 128 values
    ql = (u[:, :, :64] & 0x0F) | ((u[:, :, 64:] & 0x0F) << 4)  # value t<64: low nibble, t>=64: high nibble
    hi = (u >> 4).reshape(n, 2, 4, 32)  # value t: 2-bit field t // 32 of byte t % 32
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    out = np.concatenate([ql.reshape(n, 128), qh.reshape(n, 64), sc.astype(np.int8).view(np.uint8),
                          d.reshape(n, 1).view(np.uint8)], axis=1)
    return out.reshape(*x.shape[:-1], x.shape[-1] // QK_K * 210)


def quantize_q4_k(rows: np.ndarray) -> np.ndarray:
    """ggml Q4_K blocks (144 bytes per 256 values: fp16 d, fp16 dmin, 12 bytes of 6-bit scales and mins,
    qs[128]) of float rows: value = d·sc·q − dmin·m with q in [0, 15] per 32-value sub-block.

    Round-to-nearest: m is rounded up and sc chosen so [−dmin·m, −dmin·m + 15·d·sc] covers the sub-block
    (no clamping); scales are packed as `gguf.quants.Q4_K.get_scale_min` (llama.cpp `get_scale_min_k4`)
    unpacks them.
    """
    x = np.asarray(rows, dtype=np.float32)
    blocks = x.reshape(-1, QK_K)
    n = blocks.shape[0]
    sub = blocks.reshape(n, 8, 32)
    lo = np.minimum(sub.min(axis=2), 0)
    hi = np.maximum(sub.max(axis=2), 0)
    dmin = _f16_up(-lo.min(axis=1) / 63)
    dmin32 = dmin.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(dmin32[:, None] > 0, np.ceil(-lo / dmin32[:, None]), 0).clip(0, 63)
        offset = dmin32[:, None] * m  # ≥ −lo
        need = (hi + offset) / 15
        d = _f16_up(need.max(axis=1) / 63)
        d32 = d.astype(np.float32)
        sc = np.where(d32[:, None] > 0, np.ceil(need / d32[:, None]), 0).clip(0, 63)
        step = d32[:, None] * sc
        q = np.where(step[:, :, None] > 0, np.rint((sub + offset[:, :, None]) / step[:, :, None]), 0).clip(0, 15)
    sc8, m8 = sc.astype(np.uint8), m.astype(np.uint8)
    scales = np.concatenate([sc8[:, :4] | ((sc8[:, 4:] >> 4) << 6),
                             m8[:, :4] | ((m8[:, 4:] >> 4) << 6),
                             (sc8[:, 4:] & 0x0F) | ((m8[:, 4:] & 0x0F) << 4)], axis=1)
    qv = q.astype(np.uint8).reshape(n, 4, 2, 32)  # sub-block 2c + k sits in nibble k of bytes 32c..32c+31
    qs = qv[:, :, 0] | (qv[:, :, 1] << 4)
    out = np.concatenate([d.reshape(n, 1).view(np.uint8), dmin.reshape(n, 1).view(np.uint8), scales,
                          qs.reshape(n, 128)], axis=1)
    return out.reshape(*x.shape[:-1], x.shape[-1] // QK_K * 144)


_K_QUANTISERS = {"Q6_K": quantize_q6_k, "Q4_K": quantize_q4_k}
K_QUANT_FALLBACK = {"Q6_K": "Q8_0", "Q4_K": "Q5_0"}
"""What llama.cpp's quantiser writes instead when a row is not a whole number of 256-value super-blocks."""

GGUF_QTYPES = ("F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1", "Q6_K", "Q4_K")
"""Types `to_gguf` can write: the ones `gguf.quants.quantize` implements in numpy, plus Q6_K and Q4_K from
this module's round-to-nearest encoders (gguf 0.19 has no K-quant quantiser)."""


def _gguf_tensor(arr: np.ndarray, qtype: str):
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import quantize

    kind = GGMLQuantizationType[qtype]
    block = GGML_QUANT_SIZES[kind][0]
    if qtype in K_QUANT_FALLBACK and arr.ndim >= 2 and arr.shape[-1] % block:
        return _gguf_tensor(arr, K_QUANT_FALLBACK[qtype])
    if arr.ndim < 2 or arr.shape[-1] % block:
        return arr.astype(np.float32), GGMLQuantizationType.F32
    if kind == GGMLQuantizationType.F32:
        return arr.astype(np.float32), kind
    if kind == GGMLQuantizationType.F16:
        return arr.astype(np.float16), kind
    if qtype in _K_QUANTISERS:
        return _K_QUANTISERS[qtype](arr), kind
    return quantize(arr.astype(np.float32), kind), kind


def _add_wordpiece_vocab(writer, tokens: list[str]) -> None:
    """llama.cpp's BERT tokenizer metadata from a WordPiece vocab.txt (as convert_hf_to_gguf writes it)."""
    from gguf import TokenType

    writer.add_tokenizer_model("bert")
    writer.add_token_list(tokens)
    writer.add_token_types([int(TokenType.CONTROL if t.startswith("[") and t.endswith("]") else TokenType.NORMAL)
                            for t in tokens])
    ids = {t: i for i, t in enumerate(tokens)}
    for token, add in (("[UNK]", writer.add_unk_token_id), ("[SEP]", writer.add_sep_token_id),
                       ("[PAD]", writer.add_pad_token_id), ("[CLS]", writer.add_bos_token_id),
                       ("[MASK]", writer.add_mask_token_id)):
        if token in ids:
            add(ids[token])


def to_gguf(sd_or_dir: StateDict | PathLike, out_path: PathLike, qtype: str = "Q8_0",
            config: dict[str, Any] | None = None, *, tokenizer_gguf: PathLike | None = None) -> Path:
    """Write a real GGUF file (llama.cpp names and metadata) with weights quantised to `qtype` by
    `gguf.quants.quantize`. Llama q/k rows get llama.cpp's rotary permutation; 1-D tensors stay F32 and
    embedding / LM-head tables use Q8_0 when `qtype` is 4- or 5-bit (as llama.cpp's presets do).
    `tokenizer_gguf` copies the `tokenizer.ggml.*` metadata of an existing GGUF (same vocabulary)."""
    from gguf import GGML_QUANT_VERSION, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType

    if qtype not in GGUF_QTYPES:
        raise NotImplementedError(f"qtype {qtype!r}: gguf.quants can write only {', '.join(GGUF_QTYPES)}")
    if isinstance(sd_or_dir, dict):
        sd = sd_or_dir
        if config is None:
            raise ValueError("to_gguf needs the model config when given a state dict")
    else:
        sd, config = load_checkpoint(sd_or_dir)
    fam = family(sd)
    n, n_kv, hd = _head_dims(config)
    sd = {k: v.float() for k, v in sd.items() if not k.startswith("cls.")}
    if fam == "llama":
        for i in range(layer_count(sd)):
            q, k = f"model.layers.{i}.self_attn.q_proj.weight", f"model.layers.{i}.self_attn.k_proj.weight"
            sd[q], sd[k] = llama_rope_permute(sd[q], n), llama_rope_permute(sd[k], n_kv)
    named = rename_keys(sd, "gguf")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.partial")
    arch = "llama" if fam == "llama" else "bert"
    writer = GGUFWriter(str(tmp), arch)
    writer.add_name(f"derived-{arch}-{qtype}")
    writer.add_block_count(layer_count(sd))
    writer.add_context_length(int(config.get("max_position_embeddings", 512)))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(n)
    writer.add_head_count_kv(n_kv)
    writer.add_vocab_size(int(config["vocab_size"]))
    if fam == "llama":
        writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
        writer.add_rope_dimension_count(hd)
    else:
        writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
    low_bit = qtype.startswith(("Q4", "Q5"))
    for name, t in named.items():
        is_table = name.startswith(("token_embd", "output.", "position_embd", "token_types"))
        data, kind = _gguf_tensor(t.numpy(), "Q8_0" if is_table and low_bit else qtype)
        writer.add_tensor(name, data, raw_dtype=kind)
    file_type = {"F32": "ALL_F32", "Q4_K": "MOSTLY_Q4_K_M"}.get(qtype, f"MOSTLY_{qtype}")
    writer.add_file_type(int(LlamaFileType[file_type]))
    writer.add_quantization_version(GGML_QUANT_VERSION)
    vocab_txt = None if isinstance(sd_or_dir, dict) else Path(sd_or_dir) / "vocab.txt"
    if tokenizer_gguf is None and fam == "bert" and vocab_txt is not None and vocab_txt.is_file():
        _add_wordpiece_vocab(writer, vocab_txt.read_text(encoding="utf-8").splitlines())
    if tokenizer_gguf is not None:
        reader = GGUFReader(str(tokenizer_gguf))
        for key, field in reader.fields.items():
            if key.startswith("tokenizer.ggml."):
                sub = field.types[-1] if field.types[0] == GGUFValueType.ARRAY else None
                writer.add_key_value(key, field.contents(), field.types[0], sub)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


# ------------------------------------------------------------------------------ tiny test models

TINY_LLAMA_CONFIG: dict[str, Any] = {
    "model_type": "llama", "vocab_size": 320, "hidden_size": 64, "intermediate_size": 160,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
    "tie_word_embeddings": True,
}
"""A Llama with grouped-query attention small enough for unit tests (milliseconds per forward pass)."""


def random_llama(config: dict[str, Any] = TINY_LLAMA_CONFIG, seed: int = 0, norm_noise: float = 0.3) -> StateDict:
    """A randomly initialised Llama state dict whose RMSNorm gains are 1 + `norm_noise`·N(0,1), so that
    norm folding and residual transforms are exercised (fresh models have all-ones gains)."""
    model = build_model(config, seed=seed)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()
          if not (k == "lm_head.weight" and config.get("tie_word_embeddings"))}
    gen = torch.Generator().manual_seed(seed)
    for k in sd:
        if k.endswith("norm.weight"):
            sd[k] = 1 + norm_noise * torch.randn(sd[k].shape, generator=gen)
    return sd


# --- Merges (mergekit's linear, SLERP, TIES and DARE, per tensor) ------------------------------------------

def _merge_each(sds: Sequence[StateDict], combine: Callable[[str, list[torch.Tensor]], torch.Tensor]) -> StateDict:
    """Every floating tensor combined across same-named, same-shaped tensors of `sds`; others from the first."""
    first = sds[0]
    for sd in sds[1:]:
        if set(sd) != set(first) or any(sd[k].shape != first[k].shape for k in first):
            raise ValueError("merged models must have the same tensor names and shapes")
    return {k: combine(k, [sd[k].float() for sd in sds]).to(v.dtype) if v.is_floating_point() else v.clone()
            for k, v in first.items()}


def merge_linear(sds: Sequence[StateDict], weights: Sequence[float]) -> StateDict:
    """Σ wᵢ·Mᵢ per tensor (mergekit `linear` without normalisation)."""
    return _merge_each(sds, lambda _, ts: sum(w * t for w, t in zip(weights, ts)))


def merge_slerp(a: StateDict, b: StateDict, t: float) -> StateDict:
    """Spherical interpolation per tensor (mergekit `slerp`): the angle from the normalised tensors, applied to the
    tensors themselves; nearly parallel tensors are interpolated linearly."""
    def combine(_: str, ts: list[torch.Tensor]) -> torch.Tensor:
        x, y = ts
        cos = float(torch.dot(x.flatten(), y.flatten()) / (x.norm() * y.norm()).clamp_min(1e-12))
        if abs(cos) > 0.9995:
            return (1 - t) * x + t * y
        theta = math.acos(max(-1.0, min(1.0, cos)))
        return (math.sin((1 - t) * theta) * x + math.sin(t * theta) * y) / math.sin(theta)
    return _merge_each([a, b], combine)


def _task_vectors(ts: list[torch.Tensor], base: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    zero = torch.zeros_like(ts[0]) if base is None else base.float()
    return zero, [t - zero for t in ts]


def merge_ties(sds: Sequence[StateDict], weights: Sequence[float], density: float = 0.5,
               base: StateDict | None = None) -> StateDict:
    """TIES (mergekit `ties`, normalised): task vectors against `base` (zeros when the parents share none) trimmed to
    their top `density` magnitudes, a sign elected per entry by the weighted sum, and the agreeing entries averaged."""
    def combine(name: str, ts: list[torch.Tensor]) -> torch.Tensor:
        zero, taus = _task_vectors(ts, None if base is None else base[name])
        trimmed = []
        for tau in taus:
            k = max(1, int(round(density * tau.numel())))
            cut = tau.abs().flatten().kthvalue(tau.numel() - k + 1).values if k < tau.numel() else -1.0
            trimmed.append(torch.where(tau.abs() >= cut, tau, torch.zeros_like(tau)))
        weighted = [w * t for w, t in zip(weights, trimmed)]
        sign = torch.sign(sum(weighted))
        agree = [((torch.sign(t) == sign) & (t != 0)).float() for t in trimmed]
        total = sum(w * a for w, a in zip(weights, agree))
        merged = sum(wt * a for wt, a in zip(weighted, agree)) / total.clamp_min(1e-12)
        return zero + merged
    return _merge_each(sds, combine)


def merge_dare(sds: Sequence[StateDict], weights: Sequence[float], drop: float = 0.5, seed: int = 0,
               base: StateDict | None = None) -> StateDict:
    """DARE (mergekit `dare_linear`): each task vector keeps a seeded random 1 − `drop` of its entries, rescaled by
    1/(1 − drop), then the weighted sum is added to `base` (zeros when the parents share none)."""
    gen = torch.Generator().manual_seed(seed)

    def combine(name: str, ts: list[torch.Tensor]) -> torch.Tensor:
        zero, taus = _task_vectors(ts, None if base is None else base[name])
        kept = [t * (torch.rand(t.shape, generator=gen) >= drop).float() / (1 - drop) for t in taus]
        return zero + sum(w * t for w, t in zip(weights, kept))
    return _merge_each(sds, combine)
