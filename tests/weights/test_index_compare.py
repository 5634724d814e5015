"""Reference index management (CLI and library), the shipped index, and `compare`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelprov.cli.main import app
from modelprov.errors import ReferenceIndexError
from modelprov.weights.fingerprint import SketchSpec, gguf_qk_permutation, sketch_indices
from modelprov.index import ReferenceIndex, default_index_dir
from modelprov.weights.similarity import centred_similarity


def test_index_cli_add_list_show_remove(cli, minilm_dir: Path, tmp_path: Path):
    idx = tmp_path / "idx"
    r = cli.invoke(app, ["index", "add", str(minilm_dir), "--index", str(idx), "--name", "minilm", "--family",
                         "MiniLM", "--org", "sentence-transformers", "--country", "us", "--license", "Apache-2.0"])
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["index", "list", "--index", str(idx), "--json"])
    [entry] = json.loads(r.stdout)["entries"]
    assert entry["reference"]["country"] == "US" and entry["summary"]["tensors"] == 103
    r = cli.invoke(app, ["index", "show", "minilm", "--index", str(idx)])
    shown = json.loads(r.stdout)
    assert shown["weights"]["roles"]["attn_q"] == 6 and shown["weights"]["sketch"]["rows"] == 256
    assert cli.invoke(app, ["index", "verify", "--index", str(idx)]).exit_code == 0
    r = cli.invoke(app, ["index", "remove", "minilm", "--index", str(idx)])
    assert r.exit_code == 0 and not (idx / "weights" / "minilm.json").exists()
    r = cli.invoke(app, ["index", "show", "minilm", "--index", str(idx)])
    assert r.exit_code == 2 and "no reference named" in r.stderr


def test_index_digest_detects_any_change(minilm_index: Path, tmp_path: Path):
    copy = tmp_path / "idx"
    shutil.copytree(minilm_index, copy)
    ReferenceIndex.load(copy).verify()
    manifest = copy / "weights" / "all-MiniLM-L6-v2.json"
    manifest.write_text(manifest.read_text().replace('"Apache-2.0"', '"MIT"'))
    with pytest.raises(ReferenceIndexError, match="all-MiniLM-L6-v2.json: digest mismatch: the file is not the one sealed"):
        ReferenceIndex.load(copy).verify()
    from modelprov.scan import index_summary

    summary = index_summary(ReferenceIndex.load(copy))  # what a scan report records
    assert summary["verified"] is False and "the file is not the one sealed" in summary["verification_problem"]
    meta = copy / "index.json"  # the sealed file list itself is under the digest
    meta.write_text(meta.read_text().replace('"weights/all-MiniLM-L6-v2.json": "', '"weights/all-MiniLM-L6-v2.json": "0'))
    with pytest.raises(ReferenceIndexError, match="digest mismatch"):
        ReferenceIndex.load(copy).verify()


def test_bad_reference_name_is_one_line_error(cli, minilm_dir: Path, tmp_path: Path):
    r = cli.invoke(app, ["index", "add", str(minilm_dir), "--index", str(tmp_path), "--name", "../evil"])
    assert r.exit_code == 2 and r.stderr.startswith("modelprov: error:")


def test_shipped_index_is_sealed_and_catalogued():
    idx = ReferenceIndex.load(default_index_dir())
    names = {e.name for e in idx.entries_of("weights")}
    assert {"all-MiniLM-L6-v2", "SmolLM2-135M-Instruct"} <= names
    models = {m["name"]: m for m in idx.catalog()["model"]}
    for family in ("Qwen2.5", "Qwen2.5-VL", "Qwen3", "DeepSeek-V3", "GLM-4.5", "Llama 3.x", "Mistral", "Gemma", "EXAONE"):
        assert any(m["family"] == family for m in models.values()), family
    assert all(m["fingerprinted"] == (m["name"] in names) for m in models.values())
    assert all(m["country"] and m["license"] and m["repo_id"] for m in models.values())
    size = sum(p.stat().st_size for p in (default_index_dir() / "weights").iterdir())
    assert size < 40 * 2**20


def test_shipped_smollm2_sketch_is_the_gguf_in_hf_row_order(smollm2_gguf: Path):
    """The shipped SmolLM2 sketch equals a recomputation from the GGUF with llama.cpp's q/k permutation undone."""
    from modelprov.reader import open_checkpoint

    fp = ReferenceIndex.load(default_index_dir()).fingerprint("SmolLM2-135M-Instruct")
    assert fp.source["gguf_qk_permutation_undone"] and fp.source["quantisation"] == "Q4_1"
    with open_checkpoint(smollm2_gguf) as ckpt:
        for name, heads in (("blk.4.attn_q.weight", 9), ("blk.4.attn_k.weight", 3), ("blk.4.ffn_up.weight", None)):
            w = ckpt.read_rows(name)
            if heads:
                w = w[np.argsort(gguf_qk_permutation(w.shape[0], heads))]
            rows, cols = sketch_indices(w.shape, SketchSpec())
            assert centred_similarity(w[rows][:, cols], fp.sketches[name]) > 0.9999


