"""`provenance inspect` on the real models: counts, components, dtypes, config facts and hashes against ground truth."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from modelprov.cli.main import app
from modelprov.findings import Subject
from modelprov.weights.inspect import config_facts, inspect_checkpoint

from .conftest import write_sharded


def test_minilm_json(minilm_dir: Path, cli) -> None:
    result = cli.invoke(app, ["inspect", "--json", str(minilm_dir)])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    with safe_open(str(minilm_dir / "model.safetensors"), "np") as ref:
        shapes = {n: ref.get_slice(n).get_shape() for n in ref.keys()}
        dtypes = Counter(ref.get_slice(n).get_dtype() for n in ref.keys())
    counts = {n: int(np.prod(s)) for n, s in shapes.items()}
    config = json.loads((minilm_dir / "config.json").read_text())
    assert report["format"] == "safetensors" and report["quantisation"] is None
    assert report["tensor_count"] == len(shapes)
    assert report["parameter_count"] == sum(counts.values())
    assert report["components"] == {
        c: sum(v for n, v in counts.items() if n.startswith(c + ".")) for c in ("embeddings", "encoder", "pooler")}
    assert {k: v["tensors"] for k, v in report["dtypes"].items()} == dict(dtypes)
    assert report["config"]["architecture"] == config["architectures"][0]
    assert report["config"]["layers"] == config["num_hidden_layers"]
    assert report["config"]["hidden_size"] == config["hidden_size"]
    assert report["config"]["vocab_size"] == config["vocab_size"]
    weights = next(f for f in report["files"] if f["role"] == "weights")
    assert weights["sha256"] == hashlib.sha256((minilm_dir / "model.safetensors").read_bytes()).hexdigest()


def test_minilm_human_output(minilm_dir: Path, cli) -> None:
    result = cli.invoke(app, ["inspect", str(minilm_dir)])
    assert result.exit_code == 0
    digest = hashlib.sha256((minilm_dir / "model.safetensors").read_bytes()).hexdigest()
    assert digest in result.stdout and "model.safetensors" in result.stdout
    with safe_open(str(minilm_dir / "model.safetensors"), "np") as ref:
        total = sum(int(np.prod(ref.get_slice(n).get_shape())) for n in ref.keys())
    assert f"{total:,} parameters" in result.stdout
    for word in ("BertModel", "embeddings", "encoder", "F32"):
        assert word in result.stdout


def test_smollm2_gguf(smollm2_gguf: Path, smollm2_reader, cli) -> None:
    result = cli.invoke(app, ["inspect", "--json", "--no-hash", str(smollm2_gguf)])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    tensors = smollm2_reader.tensors
    fields = smollm2_reader.fields
    assert report["format"] == "gguf" and report["quantisation"] == "Q4_1"
    assert report["tensor_count"] == len(tensors)
    assert report["parameter_count"] == sum(int(t.n_elements) for t in tensors)  # logical, not bytes
    assert report["parameter_count"] > sum(f["size"] for f in report["files"])  # 4-bit: fewer bytes than params
    by_component = Counter()
    for t in tensors:
        by_component[t.name.split(".")[0]] += int(t.n_elements)
    assert report["components"] == dict(by_component)
    assert {k: v["tensors"] for k, v in report["dtypes"].items()} == dict(Counter(t.tensor_type.name for t in tensors))
    arch = fields["general.architecture"].contents()
    assert report["config"]["architecture"] == arch == "llama"
    assert report["config"]["layers"] == fields[f"{arch}.block_count"].contents()
    assert report["config"]["hidden_size"] == fields[f"{arch}.embedding_length"].contents()
    assert report["config"]["vocab_size"] == len(fields["tokenizer.ggml.tokens"].contents())
    assert all(f["sha256"] is None for f in report["files"])


def test_sub_models_count_per_component(tmp_path: Path, minilm_tensors: dict[str, np.ndarray]) -> None:
    root = tmp_path / "vlm"
    write_sharded(root / "vision_tower", minilm_tensors, 2)
    torch.save({k: torch.from_numpy(v.copy()) for k, v in minilm_tensors.items() if k.startswith("encoder.")},
               tmp_path / "ignored.bin")  # outside the folder: not part of it
    write_sharded(root / "language_model", {k: v for k, v in minilm_tensors.items() if k.startswith("encoder.")}, 1)
    inspection = inspect_checkpoint(root)
    total = sum(v.size for v in minilm_tensors.values())
    encoder = sum(v.size for k, v in minilm_tensors.items() if k.startswith("encoder."))
    assert inspection.components == {"vision_tower": total, "language_model": encoder}
    assert inspection.parameter_count == total + encoder
    subject = inspection.subject()
    assert isinstance(subject, Subject)
    assert subject.parameter_count == inspection.parameter_count
    assert [f.sha256 for f in subject.files] == [hashlib.sha256(Path(f.path).read_bytes()).hexdigest()
                                                 for f in subject.files]


def test_config_facts_of_nested_multimodal_config() -> None:
    config = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
              "vocab_size": 152064, "text_config": {"num_hidden_layers": 28, "hidden_size": 3584},
              "vision_config": {"depth": 32, "hidden_size": 1280}}
    facts = config_facts(config)
    assert facts["architecture"] == "Qwen2_5_VLForConditionalGeneration" and facts["vocab_size"] == 152064
    assert facts["text_config"] == {"layers": 28, "hidden_size": 3584}
    assert facts["vision_config"] == {"layers": 32, "hidden_size": 1280}


def test_tensor_listing_with_hashes(minilm_dir: Path, minilm_tensors: dict[str, np.ndarray], cli) -> None:
    result = cli.invoke(app, ["inspect", "--json", "--no-hash", "--tensor-hashes", str(minilm_dir)])
    assert result.exit_code == 0, result.stderr
    listed = {t["name"]: t for t in json.loads(result.stdout)["tensors"]}
    assert set(listed) == set(minilm_tensors)
    for name, array in minilm_tensors.items():
        assert listed[name]["shape"] == list(array.shape)
        assert listed[name]["sha256"] == hashlib.sha256(array.tobytes()).hexdigest()
