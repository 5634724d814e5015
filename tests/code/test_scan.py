"""Scanning real transformers modelling code and plagiarised variants of it against the code index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modelprov.code import scan_code
from modelprov.code.sarif import to_sarif, validate_sarif

from .mutate import insert_dead_code, reformat, rename_all, reorder_definitions


def _by_function(result):
    return {m.subject_qualname: m for f in result.files for m in f.matches}


@pytest.fixture(scope="module")
def original(code_index, tmp_path_factory, qwen2_source):
    path = tmp_path_factory.mktemp("original") / "modeling_qwen2.py"
    path.write_text(qwen2_source, encoding="utf-8")
    return scan_code(path, code_index)


def test_original_functions_match_their_declared_origin(original):
    matches = _by_function(original)
    assert len(matches) >= 15
    rotate = matches["rotate_half"]
    assert rotate.verdict == "copied" and rotate.similarity == 1.0
    # the nearest source is the file copied (qwen2's own, which is indexed); qwen2 is generated from llama
    # via its modular file, so the canonical origin is llama's; the other copies are listed
    assert (rotate.reference_path, rotate.reference_qualname) == ("models/qwen2/modeling_qwen2.py", "rotate_half")
    assert rotate.origin == f"{rotate.reference}:models/llama/modeling_llama.py::rotate_half"
    assert f"{rotate.reference}:models/mistral/modeling_mistral.py::rotate_half" in rotate.also_matches
    assert rotate.declared_chain[0] == rotate.nearest and rotate.declared_chain[-1] == rotate.origin
    assert original.files[0].sources[0].path == "models/qwen2/modeling_qwen2.py"
    attention = matches["Qwen2Attention.forward"]
    assert attention.verdict == "copied" and attention.regions
    region = attention.regions[0]
    assert region.subject_lines[0] >= attention.subject_lines[0] and region.reference_text


def test_renamed_and_reordered_copy_matches_at_the_same_strength(code_index, tmp_path, qwen2_source, original):
    renamed, mapping = rename_all(qwen2_source)
    mutated = reorder_definitions(renamed)
    path = tmp_path / "model_impl.py"
    path.write_text(mutated, encoding="utf-8")
    result = scan_code(path, code_index)
    after = _by_function(result)
    before = _by_function(original)

    def renamed_qualname(qualname: str) -> str:
        return ".".join(mapping.get(part, part) for part in qualname.split("."))

    assert before
    for qualname, match in before.items():
        twin = after[renamed_qualname(qualname)]
        assert (twin.similarity, twin.subject_coverage, twin.matched_tokens) == (
            match.similarity,
            match.subject_coverage,
            match.matched_tokens,
        ), qualname
        assert (twin.reference_path, twin.reference_qualname) == (match.reference_path, match.reference_qualname)
        assert twin.rename_consistency == match.rename_consistency  # a one-to-one renaming keeps the pairing
        assert twin.lexical_identity < match.lexical_identity  # the verbatim text changed, the structure did not
    # rotate_half's origin is verbatim identical to qwen2's: the recovered map is exactly the one applied
    rotate = after[mapping["rotate_half"]]
    assert rotate.rename_map == {name: mapping[name] for name in rotate.rename_map}
    assert {"rotate_half", "x", "x1", "x2", "torch", "cat"} <= set(rotate.rename_map)


def test_dead_code_and_reformatting_do_not_hide_the_copy(code_index, tmp_path, qwen2_source, original):
    path = tmp_path / "modeling_mine.py"
    path.write_text(reformat(insert_dead_code(qwen2_source)), encoding="utf-8")
    after = _by_function(scan_code(path, code_index))
    before = _by_function(original)
    found = [q for q in before if q in after and after[q].verdict in ("copied", "derived")]
    assert len(found) == len(before)
    for q in found:
        assert after[q].similarity >= before[q].similarity - 0.1, q  # most of the reference is still there
        assert after[q].reference_qualname == before[q].reference_qualname


@pytest.mark.parametrize("module", ["torch.optim.adamw", "sklearn.linear_model._ridge", "torch.distributions.normal"])
def test_independent_code_scores_near_zero(code_index, tmp_path, module):
    import importlib

    source = Path(importlib.import_module(module).__file__)
    path = tmp_path / source.name
    shutil.copy(source, path)
    result = scan_code(path, code_index)
    assert result.files[0].coverage < 0.05
    assert not [f for f in result.findings if f.verdict == "copied"]


def _obligations(match):
    return {o.obligation.split(":")[0]: o for o in match.license_obligations}


def test_copy_without_apache_header_is_flagged(code_index, tmp_path, transformers_models_dir):
    source = (transformers_models_dir / "llama" / "modeling_llama.py").read_text(encoding="utf-8")
    header_end = source.index("import ")
    stripped = tmp_path / "stripped"
    stripped.mkdir()
    (stripped / "modeling_mine.py").write_text(source[header_end:], encoding="utf-8")
    match = _by_function(scan_code(stripped, code_index))["LlamaAttention.forward"]
    assert match.reference_path == "models/llama/modeling_llama.py"
    duties = _obligations(match)
    assert duties["Apache-2.0 §4(c)"].met is False
    assert duties["Apache-2.0 §4(a)"].met is False

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "modeling_mine.py").write_text(source, encoding="utf-8")
    license_text = next(p for p in (transformers_models_dir.parent.parent).glob("transformers-*.dist-info/licenses/LICENSE"))
    shutil.copy(license_text, kept / "LICENSE")
    result = scan_code(kept, code_index)
    duties = _obligations(_by_function(result)["LlamaAttention.forward"])
    assert duties["Apache-2.0 §4(c)"].met is True and duties["Apache-2.0 §4(a)"].met is True
    finding = next(f for f in result.findings if f.subject == "modeling_mine.py::LlamaAttention.forward")
    assert finding.kind == "code" and finding.reference.license == "Apache-2.0"
    assert finding.statistics["similarity"] == 1.0


def test_sarif_validates_and_locates_both_sides(original):
    document = to_sarif(original)
    validate_sarif(document)
    assert to_sarif(json.loads(json.dumps(original.to_dict()))) == document  # from a stored JSON report too
    results = document["runs"][0]["results"]
    assert len(results) == len(original.findings)
    first = results[0]
    assert first["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1
    assert first["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "REFERENCE"


def test_sarif_schema_rejects_broken_documents(original):
    import jsonschema

    document = to_sarif(original)
    document["runs"][0]["results"][0]["level"] = "catastrophic"
    with pytest.raises(jsonschema.ValidationError):
        validate_sarif(document)


def test_json_result_has_files_functions_and_regions(original):
    d = original.to_dict()
    assert d["files"][0]["path"] == "modeling_qwen2.py" and 0.9 < d["files"][0]["coverage"] <= 1.0
    match = d["files"][0]["matches"][0]
    assert {"subject_lines", "reference_lines", "regions", "rename_map", "license_obligations"} <= set(match)
    assert d["findings"][0]["kind"] == "code"


def test_base_code_suppresses_boilerplate(code_index, tmp_path, qwen2_source, transformers_models_dir):
    path = tmp_path / "modeling_qwen2.py"
    path.write_text(qwen2_source, encoding="utf-8")
    suppressed = scan_code(path, code_index, base_code=[transformers_models_dir / "llama" / "modeling_llama.py"])
    assert len(suppressed.findings) < len(scan_code(path, code_index).findings)


def test_cuda_kernels_match_after_renaming(tmp_path):
    import torch

    from modelprov.code import CodeIndex

    headers = sorted((Path(torch.__file__).parent / "include/ATen/native/cuda").glob("*.cuh"))[:8]
    reference = tmp_path / "kernels"
    reference.mkdir()
    for header in headers:
        shutil.copy(header, reference)
    index = tmp_path / "index"
    CodeIndex(index).add(reference, name="aten-cuda", version="1", license="BSD-3-Clause")
    chosen = max(headers, key=lambda p: p.stat().st_size)
    renamed, _ = rename_all(chosen.read_text(encoding="utf-8"), "cuda")
    subject = tmp_path / "suspect" / "my_kernels.cuh"
    subject.parent.mkdir()
    subject.write_text(renamed, encoding="utf-8")
    result = scan_code(subject, index)
    assert result.files[0].language == "cuda" and result.files[0].coverage > 0.8
    assert all(m.reference_path == chosen.name for m in result.files[0].matches)
    assert {m.verdict for m in result.files[0].matches} == {"copied"}


def test_git_checkout_records_revision(tmp_path, transformers_models_dir):
    import subprocess

    from modelprov.code import CodeIndex

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(transformers_models_dir / "qwen3" / "modeling_qwen3.py", repo)
    (repo / "untracked.py").write_text("def f():\n    return 1\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(git + ["add", "modeling_qwen3.py"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    reference = CodeIndex(tmp_path / "index").add(repo, name="qwen3-code", license="Apache-2.0")
    assert reference.version == head and reference.files == 1  # tracked files only


def test_declared_parent_reference_and_earliest_version_are_the_origin(tmp_path, transformers_models_dir):
    from modelprov.code import CodeIndex

    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(transformers_models_dir / "qwen3" / "modeling_qwen3.py", code)
    index = CodeIndex(tmp_path / "index")
    # the fork sorts first by name, but declares the upstream as its parent
    index.add(code, name="alpha-fork", version="1", license="Apache-2.0", parent="zeta-upstream")
    index.add(code, name="zeta-upstream", version="2.0", license="Apache-2.0")
    index.add(code, name="zeta-upstream", version="10.0", license="Apache-2.0")
    result = scan_code(code / "modeling_qwen3.py", index.directory)
    origins = {m.reference for f in result.files for m in f.matches}
    assert origins == {"zeta-upstream@2.0"}  # the parent, and its earliest version (2.0 < 10.0)
    match = result.files[0].matches[0]
    listed = {label.split(":")[0] for label in match.also_matches}
    assert listed == {"alpha-fork@1", "zeta-upstream@10.0"}  # the other copies are listed
