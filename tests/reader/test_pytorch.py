"""`.bin` checkpoints through the weights-only loader: values equal the MiniLM ground truth, objects are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from modelprov.errors import CheckpointError
from modelprov.reader import open_checkpoint


def _state_dict(tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}


def test_bin_reads_like_the_safetensors_original(tmp_path: Path, minilm_tensors: dict[str, np.ndarray]) -> None:
    torch.save(_state_dict(minilm_tensors), tmp_path / "pytorch_model.bin")
    with open_checkpoint(tmp_path) as ckpt:
        assert ckpt.format == "pytorch"
        infos = {t.name: t for t in ckpt.tensors()}
        assert set(infos) == set(minilm_tensors)
        for name, expected in minilm_tensors.items():
            assert infos[name].shape == expected.shape
            np.testing.assert_array_equal(ckpt.read(name), expected.astype(np.float32))
        name = "embeddings.word_embeddings.weight"
        np.testing.assert_array_equal(ckpt.read_rows(name, [9, 3]), minilm_tensors[name][[9, 3]])


def test_byte_ranges_point_at_the_tensor_bytes(tmp_path: Path, minilm_tensors: dict[str, np.ndarray]) -> None:
    torch.save(_state_dict(minilm_tensors), tmp_path / "model.bin")
    data = (tmp_path / "model.bin").read_bytes()
    with open_checkpoint(tmp_path / "model.bin") as ckpt:
        for info in ckpt.tensors():
            start, end = info.byte_range
            assert data[start:end] == minilm_tensors[info.name].tobytes()


def test_shared_and_strided_tensors(tmp_path: Path) -> None:
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    sd = {"base": base, "tail": base[2:], "transposed": base.t(), "bf16": base.to(torch.bfloat16)}
    torch.save(sd, tmp_path / "m.bin")
    with open_checkpoint(tmp_path / "m.bin") as ckpt:
        for name, t in sd.items():
            np.testing.assert_array_equal(ckpt.read_rows(name, [1, 0]), t[[1, 0]].float().numpy())


def test_folder_with_both_formats_prefers_safetensors(tmp_path: Path, minilm_dir: Path,
                                                      minilm_tensors: dict[str, np.ndarray]) -> None:
    shutil.copy(minilm_dir / "model.safetensors", tmp_path / "model.safetensors")
    torch.save(_state_dict(minilm_tensors), tmp_path / "pytorch_model.bin")
    with open_checkpoint(tmp_path) as ckpt:
        assert ckpt.format == "safetensors"
        assert ckpt.metadata["ignored_files"] == [str(tmp_path / "pytorch_model.bin")]
        assert all(f.path.suffix != ".bin" for f in ckpt.files())


class Payload:
    """Stands in for an arbitrary pickled object."""


@pytest.mark.parametrize("content", [{"w": torch.zeros(2), "step": 5}, {"w": torch.zeros(2), "opt": Payload()},
                                     [torch.zeros(2)], {"nested": {"w": torch.zeros(2)}}])
def test_non_tensor_objects_are_refused(tmp_path: Path, content: object) -> None:
    torch.save(content, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as err:
        open_checkpoint(tmp_path)
    assert err.value.path == str(tmp_path / "pytorch_model.bin")


def test_sharded_bin_with_index_in_a_diffusers_style_subfolder(tmp_path: Path,
                                                               minilm_tensors: dict[str, np.ndarray]) -> None:
    import json

    folder = tmp_path / "pipe" / "unet"
    folder.mkdir(parents=True)
    names = sorted(minilm_tensors)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2])):
        shard = f"diffusion_pytorch_model-0000{i + 1}-of-00002.bin"
        torch.save({n: torch.from_numpy(minilm_tensors[n].copy()) for n in part}, folder / shard)
        weight_map.update({n: shard for n in part})
    (folder / "diffusion_pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open_checkpoint(tmp_path / "pipe") as ckpt:
        assert ckpt.format == "pytorch"
        assert {t.name for t in ckpt.tensors()} == {f"unet.{n}" for n in names}
        name = "encoder.layer.2.attention.output.dense.weight"
        np.testing.assert_array_equal(ckpt.read_rows(f"unet.{name}", [3]), minilm_tensors[name][[3]])
        assert [f.role for f in ckpt.files()].count("index") == 1
