"""Streaming sha256 equals hashlib over the whole bytes, per file and per tensor, also while other reads run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from modelprov.errors import CheckpointError
from modelprov._hashing import FileHasher, hash_files, sha256_file
from modelprov.reader import hash_tensors
from modelprov.reader import open_checkpoint


def test_file_digest_equals_hashlib(minilm_dir: Path) -> None:
    path = minilm_dir / "model.safetensors"
    seen: list[int] = []
    digest = sha256_file(path, progress=seen.append)
    data = path.read_bytes()
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.size == len(data) == sum(seen)
    assert max(seen) <= 1 << 20  # streamed in chunks of at most 1 MiB


def test_hashing_runs_beside_reading(minilm_dir: Path, minilm_tensors: dict[str, np.ndarray]) -> None:
    with open_checkpoint(minilm_dir) as ckpt:
        paths = [f.path for f in ckpt.files()]
        hasher = FileHasher(paths, workers=2)
        for name, expected in minilm_tensors.items():
            np.testing.assert_array_equal(ckpt.read_rows(name, [0]), expected.reshape(expected.shape[0] if expected.ndim else 1, -1)[[0]])
        digests = hasher.result()
    assert [d.path for d in digests] == [str(p) for p in paths]
    assert all(d.sha256 == hashlib.sha256(Path(d.path).read_bytes()).hexdigest() for d in digests)


def test_tensor_digests_cover_the_stored_bytes(minilm_dir: Path, minilm_tensors: dict[str, np.ndarray]) -> None:
    with open_checkpoint(minilm_dir) as ckpt:
        digests = {d.name: d for d in hash_tensors(ckpt)}
    assert set(digests) == set(minilm_tensors)
    for name, array in minilm_tensors.items():
        assert digests[name].sha256 == hashlib.sha256(array.tobytes()).hexdigest()


def test_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read"):
        hash_files([tmp_path / "gone.safetensors"])
