"""Safetensors reading against the safetensors library on the real all-MiniLM-L6-v2 and folders derived from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from modelprov.errors import CheckpointError
from modelprov.reader import open_checkpoint

from .conftest import write_sharded


def test_minilm_listing_matches_safetensors_library(minilm_dir: Path) -> None:
    with safe_open(str(minilm_dir / "model.safetensors"), "np") as ref, open_checkpoint(minilm_dir) as ckpt:
        infos = {t.name: t for t in ckpt.tensors()}
        assert set(infos) == set(ref.keys())
        for name in ref.keys():
            sl = ref.get_slice(name)
            assert infos[name].shape == tuple(sl.get_shape())
            assert infos[name].dtype == sl.get_dtype()
        assert ckpt.format == "safetensors" and ckpt.quantisation is None
        assert ckpt.config["model_type"] == "bert"


def test_minilm_every_tensor_reads_exactly(minilm_dir: Path, minilm_tensors: dict[str, np.ndarray]) -> None:
    with open_checkpoint(minilm_dir / "model.safetensors") as ckpt:
        for name, expected in minilm_tensors.items():
            got = ckpt.read(name)
            assert got.dtype == np.float32 and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected.astype(np.float32))


@pytest.mark.parametrize(
    "rows",
    [slice(10, 20), slice(None, None, 7), slice(-5, None), [3, 1, 1, 30521, -1], np.array([5, 6, 7, 100]), [],
     slice(40, 10)],
)
def test_row_selection_matches_numpy_indexing(minilm_dir: Path, minilm_tensors: dict[str, np.ndarray], rows) -> None:
    name = "embeddings.word_embeddings.weight"
    with open_checkpoint(minilm_dir) as ckpt:
        got = ckpt.read_rows(name, rows)
    expected = minilm_tensors[name][rows if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)]
    np.testing.assert_array_equal(got, expected.reshape(-1, 384))


def test_row_read_touches_only_requested_bytes(minilm_dir: Path, tmp_path: Path,
                                              minilm_tensors: dict[str, np.ndarray]) -> None:
    """Corrupting every byte outside the requested rows must not change what the rows read back as."""
    src = minilm_dir / "model.safetensors"
    with open_checkpoint(src) as ckpt:
        info = ckpt.tensor("embeddings.word_embeddings.weight")
    data = bytearray(src.read_bytes())
    row_bytes = info.row_length * 4
    keep = (info.byte_range[0] + 100 * row_bytes, info.byte_range[0] + 102 * row_bytes)
    garbage = np.frombuffer(np.random.default_rng(0).bytes(info.nbytes), dtype=np.uint8)
    data[info.byte_range[0]: info.byte_range[1]] = garbage.tobytes()
    data[keep[0]: keep[1]] = src.read_bytes()[keep[0]: keep[1]]
    (tmp_path / "m.safetensors").write_bytes(bytes(data))
    with open_checkpoint(tmp_path / "m.safetensors") as ckpt:
        np.testing.assert_array_equal(ckpt.read_rows(info.name, slice(100, 102)),
                                      minilm_tensors[info.name][100:102])


def test_sharded_folder_reads_like_the_single_file(tmp_path: Path, minilm_tensors: dict[str, np.ndarray]) -> None:
    weight_map = write_sharded(tmp_path / "sharded", minilm_tensors, 3)
    with open_checkpoint(tmp_path / "sharded") as ckpt:
        infos = {t.name: t for t in ckpt.tensors()}
        assert set(infos) == set(minilm_tensors)
        assert {t.file.name for t in infos.values()} == set(weight_map.values())
        for name in ("encoder.layer.5.output.dense.weight", "pooler.dense.bias"):
            assert infos[name].file.name == weight_map[name]
            np.testing.assert_array_equal(ckpt.read(name), minilm_tensors[name])
        roles = [f.role for f in ckpt.files()]
        assert roles.count("weights") == 3 and roles.count("index") == 1
    # opening the index file itself gives the same checkpoint
    with open_checkpoint(tmp_path / "sharded" / "model.safetensors.index.json") as ckpt:
        assert {t.name for t in ckpt.tensors()} == set(minilm_tensors)


def test_weight_map_that_misplaces_a_tensor_is_refused(tmp_path: Path, minilm_tensors: dict[str, np.ndarray]) -> None:
    folder = tmp_path / "sharded"
    weight_map = write_sharded(folder, minilm_tensors, 2)
    shards = sorted(set(weight_map.values()))
    name = next(n for n, s in weight_map.items() if s == shards[0])
    weight_map[name] = shards[1]
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CheckpointError, match=name):
        open_checkpoint(folder)


def test_sub_model_folders_are_prefixed(tmp_path: Path, minilm_dir: Path, minilm_tensors: dict[str, np.ndarray]) -> None:
    root = tmp_path / "multi"
    (root / "text_encoder").mkdir(parents=True)
    shutil.copy(minilm_dir / "model.safetensors", root / "text_encoder" / "model.safetensors")
    write_sharded(root / "vision_tower", {k: v for k, v in minilm_tensors.items() if k.startswith("encoder.")}, 2)
    (root / ".cache").mkdir()
    shutil.copy(minilm_dir / "model.safetensors", root / ".cache" / "model.safetensors")  # hidden: ignored
    with open_checkpoint(root) as ckpt:
        names = {t.name for t in ckpt.tensors()}
        expected = {f"text_encoder.{k}" for k in minilm_tensors} | {
            f"vision_tower.{k}" for k in minilm_tensors if k.startswith("encoder.")}
        assert names == expected
        np.testing.assert_array_equal(ckpt.read_rows("vision_tower.encoder.layer.0.attention.self.query.weight", [7]),
                                      minilm_tensors["encoder.layer.0.attention.self.query.weight"][[7]])


def test_reads_split_into_small_chunks_are_identical(minilm_dir: Path, minilm_tensors: dict[str, np.ndarray],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Large reads are cut into bounded chunks; with a tiny chunk size every tensor must still read exactly."""
    from modelprov.reader import _rows

    monkeypatch.setattr(_rows, "READ_CHUNK_BYTES", 3000)
    with open_checkpoint(minilm_dir) as ckpt:
        for name in ("embeddings.word_embeddings.weight", "encoder.layer.0.intermediate.dense.weight",
                     "embeddings.LayerNorm.bias"):
            np.testing.assert_array_equal(ckpt.read(name), minilm_tensors[name])
            rows = [0, 5, 6, 7, 1, 200 % minilm_tensors[name].shape[0]]
            np.testing.assert_array_equal(ckpt.read_rows(name, rows),
                                          minilm_tensors[name].reshape(len(minilm_tensors[name]), -1)[rows])


