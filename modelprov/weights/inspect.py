"""What a checkpoint holds, without reading its weights: files and hashes, format, counts, components, config facts."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from modelprov._hashing import FileHasher
from modelprov.findings import Subject, SubjectFile
from modelprov.reader import Checkpoint, hash_tensors, open_checkpoint

from .naming import top_level_component


@dataclass
class InspectedFile:
    """One file of the checkpoint with its role and (if hashed) sha256."""

    path: str
    size: int
    role: str
    sha256: str | None = None
    link_target: str | None = None  # a symbolic link leaving the checkpoint folder: where it really points


@dataclass
class DtypeCount:
    """How many tensors and parameters are stored in one dtype (or GGML quantisation type)."""

    tensors: int = 0
    parameters: int = 0


@dataclass
class InspectedTensor:
    """One tensor as listed by `inspect --tensors`: stored dtype, PyTorch-order shape, and optional sha256."""

    name: str
    dtype: str
    shape: list[int]
    file: str
    sha256: str | None = None


@dataclass
class Inspection:
    """The facts `modelprov inspect` prints, and the `Subject` of a scan report."""

    path: str
    format: str
    quantisation: str | None
    files: list[InspectedFile]
    tensor_count: int
    parameter_count: int
    components: dict[str, int]  # top-level component (tensor-name prefix) -> parameters
    dtypes: dict[str, DtypeCount]
    config: dict[str, Any] = field(default_factory=dict)  # architecture, layers, hidden size, vocab size
    ignored_files: list[str] = field(default_factory=list)
    tensors: list[InspectedTensor] | None = None  # only when asked for (`list_tensors` / `tensor_hashes`)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def subject(self) -> Subject:
        """The scan report's description of what was scanned."""
        return Subject(
            path=self.path,
            format=self.format,
            quantisation=self.quantisation,
            files=[SubjectFile(f.path, f.size, f.sha256, f.role, f.link_target) for f in self.files],
            tensor_count=self.tensor_count,
            parameter_count=self.parameter_count,
            components=dict(self.components),
            config=dict(self.config),
        )


def inspect_checkpoint(path: str | os.PathLike[str] | Checkpoint, hash_files: bool = True, *,
                       list_tensors: bool = False, tensor_hashes: bool = False,
                       progress: Callable[[int], None] | None = None) -> Inspection:
    """Inspect a checkpoint path (or an open `Checkpoint`); hash its files concurrently when `hash_files`.

    Parameter counts are logical (the product of each shape), also for quantised GGUF tensors.
    `list_tensors` adds every tensor; `tensor_hashes` also the sha256 of each tensor's stored bytes.
    """
    owned = not isinstance(path, Checkpoint)
    ckpt = open_checkpoint(path) if owned else path
    try:
        files = ckpt.files()
        # a Hub checkpoint has no local files: its sha256 values are the ones the Hub states for LFS files
        remote_sha256: dict[str, str] | None = getattr(ckpt, "known_sha256", None)
        hasher = (FileHasher([f.path for f in files], progress=progress)
                  if hash_files and remote_sha256 is None else None)
        components: Counter[str] = Counter()
        dtypes: dict[str, DtypeCount] = {}
        tensor_count = parameter_count = 0
        for info in ckpt.tensors():
            tensor_count += 1
            parameter_count += info.numel
            components[top_level_component(info.name)] += info.numel
            counts = dtypes.setdefault(info.dtype, DtypeCount())
            counts.tensors += 1
            counts.parameters += info.numel
        tensors = None
        if list_tensors or tensor_hashes:
            sums = {d.name: d.sha256 for d in hash_tensors(ckpt)} if tensor_hashes else {}
            tensors = [InspectedTensor(t.name, t.dtype, list(t.shape), str(t.file), sums.get(t.name))
                       for t in ckpt.tensors()]
        if hasher is not None:
            sha256 = [d.sha256 for d in hasher.result()]
        elif remote_sha256 is not None and hash_files:
            sha256 = [remote_sha256.get(f.path.as_posix()) for f in files]
        else:
            sha256 = [None] * len(files)
        return Inspection(
            path=str(ckpt.metadata.get("archive") or ckpt.path),  # a zipped checkpoint: the zip, not its temp copy
            format=ckpt.format,
            quantisation=ckpt.quantisation,
            files=[InspectedFile(str(f.path), f.size, f.role, h, f.link_target) for f, h in zip(files, sha256)],
            tensor_count=tensor_count,
            parameter_count=parameter_count,
            components=dict(sorted(components.items(), key=lambda kv: (-kv[1], kv[0]))),
            dtypes=dict(sorted(dtypes.items(), key=lambda kv: (-kv[1].parameters, kv[0]))),
            config=config_facts(ckpt.config or {}),
            ignored_files=list(ckpt.metadata.get("ignored_files", [])),
            tensors=tensors,
        )
    finally:
        if owned:
            ckpt.close()


_FACT_KEYS: dict[str, tuple[str, ...]] = {
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "depth"),
    "hidden_size": ("hidden_size", "d_model", "n_embd", "dim"),
    "vocab_size": ("vocab_size", "n_vocab", "padded_vocab_size"),
}
_SUB_CONFIGS = ("text_config", "llm_config", "language_config", "vision_config")


def config_facts(config: dict[str, Any]) -> dict[str, Any]:
    """Architecture, layers, hidden size and vocab size from a config.json (or GGUF-derived) dict.

    Multimodal configs keep these in nested `text_config`/`vision_config`; those are reported per part.
    """
    facts: dict[str, Any] = {}
    archs = config.get("architectures")
    if isinstance(archs, list) and archs:
        facts["architecture"] = ", ".join(str(a) for a in archs)
    if isinstance(config.get("model_type"), str):
        facts["model_type"] = config["model_type"]
        facts.setdefault("architecture", config["model_type"])
    for fact, keys in _FACT_KEYS.items():
        value = next((config[k] for k in keys if isinstance(config.get(k), int)), None)
        if value is not None:
            facts[fact] = value
    for sub in _SUB_CONFIGS:
        if isinstance(config.get(sub), dict):
            nested = config_facts(config[sub])
            if nested:
                facts[sub] = nested
    return facts
