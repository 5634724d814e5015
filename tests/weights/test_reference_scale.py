"""Issue 18: thousands of references. Stage 1 retrieves a shortlist from signatures in an ANN index stored in the
index folder; only the shortlist is loaded and verified, so memory and time do not grow with the index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.reference_scale import synthetic_fingerprint
from modelprov.errors import ReferenceIndexError
from modelprov.findings import Reference
from modelprov.index import ReferenceIndex
from modelprov.index.retrieval import RETRIEVAL_DIR, gram_signature, project, sketch_signature
from modelprov.index.store import mapped_arrays
from modelprov.scan import VERIFY_ALL, scan

DISTRACTORS = VERIFY_ALL + 3


@pytest.fixture(scope="module")
def crowded_index(minilm_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 reference among independent MiniLM-shaped distractors (same tokenizer)."""
    root = tmp_path_factory.mktemp("crowded") / "index"
    shutil.copytree(minilm_index, root)
    idx = ReferenceIndex.load(root)
    template = idx.fingerprint("all-MiniLM-L6-v2")
    for i in range(DISTRACTORS):
        idx.add_weights(Reference(name=f"distractor-{i:02d}"), synthetic_fingerprint(template, seed=i), seal=False)
    idx.seal()
    return root


def _verified(report) -> list[str] | None:
    return report.details["weights"].get("retrieval", {}).get("references")


def _weights_findings(report) -> list[tuple[str, str, str]]:
    return sorted((f.reference.name, f.subject, f.verdict) for f in report.findings if f.kind == "weights")


def test_count_sketch_signature_estimates_centred_similarity():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 256))
    y = 0.6 * x + 0.8 * rng.standard_normal((256, 256)) + 3.0  # r = 0.6, offset: centring matters
    z = rng.standard_normal((256, 256)) + 3.0
    sx, sy, sz = (sketch_signature(m, "sketch-test") for m in (x, y, z))
    assert abs(float(sx @ sy) - 0.6) < 0.2 and abs(float(sx @ sz)) < 0.3  # noise ≈ 1/16
    assert np.allclose(project(np.zeros(10), "k"), 0.0)


def test_gram_signature_ignores_rotation_and_permutation_of_the_residual_stream():
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((96, 64)) + 0.3 * rng.standard_normal((1, 64))
    q, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    rotated = (rows @ q)[:, rng.permutation(64)]
    assert float(gram_signature(rows) @ gram_signature(rotated)) > 0.999
    other = rng.standard_normal((96, 64)) + 0.3 * rng.standard_normal((1, 64))
    assert abs(float(gram_signature(rows) @ gram_signature(other))) < 0.4
    present = np.ones(96, dtype=bool)
    present[::3] = False  # tokens the suspect's vocabulary lacks: 44% of the pairs remain, cosine ≈ √0.44
    assert float(gram_signature(rows) @ gram_signature(rotated, present)) > 0.45  # still > 7 null sd (1/16)


def test_index_add_writes_a_sealed_retrieval_index(crowded_index: Path, tmp_path: Path):
    idx = ReferenceIndex.load(crowded_index)
    idx.verify()
    found = idx.retrieval()
    assert found is not None and len(found.references) == DISTRACTORS + 1
    assert set(found.files()) <= set(idx.meta["files"])
    copy = tmp_path / "idx"
    shutil.copytree(crowded_index, copy)
    (copy / RETRIEVAL_DIR / "manifest.json").write_text("{}")
    with pytest.raises(ReferenceIndexError, match="retrieval/manifest.json: digest mismatch: the file is not the one"):
        ReferenceIndex.load(copy).verify()
    shutil.copy2(crowded_index / RETRIEVAL_DIR / "manifest.json", copy / RETRIEVAL_DIR / "manifest.json")
    graph = next((copy / RETRIEVAL_DIR).glob("*.usearch"))  # a damaged graph is never handed to usearch
    graph.write_bytes(graph.read_bytes()[:64] + bytes(64))
    with pytest.raises(ReferenceIndexError, match=r"\.usearch: digest mismatch"):
        ReferenceIndex.load(copy).retrieval()


def test_derived_model_is_shortlisted_and_scans_as_against_its_reference_alone(
        crowded_index: Path, minilm_index: Path, minilm_derived_permuted: Path, tmp_path: Path):
    """Neurons, heads and the residual stream permuted: no sketch matches, the Gram signature retrieves it; the
    verdicts equal those of a scan against the one true reference, and only it is loaded."""
    idx = ReferenceIndex.load(crowded_index)
    report = scan(minilm_derived_permuted, index=idx, code=False, hash_files=False)
    assert _verified(report) == ["all-MiniLM-L6-v2"]
    assert set(idx._fingerprints) == {"all-MiniLM-L6-v2"}  # the distractors were never loaded
    alone = scan(minilm_derived_permuted, index=minilm_index, code=False, hash_files=False)
    assert _weights_findings(report) == _weights_findings(alone) and _weights_findings(report)
    assert report.index["verified"] is True and report.index["references"] == DISTRACTORS + 1
    grams = [c for c in report.details["weights"]["retrieval"]["candidates"] if c["signature"] == "gram"]
    assert grams and grams[0]["reference"] == "all-MiniLM-L6-v2" and grams[0]["best"] > 0.9


def test_independent_model_shortlists_nothing(crowded_index: Path, minilm_independent_trained: Path):
    report = scan(minilm_independent_trained, index=crowded_index, code=False, hash_files=False)
    assert _verified(report) == [] and _weights_findings(report) == []


def test_large_index_without_retrieval_is_a_one_line_error(crowded_index: Path, tmp_path: Path, minilm_dir: Path, cli):
    from modelprov.cli.main import app

    copy = tmp_path / "idx"
    shutil.copytree(crowded_index, copy)
    shutil.rmtree(copy / RETRIEVAL_DIR)
    r = cli.invoke(app, ["scan", str(minilm_dir), "--index", str(copy), "--no-hash"])
    assert r.exit_code == 2 and "no up-to-date retrieval index" in r.stderr and "Traceback" not in r.stderr
    r = cli.invoke(app, ["index", "reindex", "--index", str(copy)])
    assert r.exit_code == 0, r.stderr
    assert ReferenceIndex.load(copy).retrieval() is not None
    assert cli.invoke(app, ["index", "verify", "--index", str(copy)]).exit_code == 0


@pytest.mark.parametrize("damage", ["header-beyond-file", "offsets-outside", "wrong-dtype"])
def test_hostile_sketch_file_is_an_error_naming_it(tmp_path: Path, damage: str):
    header = {"a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}}
    if damage == "offsets-outside":
        header["a"]["data_offsets"] = [0, 1 << 40]
    if damage == "wrong-dtype":
        header["a"]["dtype"] = "I64"
    blob = json.dumps(header).encode()
    size = len(blob) + (1 << 30 if damage == "header-beyond-file" else 0)
    path = tmp_path / "x.safetensors"
    path.write_bytes(size.to_bytes(8, "little") + blob + bytes(8))
    with pytest.raises(ReferenceIndexError, match="x.safetensors"):
        mapped_arrays(path)
