"""End-to-end weights scans of real MiniLM derivatives and independent models against a MiniLM index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from modelprov.cli.main import app
from modelprov.scan import scan
from tests.weights.synthetic import bert_like


def _weights(report):
    return [f for f in report.findings if f.kind == "weights"]


def test_exact_copy_is_found_as_copied(minilm_dir: Path, minilm_index: Path):
    report = scan(minilm_dir, minilm_index, hash_files=False)
    [finding] = _weights(report)
    assert finding.verdict == "copied"
    assert finding.subject == "(whole model)"
    assert finding.statistics["layers_matched"] == finding.statistics["layers_total"] == 6
    assert finding.statistics["exact_parameter_share"] == 1.0
    assert finding.parameter_share > 0.99


def test_renamed_copy_is_found(minilm_derived_renamed_llama: Path, minilm_index: Path):
    report = scan(minilm_derived_renamed_llama, minilm_index, hash_files=False)
    [finding] = _weights(report)
    assert finding.verdict == "copied"
    assert finding.statistics["layers_matched"] == 6
    assert any("names differ" in t for t in finding.transformations)


def test_bf16_fused_transposed_megatron_copy_is_exact_after_cast(minilm_derived_bf16_fused_transposed: Path,
                                                                 minilm_index: Path):
    report = scan(minilm_derived_bf16_fused_transposed, minilm_index, hash_files=False)
    [finding] = _weights(report)
    assert finding.verdict == "copied"
    assert finding.statistics["layers_matched"] == 6
    matched = [m for m in finding.statistics["matched_tensors"] if m["significant"]]
    roles = {m["role"] for m in matched}
    assert {"attn_q", "attn_k", "attn_v", "attn_o", "mlp_up", "mlp_down", "token_embedding"} <= roles
    assert all(m["exact"] == "bf16" for m in matched)
    text = " ".join(finding.transformations)
    assert "transposed" in text and "fused" in text and "bf16" in text


def test_finetune_is_derived_not_copied(minilm_derived_finetuned: Path, minilm_index: Path):
    report = scan(minilm_derived_finetuned, minilm_index, hash_files=False)
    [finding] = _weights(report)
    assert finding.verdict == "derived"
    stats = finding.statistics
    assert stats["layers_matched"] == 6
    assert stats["component_verdicts"]["encoder"] == "derived"
    trained = [m for m in stats["matched_tensors"] if m["suspect"].startswith("encoder.") and not m["weak_evidence"]]
    assert len(trained) == 36 and not any(m["exact"] for m in trained)
    assert stats["centred_similarity"] > 0.9
    assert stats["log10_p"] < -100


@pytest.mark.parametrize("model, vision, language", [
    ("composite_minilm_vision", "model.vision_tower", "model.language_model"),
    ("composite_minilm_vision_subfolders", "vision_tower", "language_model"),
])
def test_composite_is_localised_to_its_component(model: str, vision: str, language: str,
                                                 request: pytest.FixtureRequest, minilm_index: Path):
    report = scan(request.getfixturevalue(model), minilm_index, hash_files=False)
    [finding] = _weights(report)
    assert finding.subject == vision
    assert finding.verdict == "copied"
    assert 0.4 < finding.parameter_share < 0.6  # two equal-sized halves
    assert all(m["suspect"].startswith(vision + ".") for m in finding.statistics["matched_tensors"])
    components = report.details["weights"]["components"]
    assert components[language]["verdicts"] == {}
    assert report.index["verified"] is True


@pytest.mark.parametrize("model", ["minilm_independent_fresh", "minilm_independent_trained"])
def test_independent_models_are_not_found(model: str, request: pytest.FixtureRequest, minilm_index: Path):
    report = scan(request.getfixturevalue(model), minilm_index, hash_files=False)
    assert _weights(report) == []
    closest = report.details["weights"]["components"]["encoder"]["closest"]
    assert closest["max_centred_similarity"] < 0.1


def _bert_like(path: Path, seed: int, norms: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """A small 4-layer BERT-named model with random matrices and norm weights near 1.0, saved in `path`."""
    sd = bert_like(seed, norms)
    path.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path / "model.safetensors"))
    return sd


def test_norm_weights_near_one_are_no_evidence(tmp_path: Path):
    """Independent norm weights near 1.0 have raw cosine > 0.95 but centred ≈ 0; and even identical
    norm weights (with independent matrices) never make a finding on their own."""
    from modelprov.findings import Reference
    from modelprov.index import ReferenceIndex, add_checkpoint

    ref_sd = _bert_like(tmp_path / "ref", seed=1)
    index = ReferenceIndex.create(tmp_path / "index")
    add_checkpoint(index, tmp_path / "ref", Reference("synthetic-bert"))
    _bert_like(tmp_path / "independent", seed=2)
    report = scan(tmp_path / "independent", index, hash_files=False)
    assert _weights(report) == []
    [ref] = report.details["weights"]["references"]
    norms = [m for m in ref["weak_matches"] if m["reference"].endswith("LayerNorm.weight")]
    assert len(norms) == 8
    assert min(m["raw_cosine"] for m in norms) > 0.95  # what a naive raw-cosine claim would cite
    assert max(abs(m["centred"]) for m in norms) < 0.35  # best of 8 candidates, n = 128 each

    same_norms = {k: v for k, v in ref_sd.items() if "LayerNorm" in k}
    _bert_like(tmp_path / "same_norms", seed=3, norms=same_norms)
    report = scan(tmp_path / "same_norms", index, hash_files=False)
    assert _weights(report) == []


def test_scan_cli_writes_json_and_prints_table(cli, minilm_derived_renamed_llama: Path, minilm_index: Path,
                                               tmp_path: Path):
    out = tmp_path / "scan.json"
    result = cli.invoke(app, ["scan", str(minilm_derived_renamed_llama), "--index", str(minilm_index),
                              "--json", str(out), "--no-hash"])
    assert result.exit_code == 0, result.output
    assert "copied" in result.stdout and "all-MiniLM-L6-v2" in result.stdout
    data = json.loads(out.read_text())
    [finding] = [f for f in data["findings"] if f["kind"] == "weights"]
    assert finding["id"] == "weights:(whole model):all-MiniLM-L6-v2"
    assert data["index"]["digest"].startswith("sha256:")


def test_scan_cli_nothing_scannable_exits_3(cli, tmp_path: Path, minilm_index: Path):
    """A checkpoint with no floating-point tensor (only integer buffers) has nothing to fingerprint."""
    save_file({"embeddings.position_ids": np.arange(512, dtype=np.int64)[None]}, str(tmp_path / "model.safetensors"))
    result = cli.invoke(app, ["scan", str(tmp_path), "--index", str(minilm_index), "--no-hash"])
    assert result.exit_code == 3
    assert result.stderr.startswith("modelprov: error:") and "no floating-point tensors" in result.stderr


def test_scan_cli_missing_index_is_one_line_error(cli, minilm_dir: Path, tmp_path: Path):
    result = cli.invoke(app, ["scan", str(minilm_dir), "--index", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "reference index" in result.stderr and "Traceback" not in result.stderr


def test_depth_upscaled_copy_is_aligned_with_a_restart(minilm_dir: Path, minilm_index: Path, tmp_path: Path):
    """SOLAR-style stacking: layers 0-3 then 2-5 of MiniLM (8 layers); layer 5's copy is dropped twice."""
    import re

    ref = load_file(str(minilm_dir / "model.safetensors"))
    plan = [0, 1, 2, 3, 2, 3, 4, 5]
    out = {k: v for k, v in ref.items() if not k.startswith("encoder.layer.")}
    for new, old in enumerate(plan):
        for k, v in ref.items():
            m = re.match(rf"encoder\.layer\.{old}\.(.+)$", k)
            if m:
                out[f"encoder.layer.{new}.{m.group(1)}"] = v
    save_file(out, str(tmp_path / "model.safetensors"))
    report = scan(tmp_path, minilm_index, hash_files=False, verify_exact=False)
    [finding] = _weights(report)
    assert finding.verdict == "derived"  # not confirmed exact (verify_exact=False)
    [stack] = report.details["weights"]["references"][0]["stacks"]
    assert [stack["layer_map"][str(i)] for i in range(8)] == plan
    assert any("restart" in t for t in finding.transformations)
    assert finding.statistics["layers_matched"] == finding.statistics["layers_total"] == 8
