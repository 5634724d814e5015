"""Merges: mixture weights by least squares on the sketches, on small synthetic models merged with the derivation
kit (linear, SLERP, TIES, DARE), against an index of the parents."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.numpy import save_file

from benchmarks.detection import derive
from modelprov.findings import Reference
from modelprov.index import ReferenceIndex, add_checkpoint
from modelprov.scan import scan
from tests.weights.synthetic import bert_like


def _model(seed: int) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in bert_like(seed).items()}


def _save(sd: dict[str, torch.Tensor], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.numpy() for k, v in sd.items()}, str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def parents(tmp_path_factory) -> tuple[Path, dict[str, dict[str, torch.Tensor]]]:
    """An index of two unrelated parents A and B; C (unindexed) is a third model."""
    root = tmp_path_factory.mktemp("merge")
    models = {"A": _model(1), "B": _model(2), "C": _model(3)}
    index = ReferenceIndex.create(root / "index")
    for name in ("A", "B"):
        add_checkpoint(index, _save(models[name], root / name), Reference(f"parent-{name}"))
    index.save()
    return root / "index", models


def _merge_of(report) -> dict | None:
    merges = [f.statistics.get("merge") for f in report.findings if f.kind == "weights"]
    assert all(m == merges[0] for m in merges)  # every parent's finding carries the same estimate
    return merges[0] if merges else None


def _scan(sd, tmp_path, index):
    return scan(_save(sd, tmp_path / "suspect"), index, tokenizer=False, code=False, hash_files=False)


def _shares(merge: dict) -> dict[str, float]:
    return {p["reference"]: p["share"] for p in merge["parents"]}


@pytest.mark.parametrize("a", [0.3, 0.5, 0.8])
def test_linear_merge_of_two_references_reports_both_weights(parents, tmp_path, a):
    index, m = parents
    report = _scan(derive.merge_linear([m["A"], m["B"]], [a, 1 - a]), tmp_path, index)
    merge = _merge_of(report)
    assert {f.reference.name for f in report.findings} == {"parent-A", "parent-B"}
    assert _shares(merge) == pytest.approx({"parent-A": a, "parent-B": 1 - a}, abs=0.05)
    assert merge["unknown_share"] < 0.05 and merge["method"] == "linear"
    assert f"parent-A (≈{a:.2f})" in merge["statement"] and merge["statement"] in report.findings[0].transformations
    layers = merge["parents"][0]["per_layer"]
    assert len(layers) == 4 and all(abs(row["weight"] - merge["parents"][0]["weight"]) < 0.05 for row in layers)


def test_merge_with_an_unindexed_model_reports_the_unknown_share(parents, tmp_path):
    index, m = parents
    report = _scan(derive.merge_linear([m["A"], m["C"]], [0.5, 0.5]), tmp_path, index)
    merge = _merge_of(report)
    assert [f.reference.name for f in report.findings] == ["parent-A"]
    assert _shares(merge) == pytest.approx({"parent-A": 0.5}, abs=0.05)
    assert merge["unknown_share"] == pytest.approx(0.5, abs=0.05)
    assert "and an unindexed model (≈0.5" in merge["statement"]


def test_slerp_is_read_from_the_angle(parents, tmp_path):
    index, m = parents
    merge = _merge_of(_scan(derive.merge_slerp(m["A"], m["B"], 0.3), tmp_path, index))
    assert merge["method"] == "slerp"
    assert _shares(merge) == pytest.approx({"parent-A": 0.7, "parent-B": 0.3}, abs=0.05)


@pytest.mark.parametrize("method", ["ties", "dare"])
def test_ties_and_dare_name_both_parents_in_order(parents, tmp_path, method):
    index, m = parents
    merged = (derive.merge_ties([m["A"], m["B"]], [0.3, 0.7], density=0.5) if method == "ties"
              else derive.merge_dare([m["A"], m["B"]], [0.3, 0.7], drop=0.5, seed=4))
    merge = _merge_of(_scan(merged, tmp_path, index))
    shares = _shares(merge)
    assert set(shares) == {"parent-A", "parent-B"} and shares["parent-A"] < shares["parent-B"]
    assert shares["parent-A"] == pytest.approx(0.3, abs=0.12)


@pytest.mark.parametrize("change", ["copy", "finetune"])
def test_a_copy_or_a_fine_tune_is_not_a_merge(parents, tmp_path, change):
    index, m = parents
    gen = torch.Generator().manual_seed(5)
    sd = {k: v + (0.002 * torch.randn(v.shape, generator=gen) if change == "finetune" else 0) for k, v in m["A"].items()}
    report = _scan(sd, tmp_path, index)
    assert [f.reference.name for f in report.findings] == ["parent-A"]
    assert _merge_of(report) is None


def test_related_references_are_not_split_into_a_merge(tmp_path):
    """A reference and its own fine-tune in one index: least squares cannot tell them apart, so no merge is stated."""
    base = _model(1)
    tuned = {k: v + 0.004 * torch.randn(v.shape, generator=torch.Generator().manual_seed(6)) for k, v in base.items()}
    index = ReferenceIndex.create(tmp_path / "index")
    add_checkpoint(index, _save(base, tmp_path / "base"), Reference("base"))
    add_checkpoint(index, _save(tuned, tmp_path / "tuned"), Reference("tuned"))
    index.save()
    report = _scan(derive.merge_linear([base, tuned], [0.5, 0.5]), tmp_path, tmp_path / "index")
    assert {f.reference.name for f in report.findings} == {"base", "tuned"}
    assert _merge_of(report) is None


def test_a_copy_costs_no_mixture_estimate(parents, tmp_path, monkeypatch):
    """Copied tensors are one reference's own, so the scan does not fit merge weights for them (a second of the
    SmolLM2 self-scan)."""
    import modelprov.weights.scan as weights_scan

    def fail(*args, **kwargs):
        raise AssertionError("mixture estimated for a copy")

    monkeypatch.setattr(weights_scan, "estimate_mixture", fail)
    index, m = parents
    report = _scan(m["A"], tmp_path, index)
    assert [(f.reference.name, f.verdict) for f in report.findings] == [("parent-A", "copied")]
    assert _merge_of(report) is None
