"""Fixtures for Hub tests: real MiniLM and SmolLM2 files served by a Hub-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file

from tests.hub.hub_server import HubRepo, HubServer

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
SHARDED_REPO = "test-org/minilm-sharded-with-tower"
GGUF_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
TINY_REPO = "test-org/minilm-two-layers"  # quick pulls for CLI and archive mechanics

_SMOL_NAMES = {  # GGUF tensor name -> Hugging Face name, for the first layers of SmolLM2
    "token_embd.weight": "model.embed_tokens.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def _smollm2_tensors(gguf_path: Path, layers: int = 3) -> dict[str, torch.Tensor]:
    """SmolLM2's embedding and first layers dequantised from the real GGUF, as bf16 Hugging Face tensors."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    out: dict[str, torch.Tensor] = {}
    for t in GGUFReader(gguf_path).tensors:
        if t.name == "token_embd.weight":
            name = _SMOL_NAMES[t.name]
        elif t.name.startswith("blk.") and int(t.name.split(".")[1]) < layers:
            _, idx, rest = t.name.split(".", 2)
            name = f"model.layers.{idx}.{_SMOL_NAMES[rest]}"
        else:
            continue
        values = dequantize(t.data, t.tensor_type).astype(np.float32)
        out[name] = torch.from_numpy(np.ascontiguousarray(values)).to(torch.bfloat16)
    return out


@pytest.fixture(scope="session")
def sharded_dir(minilm_dir: Path, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM split into two shards with a weight-map index, plus SmolLM2 layers in a `vision_tower/` folder."""
    root = tmp_path_factory.mktemp("sharded")
    tensors = load_file(minilm_dir / "model.safetensors")
    names = sorted(tensors)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:]), start=1):
        shard = f"model-0000{i}-of-00002.safetensors"
        save_file({n: torch.from_numpy(tensors[n]) for n in part}, root / shard, metadata={"format": "pt"})
        weight_map.update({n: shard for n in part})
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    shutil.copy(minilm_dir / "config.json", root / "config.json")
    tower = root / "vision_tower"
    tower.mkdir()
    save_file(_smollm2_tensors(smollm2_gguf), tower / "model.safetensors", metadata={"format": "pt"})
    return root


@pytest.fixture(scope="session")
def tiny_dir(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM's first two encoder layers with its config, and its pooler in `pooler/`: quick to pull."""
    root = tmp_path_factory.mktemp("tiny")
    tensors = load_file(minilm_dir / "model.safetensors")
    keep = {n: torch.from_numpy(t) for n, t in tensors.items() if n.startswith(("encoder.layer.0.", "encoder.layer.1."))}
    save_file(keep, root / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(minilm_dir / "config.json", root / "config.json")
    (root / "pooler").mkdir()  # a sub-model folder
    save_file({n: torch.from_numpy(t) for n, t in tensors.items() if n.startswith("pooler.")},
              root / "pooler" / "model.safetensors", metadata={"format": "pt"})
    return root


def _repo(repo_id: str, folder: Path, **kw) -> HubRepo:
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
             if p.is_file() and not p.name.startswith(".") and "__pycache__" not in p.parts}
    return HubRepo(repo_id, files, **kw)


@pytest.fixture(scope="session")
def hub_server(minilm_dir: Path, sharded_dir: Path, tiny_dir: Path, smollm2_gguf: Path):
    """The Hub-compatible server with MiniLM, the sharded repo, the two-layer repo and the SmolLM2 GGUF."""
    repos = [
        _repo(MINILM_REPO, minilm_dir),
        _repo(SHARDED_REPO, sharded_dir),
        _repo(TINY_REPO, tiny_dir),
        HubRepo(GGUF_REPO, {smollm2_gguf.name: smollm2_gguf}),
    ]
    with HubServer(repos) as server:
        server.warm()
        yield server


@pytest.fixture()
def hub(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    """The server with fresh counters, and an environment pointing huggingface_hub at it (nothing else).
    Repositories a test adds are dropped when it ends: their files live in its tmp_path, which goes with it."""
    from huggingface_hub import constants

    hub_server.state.bytes_served.clear()
    hub_server.state.requests.clear()
    hub_server.state.authorization.clear()
    hub_server.state.fail_next = 0
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"))
    before = dict(hub_server.repos)
    yield hub_server
    hub_server.repos = before
