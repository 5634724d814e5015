"""Every bad input named in the issue: one stderr line naming the file and the problem, exit status 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from modelprov.cli.main import app

from .conftest import write_gguf, write_raw_safetensors, write_sharded

F32_2x2 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}


def _missing(tmp: Path) -> tuple[Path, Path]:
    return tmp / "nowhere", tmp / "nowhere"


def _empty_folder(tmp: Path) -> tuple[Path, Path]:
    (tmp / "empty").mkdir()
    return tmp / "empty", tmp / "empty"


def _no_checkpoint(tmp: Path) -> tuple[Path, Path]:
    (tmp / "docs").mkdir()
    (tmp / "docs" / "README.md").write_text("no weights here")
    (tmp / "docs" / "config.json").write_text("{}")
    return tmp / "docs", tmp / "docs"


def _raw(header: object, data: bytes = b"\0" * 16, length: int | None = None):
    def build(tmp: Path) -> tuple[Path, Path]:
        f = write_raw_safetensors(tmp / "model.safetensors", header, data, length)
        return f, f
    return build


def _weight_map_missing_shard(tmp: Path) -> tuple[Path, Path]:
    folder = tmp / "sharded"
    weight_map = write_sharded(folder, {"a": np.zeros((2, 2), np.float32), "b": np.ones(3, np.float32)}, 2)
    missing = sorted(set(weight_map.values()))[1]
    (folder / missing).unlink()
    return folder, folder / "model.safetensors.index.json"


def _truncated_shard(tmp: Path) -> tuple[Path, Path]:
    f = tmp / "model.safetensors"
    save_file({"w": np.arange(64, dtype=np.float32).reshape(8, 8)}, str(f))
    f.write_bytes(f.read_bytes()[:-40])
    return f, f


def _truncated_gguf_data(tmp: Path) -> tuple[Path, Path]:
    f = write_gguf(tmp / "m.gguf", {"blk.0.w.weight": ("F32", np.ones((64, 64), np.float32))})
    f.write_bytes(f.read_bytes()[:-1000])
    return f, f


def _truncated_gguf_header(tmp: Path) -> tuple[Path, Path]:
    f = write_gguf(tmp / "m.gguf", {"blk.0.w.weight": ("F32", np.ones((64, 64), np.float32))})
    f.write_bytes(f.read_bytes()[:50])
    return f, f


def _not_gguf(tmp: Path) -> tuple[Path, Path]:
    f = tmp / "m.gguf"
    f.write_bytes(b"GGML this is not a gguf file")
    return f, f


def _bin_with_objects(tmp: Path) -> tuple[Path, Path]:
    torch.save({"w": torch.zeros(2, 2), "epoch": 3, "note": "trained"}, tmp / "pytorch_model.bin")
    return tmp, tmp / "pytorch_model.bin"


def _bin_not_a_zip(tmp: Path) -> tuple[Path, Path]:
    (tmp / "pytorch_model.bin").write_bytes(b"\x80\x02garbage")
    return tmp / "pytorch_model.bin", tmp / "pytorch_model.bin"


def _several_ggufs(tmp: Path) -> tuple[Path, Path]:
    for q in ("Q4_0", "Q8_0"):
        write_gguf(tmp / f"m.{q}.gguf", {"blk.0.w.weight": ("F32", np.ones((4, 32), np.float32))})
    return tmp, tmp


def _unsupported_file(tmp: Path) -> tuple[Path, Path]:
    (tmp / "weights.tflite").write_bytes(b"\0" * 10)
    return tmp / "weights.tflite", tmp / "weights.tflite"


CASES: dict[str, tuple[Callable[[Path], tuple[Path, Path]], str]] = {
    "missing path": (_missing, "no such file"),
    "empty folder": (_empty_folder, "empty"),
    "folder with no checkpoint": (_no_checkpoint, "no checkpoint"),
    "file shorter than the length prefix": (lambda t: _short(t), "too short"),
    "header length larger than the file": (_raw({"w": F32_2x2}, length=10_000), "larger than the file"),
    "header not JSON": (_raw(b"{not json!", b""), "not valid JSON"),
    "header not UTF-8": (_raw(b"\xff\xfe{}", b""), "not valid JSON"),
    "header a JSON array": (_raw([1, 2, 3], b""), "not an object"),
    "header entry not an object": (_raw({"w": [1]}), "not an object"),
    "duplicate tensor name": (_raw(b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                   b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', b"\0" * 8),
                              "duplicate"),
    "byte range outside the data section": (_raw({"w": {**F32_2x2, "data_offsets": [8, 24]}}), "outside"),
    "negative offset": (_raw({"w": {**F32_2x2, "data_offsets": [-4, 12]}}), "outside"),
    "overlapping tensors": (_raw({"a": F32_2x2, "b": {**F32_2x2, "data_offsets": [8, 24]}}, b"\0" * 24), "overlap"),
    "size not matching dtype x shape": (_raw({"w": {**F32_2x2, "shape": [2, 3]}}), "do not match"),
    "huge shape": (_raw({"w": {**F32_2x2, "shape": [2**62, 2**62]}}), "do not match"),
    "bad shape": (_raw({"w": {**F32_2x2, "shape": [2, -2]}}), "shape"),
    "bad offsets": (_raw({"w": {**F32_2x2, "data_offsets": [0]}}), "data_offsets"),
    "unknown dtype": (_raw({"w": {**F32_2x2, "dtype": "F12"}}), "unknown dtype"),
    "metadata not an object": (_raw({"__metadata__": [1], "w": F32_2x2}), "__metadata__"),
    "weight map naming a missing shard": (_weight_map_missing_shard, "missing shard"),
    "truncated safetensors data": (_truncated_shard, "outside"),
    "truncated GGUF (data)": (_truncated_gguf_data, "truncated"),
    "truncated GGUF (header)": (_truncated_gguf_header, "truncated"),
    "not a GGUF": (_not_gguf, "GGUF"),
    ".bin with non-tensor objects": (_bin_with_objects, "not a tensor"),
    ".bin that is not a checkpoint": (_bin_not_a_zip, "weights-only"),
    "several GGUF files": (_several_ggufs, "GGUF files"),
    "several .pt files": (lambda t: _several(t, "pt"), ".pt/.pth files"),
    "zip-slip member": (lambda t: _zip(t, {"../evil.safetensors": b"x"}), "zip-slip"),
    "absolute zip member": (lambda t: _zip(t, {"/tmp/evil.safetensors": b"x"}), "zip-slip"),
    "zip member that is a symlink": (lambda t: _zip(t, {"model.safetensors": b"/etc/passwd"}, link=True), "symbolic link"),
    "zip bomb member": (lambda t: _zip(t, {"model.safetensors": b"\0" * (40 << 20)}), "oversized member"),
    "unsupported file type": (_unsupported_file, "unsupported"),
}


def _several(tmp: Path, suffix: str) -> tuple[Path, Path]:
    folder = tmp / "runs"
    folder.mkdir()
    for epoch in (1, 2):
        torch.save({"w": torch.ones(2)}, folder / f"epoch{epoch}.{suffix}")
    return folder, folder


def _zip(tmp: Path, members: dict[str, bytes], link: bool = False) -> tuple[Path, Path]:
    """A folder holding `model.zip` with the given members (written raw: zipfile would normalise the names)."""
    import zipfile

    folder = tmp / "shipped"
    folder.mkdir()
    archive = folder / "model.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if link:
                info.external_attr = (0o120777 << 16)
            zf.writestr(info, data)
    return folder, archive


def _short(tmp: Path) -> tuple[Path, Path]:
    f = tmp / "model.safetensors"
    f.write_bytes(b"\x10\0\0")
    return f, f


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2(case: str, tmp_path: Path, cli) -> None:
    build, problem = CASES[case]
    path, named = build(tmp_path)
    result = cli.invoke(app, ["inspect", str(path)])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("modelprov: error: ")
    assert str(named) in lines[0]
    assert problem in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_truncated_real_gguf(tmp_path: Path, smollm2_gguf: Path, cli) -> None:
    """The real SmolLM2 file cut in the middle of its tensor data."""
    data = smollm2_gguf.read_bytes()
    cut = tmp_path / "SmolLM2.gguf"
    cut.write_bytes(data[: len(data) * 2 // 3])
    result = cli.invoke(app, ["inspect", str(cut)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and str(cut) in result.stderr and "truncated" in result.stderr


def test_zero_tensor_checkpoint_is_valid(tmp_path: Path, cli) -> None:
    """A well-formed file without tensors is not an error for `inspect` (a scan decides what to do with it)."""
    f = write_raw_safetensors(tmp_path / "model.safetensors", {"__metadata__": {"format": "pt"}})
    result = cli.invoke(app, ["inspect", "--json", str(f)])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["tensor_count"] == 0
