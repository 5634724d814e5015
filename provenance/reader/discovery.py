"""Find the checkpoint files in a path (file, folder, sharded index, sub-model folders) and open them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import CheckpointError, NothingToScanError
from .base import Checkpoint, CheckpointFile, RowSelection, TensorInfo
from . import safetensors_format

CONFIG_NAMES = ("config.json",)
TOKENIZER_NAMES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "merges.txt", "vocab.json",
    "tokenizer.model", "special_tokens_map.json",
)


class SafetensorsCheckpoint(Checkpoint):
    """One or more safetensors files (single, sharded, or in sub-model folders) read lazily."""

    format = "safetensors"

    def __init__(self, path: Path, shards: list[tuple[Path, str]], extra_files: list[CheckpointFile],
                 config: dict[str, Any] | None) -> None:
        self.path = path
        self.config = config
        self.metadata = {}
        self._infos: dict[str, TensorInfo] = {}
        self._fds: dict[Path, int] = {}
        self._files = list(extra_files)
        for shard, prefix in shards:
            infos, meta = safetensors_format.parse_header(shard, prefix)
            self.metadata.update(meta)
            for info in infos:
                if info.name in self._infos:
                    raise CheckpointError(shard, f"tensor {info.name!r} also appears in {self._infos[info.name].file}")
                self._infos[info.name] = info
            self._files.append(CheckpointFile(shard, shard.stat().st_size, "weights"))

    def tensors(self) -> Iterator[TensorInfo]:
        return iter(self._infos.values())

    def tensor(self, name: str) -> TensorInfo:
        return self._infos[name]

    def files(self) -> list[CheckpointFile]:
        return list(self._files)

    def read_rows(self, name: str, rows: RowSelection = None) -> np.ndarray:
        info = self._infos[name]
        fd = self._fds.get(info.file)
        if fd is None:
            fd = self._fds[info.file] = os.open(info.file, os.O_RDONLY)
        return safetensors_format.read_rows(fd, info, rows)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def open_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Open a checkpoint file or folder; raise `CheckpointError` with the file and problem if it cannot be read."""
    if str(path).startswith("hf://"):
        from .hub import open_hub_checkpoint  # remote reads only where asked for

        return open_hub_checkpoint(str(path))
    root = Path(path)
    if not root.exists():
        raise CheckpointError(root, "no such file or directory")
    if root.is_file():
        if root.suffix == ".safetensors":
            return SafetensorsCheckpoint(root, [(root, "")], _side_files(root.parent), _read_config(root.parent))
        raise CheckpointError(root, f"unsupported checkpoint file type {root.suffix or '(no extension)'!r}")
    if not any(root.iterdir()):
        raise NothingToScanError(root, "folder is empty")
    shards = _safetensors_shards(root)
    if not shards:
        raise NothingToScanError(root, "folder holds no checkpoint (no *.safetensors, *.gguf or pytorch_model*.bin)")
    return SafetensorsCheckpoint(root, shards, _side_files(root), _read_config(root))


def _safetensors_shards(root: Path) -> list[tuple[Path, str]]:
    """Safetensors files of a folder and its sub-model folders, with the dotted name prefix of each."""
    found: list[tuple[Path, str]] = []
    for folder in sorted([root, *[p for p in root.rglob("*") if p.is_dir()]]):
        rel = folder.relative_to(root)
        prefix = "" if rel == Path(".") else ".".join(rel.parts) + "."
        found.extend((f, prefix) for f in _folder_shards(folder))
    return found


def _folder_shards(folder: Path) -> list[Path]:
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        shards: list[Path] = []
        for index in indexes:
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                names = sorted(set(weight_map.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise CheckpointError(index, f"not a valid weight-map index ({exc.__class__.__name__})") from None
            for name in names:
                shard = folder / name
                if not shard.is_file():
                    raise CheckpointError(index, f"weight map names missing shard {name!r}")
                shards.append(shard)
        return shards
    return sorted(folder.glob("*.safetensors"))


def _side_files(folder: Path) -> list[CheckpointFile]:
    out = []
    for name in (*CONFIG_NAMES, *TOKENIZER_NAMES):
        f = folder / name
        if f.is_file():
            out.append(CheckpointFile(f, f.stat().st_size, "config" if name in CONFIG_NAMES else "tokenizer"))
    for f in sorted(folder.glob("*.safetensors.index.json")):
        out.append(CheckpointFile(f, f.stat().st_size, "index"))
    return out


def _read_config(folder: Path) -> dict[str, Any] | None:
    f = folder / "config.json"
    if not f.is_file():
        return None
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f, f"config is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f, "config is not a JSON object")
    return cfg
