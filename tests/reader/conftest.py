"""Fixtures for the reader tests: real MiniLM tensors as ground truth and writers for derived checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file


@pytest.fixture(scope="session")
def minilm_tensors(minilm_dir: Path) -> dict[str, np.ndarray]:
    """Every MiniLM tensor, loaded by the safetensors library itself (the ground truth)."""
    return load_file(minilm_dir / "model.safetensors")


@pytest.fixture(scope="session")
def smollm2_reader(smollm2_gguf: Path):
    """The real SmolLM2 GGUF parsed by the gguf library (the ground truth); parsing takes seconds, so once."""
    import gguf

    return gguf.GGUFReader(smollm2_gguf)


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path):
    """The real SmolLM2 GGUF opened by our reader, shared by the tests that only read it."""
    from modelprov.reader import open_checkpoint

    with open_checkpoint(smollm2_gguf) as ckpt:
        yield ckpt


def write_sharded(folder: Path, tensors: dict[str, np.ndarray], n_shards: int) -> dict[str, str]:
    """Write `tensors` as `n_shards` safetensors files plus a HF-style weight-map index; return the map."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    weight_map: dict[str, str] = {}
    for i in range(n_shards):
        shard = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[i::n_shards]}
        save_file(part, str(folder / shard))
        weight_map.update({n: shard for n in part})
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return weight_map


def write_raw_safetensors(path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    """A safetensors file with an arbitrary (possibly broken) header object and data section."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(raw) if length is None else length
    path.write_bytes(n.to_bytes(8, "little") + raw + data)
    return path


def write_gguf(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> Path:
    """A GGUF file of raw tensors (GGML type name, data as the type stores it), written by the gguf library."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    for name, (qtype, raw) in tensors.items():
        writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType[qtype])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