def test_safetensors_outside_the_weight_map_are_listed_as_ignored(tmp_path: Path, minilm_dir: Path,
                                                                 minilm_tensors: dict[str, np.ndarray]) -> None:
    """Mistral-style repos ship `consolidated.safetensors` beside the indexed shards: it is not read twice."""
    folder = tmp_path / "repo"
    write_sharded(folder, minilm_tensors, 2)
    shutil.copy(minilm_dir / "model.safetensors", folder / "consolidated.safetensors")
    with open_checkpoint(folder) as ckpt:
        assert {t.name for t in ckpt.tensors()} == set(minilm_tensors)
        assert ckpt.metadata["ignored_files"] == [str(folder / "consolidated.safetensors")]


def test_encoded_header_is_read_by_the_safetensors_library(tmp_path: Path,
                                                          minilm_tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import load_file

    from modelprov.reader._safetensors import encode_header

    names = sorted(minilm_tensors)[:6]
    prefix, ranges = encode_header([(n, "F32" if minilm_tensors[n].dtype == np.float32 else "I64",
                                     minilm_tensors[n].shape) for n in names], {"format": "pt"})
    f = tmp_path / "streamed.safetensors"
    f.write_bytes(prefix + b"".join(minilm_tensors[n].tobytes() for n in names))
    loaded = load_file(str(f))
    assert set(loaded) == set(names)
    for n in names:
        np.testing.assert_array_equal(loaded[n], minilm_tensors[n])
    with open_checkpoint(f) as ckpt:
        assert {t.name: (t.byte_range[0] - len(prefix), t.byte_range[1] - len(prefix))
                for t in ckpt.tensors()} == ranges
