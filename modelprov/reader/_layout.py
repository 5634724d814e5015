"""Packaging layouts around a checkpoint: sentence-transformers folders, a model nested in a lone sub-folder
(`model_files/`), and a checkpoint zipped inside a folder.

A zip is extracted member by member into a fresh temporary folder only (removed when the checkpoint closes);
members that would land outside it (absolute paths, `..`, drive letters, symlinks) are refused, and so are
members that inflate more than `MAX_RATIO` times their compressed size, archives whose members would not fit
the temporary folder's free space, and members whose data runs longer than the size their header declares.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from modelprov._inputs import load_json
from modelprov.errors import CheckpointError, ProvenanceError

WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".onnx", ".bin", ".pt", ".pth")
MAX_RATIO = 200  # uncompressed / compressed: weights barely compress; zip bombs compress thousands of times
MAX_MEMBERS = 100_000
_SLACK_BYTES = 1 << 20  # a small member may inflate to this much whatever its ratio
_COPY_CHUNK = 16 * 1024 * 1024
_MAX_MODULES_JSON = 1 << 20
_MAX_DEPTH = 8


def transformer_folder(root: Path) -> Path | None:
    """The folder of a sentence-transformers model's Transformer module (`0_Transformer/`, or the root) per
    its `modules.json`, or None when `root` is not a sentence-transformers folder."""
    modules = root / "modules.json"
    try:
        if not modules.is_file() or modules.stat().st_size > _MAX_MODULES_JSON:
            return None
        entries = load_json(modules, max_bytes=_MAX_MODULES_JSON)
    except (OSError, ProvenanceError):
        return None  # modules.json only says where the parts are; an unreadable one is ignored
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("type", "")).endswith("models.Transformer"):
            rel = entry.get("path", "")
            if isinstance(rel, str) and ".." not in PurePosixPath(rel).parts and not rel.startswith("/"):
                folder = root / rel
                return folder if folder.is_dir() else None
    return None


def has_weights(folder: Path) -> bool:
    """Whether `folder` itself (not its sub-folders) holds a weights file of any format, or a zip."""
    try:
        return any(p.suffix in (*WEIGHT_SUFFIXES, ".zip") and p.is_file() for p in folder.iterdir())
    except OSError as exc:
        raise CheckpointError(folder, f"cannot list folder: {exc.strerror or exc}") from None


def nested_root(root: Path) -> Path:
    """`root`, or the lone sub-folder chain (`model_files/`, `model/`) holding the model when `root` holds no
    weights, config or sub-folder besides it: where its config and tokenizer are looked for (tensor names keep
    the sub-folder prefix, as for any sub-model folder)."""
    for _ in range(_MAX_DEPTH):
        if has_weights(root) or (root / "config.json").is_file() or (root / "modules.json").is_file():
            return root
        subs = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith((".", "__"))]
        if len(subs) != 1:
            return root
        root = subs[0]
    return root


def checkpoint_zips(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.zip") if p.is_file())


def extract_zip(archive: Path) -> Path:
    """Extract `archive` into a new temporary folder and return it; the caller removes it when done."""
    target = Path(tempfile.mkdtemp(prefix="modelprov-zip-"))
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _checked_members(archive, zf, target)
            for info in members:
                _extract_member(archive, zf, info, target)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise CheckpointError(archive, f"not a readable zip archive ({exc})") from None
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise CheckpointError(archive, f"cannot extract: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _checked_members(archive: Path, zf: zipfile.ZipFile, target: Path) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(archive, f"zip holds {len(infos)} members, more than {MAX_MEMBERS}")
    total = 0
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name).parts
        if name.startswith("/") or "\\" in name or ".." in parts or (parts and ":" in parts[0]) or "\x00" in name:
            raise CheckpointError(archive, f"zip member {name!r} would be written outside the extraction folder "
                                  "(zip-slip); refused")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise CheckpointError(archive, f"zip member {name!r} is a symbolic link; refused")
        if info.file_size > MAX_RATIO * info.compress_size + _SLACK_BYTES:
            raise CheckpointError(archive, f"zip member {name!r} inflates {info.compress_size} bytes to "
                                  f"{info.file_size} (more than {MAX_RATIO}x): oversized member refused")
        total += info.file_size
    free = shutil.disk_usage(target).free
    if total > free:
        raise CheckpointError(archive, f"zip members hold {total} bytes, more than the {free} bytes free in "
                              f"{target.parent}: oversized archive refused")
    return infos


def _extract_member(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    dest = target.joinpath(*PurePosixPath(info.filename).parts)
    if info.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as src, open(dest, "xb") as out:
        while chunk := src.read(_COPY_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise CheckpointError(archive, f"zip member {info.filename!r} holds more data than its declared "
                                      f"{info.file_size} bytes; refused")
            out.write(chunk)
    os.chmod(dest, 0o600)
