"""Find the checkpoint files in a path (file, folder, sharded index, sub-model folders) and open them.

Folder rules, in order: safetensors (single, sharded via `*.safetensors.index.json`, and sub-model folders)
win over `*pytorch_model*.bin`, which win over GGUF, which wins over ONNX; files of a losing format, and safetensors files a
folder's weight-map index does not name (e.g. `consolidated.safetensors`), are listed in
`checkpoint.metadata["ignored_files"]`. A folder with several GGUF files (several quantisations) is an error
that names them: pass the one file to inspect; the same for several ONNX files. Empty folders and folders without any checkpoint are
`CheckpointError`s (exit status 2).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from modelprov._inputs import check_regular, load_json
from modelprov.errors import CheckpointError
from ._base import CONFIG_NAMES, TOKENIZER_NAMES, Checkpoint, CheckpointFile
from ._gguf import GgufCheckpoint
from ._hub import open_hub_checkpoint
from ._layout import checkpoint_zips, extract_zip, nested_root, transformer_folder
from ._onnx import OnnxCheckpoint
from ._pytorch import PytorchCheckpoint
from ._safetensors import SafetensorsCheckpoint

__all__ = ["open_checkpoint", "SafetensorsCheckpoint", "GgufCheckpoint", "PytorchCheckpoint", "OnnxCheckpoint"]

PYTORCH_SUFFIXES = (".bin", ".pt", ".pth")


def open_checkpoint(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> Checkpoint:
    """Open a checkpoint file or folder; raise `CheckpointError` with the file and problem if it cannot be read.

    Every file read must be a regular file (a FIFO or device is refused unopened). A file that is a symbolic link
    leaving the checkpoint folder is listed with its `link_target`; `follow_symlinks=False` refuses it instead.
    """
    if str(path).startswith("hf://"):
        return open_hub_checkpoint(str(path))
    if not str(path).strip():  # Path("") is ".": never scan the working folder by accident
        raise CheckpointError(None, "checkpoint path is empty")
    root = Path(path)
    if not root.exists():
        raise CheckpointError(root, "no such file or directory")
    if root.is_file():
        if root.suffix == ".zip":
            return _open_archive(root)
        return _vetted(lambda: _open_file(root), root.parent, [root], follow_symlinks)
    if not root.is_dir():
        check_regular(root, CheckpointError)  # names what it is: a FIFO, a device, a socket
    try:
        empty = not any(root.iterdir())
    except OSError as exc:
        raise CheckpointError(root, f"cannot list folder: {exc.strerror or exc}") from None
    if empty:
        raise CheckpointError(root, "folder is empty")
    return _vetted(lambda: _open_folder(root, follow=follow_symlinks), root, None, follow_symlinks)


def _vetted(opener: Callable[[], Checkpoint], root: Path, named: list[Path] | None, follow: bool) -> Checkpoint:
    """Open with `opener`, then mark (or, not following, refuse) files that link out of `root`.

    The folder opener vets its weight files before reading them (`_vet`); side files and the single named file are
    vetted here. A refused checkpoint is closed before the error propagates.
    """
    for f in named or ():
        _vet([f], root, follow)
    ckpt = opener()
    try:
        for f in ckpt.files():
            if not f.path.is_relative_to(root):  # a zip's members, extracted into a temporary folder
                continue
            target = link_out_of(f.path, root)
            if target is not None:
                if not follow:
                    raise _refused(f.path, target)
                f.link_target = str(target)
    except BaseException:
        ckpt.close()
        raise
    return ckpt


def link_out_of(path: Path, root: Path) -> Path | None:
    """Where `path` really is when a symbolic link takes it out of folder `root`; None when it stays inside."""
    try:
        real, base = path.resolve(), root.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise CheckpointError(path, "symbolic link loop") from None
    if real == base or base in real.parents:
        return None
    return real


def _refused(path: Path, target: Path) -> CheckpointError:
    return CheckpointError(path, f"symbolic link to {target}, outside the checkpoint folder; refused "
                                 "(--no-follow-symlinks)")


def _vet(files: list[Path], root: Path, follow: bool) -> list[Path]:
    """Weight files about to be read: each a regular file; one linking out of the folder refused when not following."""
    for f in files:
        check_regular(f, CheckpointError)
        if not follow:
            target = link_out_of(f, root)
            if target is not None:
                raise _refused(f, target)
    return files


def _open_archive(archive: Path) -> Checkpoint:
    """A checkpoint zipped whole: extracted into a temporary folder that closing the checkpoint removes."""
    folder = extract_zip(archive)
    try:  # a zip's single top folder (`zip -r model.zip model/`) is an artefact of zipping: read from inside it
        ckpt = _open_folder(nested_root(folder), zips=False)  # no zip inside a zip
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    ckpt.metadata["archive"] = str(archive)
    ckpt.adopt_archive(archive, folder)
    return ckpt


def _open_file(file: Path) -> Checkpoint:
    name = file.name
    if name.endswith(".safetensors.index.json"):
        shards, expected = _indexed_shards(file.parent, file, "")
        return SafetensorsCheckpoint(file.parent, shards, _side_files(file.parent), _read_config(file.parent), expected)
    if file.suffix == ".safetensors":
        return SafetensorsCheckpoint(file, [(file, "")], _side_files(file.parent), _read_config(file.parent))
    if file.suffix == ".gguf":
        return GgufCheckpoint(file, [])
    if file.suffix in PYTORCH_SUFFIXES:
        return PytorchCheckpoint(file, [(file, "")], _side_files(file.parent), _read_config(file.parent))
    if file.suffix == ".onnx":
        return OnnxCheckpoint(file, _side_files(file.parent), _read_config(file.parent))
    raise CheckpointError(file, f"unsupported checkpoint file type {file.suffix or '(no extension)'!r} "
                          "(expected .safetensors, .gguf, .onnx or .bin)")


def _open_folder(root: Path, zips: bool = True, follow: bool = True) -> Checkpoint:
    folders = _model_folders(root)
    safetensors: list[tuple[Path, str]] = []
    expected: dict[Path, set[str]] = {}
    pytorch: list[tuple[Path, str]] = []
    ggufs: list[Path] = []
    onnxs: list[Path] = []
    unindexed: list[Path] = []
    for folder, prefix in folders:
        shards, exp = _folder_safetensors(folder, prefix)
        unindexed += sorted(set(folder.glob("*.safetensors")) - {f for f, _ in shards})
        safetensors += shards
        expected.update(exp)
        pytorch += [(f, prefix) for f in _folder_pytorch(folder)]
        ggufs += sorted(folder.glob("*.gguf"))
        onnxs += sorted(folder.glob("*.onnx"))
    side = [f for folder, _ in folders for f in _side_files(folder)]
    config = _read_config(_config_folder(root))
    if safetensors:
        _vet([f for f, _ in safetensors], root, follow)
        ckpt: Checkpoint = SafetensorsCheckpoint(root, safetensors, side, config, expected)
        ignored = unindexed + [f for f, _ in pytorch] + ggufs + onnxs
    elif pytorch:
        _vet([f for f, _ in pytorch], root, follow)
        ckpt = PytorchCheckpoint(root, pytorch, side, config)
        ignored = ggufs + onnxs
    elif ggufs:
        _only_one(root, ggufs, "GGUF")
        ckpt = GgufCheckpoint(_vet(ggufs, root, follow)[0], side)
        ignored = list(onnxs)
    elif onnxs:
        _only_one(root, onnxs, "ONNX")
        ckpt = OnnxCheckpoint(_vet(onnxs, root, follow)[0], side, config if config is not None else _read_config(onnxs[0].parent))
        ignored = []
    elif zips and checkpoint_zips(root):
        archives = checkpoint_zips(root)
        _only_one(root, archives, "zip")
        return _open_archive(archives[0])
    else:
        raise CheckpointError(root, "folder holds no checkpoint (no *.safetensors, *.gguf, *.onnx, "
                              "*pytorch_model*.bin, *.pt, *.pth or *.zip)")
    ckpt.metadata["ignored_files"] = [str(f) for f in ignored]
    return ckpt


def _config_folder(root: Path) -> Path:
    """Where a folder's config.json is: the root, a sentence-transformers Transformer module's folder, or the
    lone sub-folder a model is nested in (`package/model_files/`)."""
    if (root / "config.json").is_file():
        return root
    return transformer_folder(root) or nested_root(root)


def _only_one(root: Path, files: list[Path], kind: str) -> None:
    """Several files of one format (several quantisations or exports): the user must pick one."""
    if len(files) > 1:
        names = ", ".join(str(f.relative_to(root)) for f in files[:6]) + (" …" if len(files) > 6 else "")
        raise CheckpointError(root, f"folder holds {len(files)} {kind} files ({names}); pass the one to read")


def _model_folders(root: Path) -> list[tuple[Path, str]]:
    """The root and every non-hidden sub-folder, with the dotted tensor-name prefix of each."""
    out = [(root, "")]
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        for d in dirnames:
            folder = Path(dirpath) / d
            out.append((folder, ".".join(folder.relative_to(root).parts) + "."))
    return sorted(out, key=lambda fp: fp[1])


def _folder_safetensors(folder: Path, prefix: str) -> tuple[list[tuple[Path, str]], dict[Path, set[str]]]:
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if not indexes:
        return [(f, prefix) for f in sorted(folder.glob("*.safetensors"))], {}
    shards: list[tuple[Path, str]] = []
    expected: dict[Path, set[str]] = {}
    for index in indexes:
        s, e = _indexed_shards(folder, index, prefix)
        shards += [x for x in s if x not in shards]
        for k, v in e.items():
            expected.setdefault(k, set()).update(v)
    return shards, expected


def _indexed_shards(folder: Path, index: Path, prefix: str) -> tuple[list[tuple[Path, str]], dict[Path, set[str]]]:
    """Shards named by a weight-map index, each with the tensor names the index places in it."""
    weight_map = _read_weight_map(index)
    expected: dict[Path, set[str]] = {}
    for tensor, shard_name in weight_map.items():
        shard = folder / shard_name
        if not shard.is_file():
            raise CheckpointError(index, f"weight map names missing shard {shard_name!r}")
        expected.setdefault(shard, set()).add(tensor)
    return [(s, prefix) for s in sorted(expected)], expected


def _read_weight_map(index: Path) -> dict[str, str]:
    data = load_json(index, CheckpointError, what="weight-map index")
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                   for k, v in weight_map.items()):
        raise CheckpointError(index, "weight-map index has no \"weight_map\" object of tensor name -> shard file name")
    for tensor, shard in weight_map.items():
        if "/" in shard or "\\" in shard or shard in (".", "..") or "\0" in shard:
            raise CheckpointError(index, f"weight map places tensor {tensor!r} in {shard!r}: the path escapes the "
                                  "checkpoint folder (a shard must be a file name beside the index)")
    return weight_map


def _folder_pytorch(folder: Path) -> list[Path]:
    indexes = sorted(folder.glob("*pytorch_model*.bin.index.json"))
    if indexes:
        names: set[Path] = set()
        for index in indexes:
            for shard_name in set(_read_weight_map(index).values()):
                shard = folder / shard_name
                if not shard.is_file():
                    raise CheckpointError(index, f"weight map names missing shard {shard_name!r}")
                names.add(shard)
        return sorted(names)
    found = sorted(folder.glob("*pytorch_model*.bin"))  # also diffusers' diffusion_pytorch_model.bin
    if found:
        return found
    saved = sorted(p for p in [*folder.glob("*.pt"), *folder.glob("*.pth")] if p.is_file())
    _only_one(folder, saved, "PyTorch .pt/.pth")  # several are several checkpoints (epochs), not shards
    return saved


def _side_files(folder: Path) -> list[CheckpointFile]:
    out = []
    for name in (*CONFIG_NAMES, *TOKENIZER_NAMES):
        f = folder / name
        if f.is_file():
            out.append(CheckpointFile(f, f.stat().st_size, "config" if name in CONFIG_NAMES else "tokenizer"))
    for f in sorted([*folder.glob("*.safetensors.index.json"), *folder.glob("*pytorch_model*.bin.index.json")]):
        out.append(CheckpointFile(f, f.stat().st_size, "index"))
    return out


def _read_config(folder: Path) -> dict[str, Any] | None:
    f = folder / "config.json"
    if not f.is_file():
        return None
    cfg = load_json(f, CheckpointError, what="config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f, "config is not a JSON object")
    return cfg