def test_hf_format_smollm2_matches_the_gguf_native_reference(smollm2_hf_dir: Path):
    from modelprov.scan import scan

    report = scan(smollm2_hf_dir, default_index_dir(), hash_files=False, verify_exact=False)
    [finding] = [f for f in report.findings if f.reference.name == "SmolLM2-135M-Instruct"]
    stats = finding.statistics
    assert stats["layers_matched"] == stats["layers_total"] == 30
    q = [m for m in stats["matched_tensors"] if m["role"] in ("attn_q", "attn_k") and m["significant"]]
    assert len(q) == 60 and min(m["centred"] for m in q) > 0.99
    assert not [f for f in report.findings if f.reference.name == "all-MiniLM-L6-v2"]


def test_compare_cli_writes_json_and_heatmap(cli, minilm_derived_bf16_fused_transposed: Path, minilm_dir: Path,
                                             tmp_path: Path):
    out, png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    r = cli.invoke(app, ["compare", str(minilm_derived_bf16_fused_transposed), str(minilm_dir), "--json", str(out),
                         "--heatmap", str(png)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    fused = [t for t in data["tensors"] if t["a"].endswith("query_key_value.weight")]
    assert fused and all(t["centred"] > 0.9999 and t["max_abs_difference"] < 1e-2 for t in fused)
    [stack] = data["stacks"]
    assert list(stack["layer_map"].values()) == list(range(6))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_finetune_is_close_but_not_identical(minilm_derived_finetuned: Path, minilm_dir: Path):
    from modelprov.weights.compare import compare

    result = compare(minilm_derived_finetuned, minilm_dir)
    layers = [t for t in result.tensors if t.a.startswith("encoder.") and t.role == "attn_q"]
    assert len(layers) == 6
    assert all(0.9 < t.centred < 1.0 and not t.identical for t in layers)


def test_gguf_scans_as_copy_of_the_shipped_smollm2(smollm2_gguf: Path):
    """The GGUF itself (q/k in llama.cpp order) is an exact copy of the shipped reference (kept in HF order)."""
    from modelprov.scan import scan

    report = scan(smollm2_gguf, default_index_dir(), hash_files=False)
    [finding] = [f for f in report.findings if f.reference.name == "SmolLM2-135M-Instruct"]
    assert finding.verdict == "copied" and finding.subject == "(whole model)"
    assert finding.statistics["layers_matched"] == 30
    qk = [m for m in finding.statistics["matched_tensors"] if m["role"] in ("attn_q", "attn_k")]
    assert len(qk) == 60 and all(m["placement"] == "llama.cpp q/k row order" and m["exact"] == "f32" for m in qk)
