"""The suite manifest is complete and truthful: enough cases of each kind, and built cases match their record."""

from __future__ import annotations

import json

from benchmarks.detection import build_suite, derive
from modelprov.reader import open_checkpoint


def test_suite_covers_enough_derived_and_independent_cases():
    cases = build_suite.cases()
    names = [c.case for c in cases]
    assert len(names) == len(set(names))
    derived = [c for c in cases if c.derived]
    independent = [c for c in cases if not c.derived]
    assert len(derived) >= 12 and len(independent) >= 5
    assert {c.source_reference for c in derived} == {"minilm", "smollm2", build_suite.MERGE_REFERENCE}
    merges = [c for c in cases if c.parents]
    assert len(merges) >= 5 and all(c.derived and c.relation == "derived" for c in merges)
    assert all(abs(sum(c.parents.values()) - 1) < 1e-9 and c.source_reference in c.parents for c in merges)
    assert any("unindexed" in c.parents for c in merges)
    assert {c.transformations[0].split("(")[0] for c in merges} >= {"merge_linear", "merge_slerp", "merge_ties",
                                                                    "merge_dare"}
    assert all(c.transformations for c in cases)
    assert all(c.expected_layers for c in derived) and not any(c.expected_layers for c in independent)


def test_cheap_cases_build_and_match_their_ground_truth(tmp_path):
    only = {"minilm_llama_names", "minilm_depth_upscaled", "minilm_arch_fresh_seed1"}
    manifest = json.loads(build_suite.build_suite(tmp_path, only=only).read_text())
    records = {c["case"]: c for c in manifest["cases"]}
    assert set(records) == only
    assert records["minilm_arch_fresh_seed1"]["derived"] is False
    assert records["minilm_arch_fresh_seed1"]["expected_component"] is None
    upscaled = records["minilm_depth_upscaled"]
    with open_checkpoint(tmp_path / upscaled["path"]) as ck:
        layers = {derive._LAYER_RE.match(t.name).group(2) for t in ck.tensors() if derive._LAYER_RE.match(t.name)}
        assert len(layers) == len(upscaled["expected_layers"]) == 8
    renamed = records["minilm_llama_names"]
    assert renamed["expected_component"] == ""  # the whole model is derived
    with open_checkpoint(tmp_path / renamed["path"]) as ck:
        assert {t.name.split(".")[0] for t in ck.tensors()} == {"model"}
    # A second run reuses what is built.
    again = json.loads(build_suite.build_suite(tmp_path, only=only).read_text())
    assert again["cases"] == manifest["cases"]
