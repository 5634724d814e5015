"""Layouts and formats real packages ship, scanned end to end against the MiniLM index (issue 14): legacy pickled
`.bin`, training checkpoints nesting the weights, sentence-transformers folders, a model nested in
`model_files/`, a zipped checkpoint, and a GGUF without tokenizer metadata."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from benchmarks.detection import derive
from modelprov.cli.main import app
from modelprov.reader.tokenizer._checkpoint import GGUF_WITHOUT_TOKENIZER
from modelprov.scan import scan


def _weights(report):
    return [f for f in report.findings if f.kind == "weights"]


def _copied(path: Path, index: Path):
    report = scan(path, index, hash_files=False, code=False)
    [finding] = _weights(report)
    assert finding.verdict == "copied" and finding.reference.name == "all-MiniLM-L6-v2"
    assert finding.statistics["layers_matched"] == 6
    return report, finding


@pytest.fixture(scope="module")
def state_dict(minilm_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(minilm_dir / "model.safetensors")


def test_legacy_pickled_bin(state_dict, tmp_path: Path, minilm_index: Path) -> None:
    """A pre-zip `torch.save` file: loaded with the weights-only unpickler without mmap."""
    path = tmp_path / "pytorch_model.bin"
    torch.save(state_dict, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    report, _ = _copied(path, minilm_index)
    assert report.subject.format == "pytorch"


@pytest.mark.parametrize("key, suffix, zipped", [("state_dict", ".pt", True), ("model", ".pth", False)])
def test_training_checkpoint_nesting_the_weights(key: str, suffix: str, zipped: bool, state_dict, tmp_path: Path,
                                                 minilm_index: Path) -> None:
    path = tmp_path / f"checkpoint{suffix}"
    torch.save({key: state_dict, "epoch": 3, "optimizer": {"lr": 0.1, "step": torch.tensor(7)}}, path,
               _use_new_zipfile_serialization=zipped)
    _copied(path, minilm_index)
    _copied(tmp_path, minilm_index)  # the folder holding the one .pt/.pth


def test_sentence_transformers_module_folder(minilm_dir: Path, tmp_path: Path, minilm_index: Path) -> None:
    """The older sentence-transformers layout: weights, config and tokenizer inside `0_Transformer/`."""
    root = tmp_path / "st"
    (root / "0_Transformer").mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "vocab.txt"):
        shutil.copy(minilm_dir / name, root / "0_Transformer" / name)
    shutil.copytree(minilm_dir / "1_Pooling", root / "1_Pooling")
    (root / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "0_Transformer", '
                                       '"type": "sentence_transformers.models.Transformer"}, {"idx": 1, "name": "1", '
                                       '"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]')
    report, finding = _copied(root, minilm_index)
    assert finding.subject == "0_Transformer"
    assert report.subject.config["model_type"] == "bert"
    assert report.details["tokenizer"]["tokenizer"] == "0_Transformer/tokenizer.json"


def test_model_nested_in_model_files(minilm_dir: Path, tmp_path: Path, minilm_index: Path) -> None:
    inner = tmp_path / "package" / "model_files"
    shutil.copytree(minilm_dir, inner)
    (tmp_path / "package" / "README.md").write_text("a product")
    report, finding = _copied(tmp_path / "package", minilm_index)
    assert finding.subject == "model_files"  # tensor names carry the sub-folder, as for any sub-model folder
    assert report.subject.config["model_type"] == "bert"
    assert report.details["tokenizer"]["tokenizer"] == "model_files/tokenizer.json"


def test_zipped_onnx_checkpoint(minilm_onnx_legacy: Path, tmp_path: Path, minilm_index: Path) -> None:
    folder = tmp_path / "shipped"
    folder.mkdir()
    with zipfile.ZipFile(folder / "model.zip", "w") as zf:
        for f in sorted(minilm_onnx_legacy.iterdir()):
            zf.write(f, f"bert/{f.name}")
    report, _ = _copied(folder, minilm_index)
    assert report.subject.path == str(folder / "model.zip")
    assert {f.role for f in report.subject.files} >= {"archive", "weights", "tokenizer"}
    extracted = Path(next(f.path for f in report.subject.files if f.role == "weights"))
    assert not extracted.exists()  # the temporary copy is gone once the scan closed the checkpoint


def test_gguf_without_tokenizer_metadata(minilm_dir: Path, tmp_path: Path, minilm_index: Path, cli) -> None:
    sd, config = derive.load_checkpoint(minilm_dir)
    path = derive.to_gguf(sd, tmp_path / "minilm.F16.gguf", "F16", config)  # no tokenizer.ggml.* keys
    report = scan(path, minilm_index, hash_files=False, code=False)
    [finding] = _weights(report)
    assert finding.verdict == "copied"
    assert report.details["tokenizer"]["reason"] == GGUF_WITHOUT_TOKENIZER
    result = cli.invoke(app, ["scan", str(path), "--index", str(minilm_index)])
    assert result.exit_code == 0, result.stderr
