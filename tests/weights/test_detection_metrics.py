"""Detection benchmark metrics and null calibration on synthetic inputs, and the runner on a two-case suite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.detection.calibrate import NullPair, independent_model_pairs, tensor_picks
from benchmarks.detection.metrics import (
    confusion, empirical_fpr, fisher_z_array, layer_pair_scores, localisation_matches, null_summary,
    rate_upper_bound, replace_between_markers, roc_auc, separation_margin, threshold_for_fpr,
)
from benchmarks.detection.run import (
    CaseResult, by_transformation, extract, main, merge_error, merge_found, reference_name, run,
)


def test_confusion_counts_each_cell() -> None:
    truth = [True, True, True, False, False]
    said = [True, False, True, True, False]
    c = confusion(truth, said)
    assert (c.true_positive, c.false_negative, c.false_positive, c.true_negative) == (2, 1, 1, 1)
    assert c.recall == pytest.approx(2 / 3)
    assert c.false_positive_rate == pytest.approx(1 / 2)
    assert c.precision == pytest.approx(2 / 3)
    assert confusion([False], [False]).recall is None
    with pytest.raises(ValueError):
        confusion([True], [True, False])


def test_auc_and_margin_see_overlap() -> None:
    truth = [True, True, False, False]
    assert roc_auc(truth, [10.0, 8.0, 1.0, 2.0]) == 1.0
    assert separation_margin(truth, [10.0, 8.0, 1.0, 2.0]) == 6.0
    # one derived case scored below an independent one: AUC drops by 1/4 of the pairs, margin negative
    assert roc_auc(truth, [10.0, 1.5, 1.0, 2.0]) == pytest.approx(0.75)
    assert separation_margin(truth, [10.0, 1.5, 1.0, 2.0]) == pytest.approx(-0.5)
    assert roc_auc([True, True], [1.0, 2.0]) is None and separation_margin([False], [0.0]) is None


def test_layer_pairs_precision_and_recall() -> None:
    expected = [[0, 0], [1, 1], [2, 2], [3, 3]]
    assert layer_pair_scores([(0, 0), (1, 1), (2, 3)], expected) == (pytest.approx(2 / 3), 0.5)
    assert layer_pair_scores([], expected) == (None, 0.0)
    assert layer_pair_scores([(0, 0)], []) == (0.0, None)


def test_localisation() -> None:
    strong = ["model.vision_tower", "model.language_model"]
    assert localisation_matches(["model.vision_tower"], "model.vision_tower", "model.vision_tower", strong)
    # the right prefix, but the finding covers the language model too
    assert not localisation_matches(strong, "(whole model)", "model.vision_tower", strong)
    assert not localisation_matches(["model.language_model"], "model.language_model", "model.vision_tower", strong)
    # a sibling that merely shares the text prefix is not inside it
    assert not localisation_matches(["model.vision_tower2"], "model.vision_tower2", "model.vision_tower", strong)
    # whole model: "(whole model)" or every evidence-bearing component
    assert localisation_matches(["embeddings", "encoder"], "(whole model)", "", ["embeddings", "encoder"])
    assert localisation_matches(["language_model"], "language_model", "", ["language_model"])
    assert not localisation_matches(["embeddings"], "embeddings", "", ["embeddings", "encoder"])
    assert localisation_matches([], "", None, strong) is None


def test_null_summary_accepts_normal_and_rejects_shifted() -> None:
    rng = np.random.default_rng(0)
    ok = null_summary(rng.standard_normal(20000))
    assert abs(ok.mean) < 0.03 and abs(ok.sd - 1) < 0.03 and ok.ks_p > 0.01
    assert 150 < ok.tail_1e2 < 250
    wide = null_summary(1.3 * rng.standard_normal(20000))
    assert wide.ks_p < 1e-6 and wide.tail_1e3 > 100


def test_fisher_z_matches_the_scanner() -> None:
    from modelprov.weights.similarity import fisher_z

    r, n = [0.0, 0.01, -0.2, 0.999], [65536, 65536, 100, 4]
    assert fisher_z_array(r, n) == pytest.approx([fisher_z(a, b) for a, b in zip(r, n)])


def test_threshold_for_fpr_keeps_the_rate() -> None:
    null = np.arange(1000, dtype=float)  # 0..999
    t = threshold_for_fpr(null, 1e-2)
    assert empirical_fpr(null, t) <= 1e-2
    assert empirical_fpr(null, np.nextafter(t, -np.inf)) > 1e-2  # any lower threshold lets more through
    assert threshold_for_fpr(null, 1e-4) is None  # 1000 samples cannot measure 1e-4
    with pytest.raises(ValueError):
        threshold_for_fpr(null, 0.0)


def test_rate_upper_bound() -> None:
    assert rate_upper_bound(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000))  # ≈ 3/n, the rule of three
    assert 0.05 < rate_upper_bound(5, 100) < 0.12  # above the observed 0.05
    assert rate_upper_bound(3, 3) == 1.0
    with pytest.raises(ValueError):
        rate_upper_bound(4, 3)


def test_replace_between_markers_keeps_the_rest() -> None:
    text = "# Doc\nintro\n<!-- s -->\nold\n<!-- e -->\nafter\n"
    out = replace_between_markers(text, "new", "<!-- s -->", "<!-- e -->")
    assert out == "# Doc\nintro\n<!-- s -->\nnew\n<!-- e -->\nafter\n"
    assert replace_between_markers("# Doc\n", "x", "<!-- s -->", "<!-- e -->").endswith("<!-- s -->\nx\n<!-- e -->\n")


def test_tensor_picks_take_the_best_candidate_with_bonferroni() -> None:
    def pair(ref: str, r: float, weak: bool = False) -> NullPair:
        return NullPair("a", "b", "suite", "s", ref, "attn_q", weak, r, r, 65536)

    picks = tensor_picks([pair("q", 0.001), pair("q", 0.01), pair("k", 0.002), pair("norm", 0.5, weak=True)])
    assert [(p.reference, p.candidates) for p in picks] == [("k", 1), ("q", 2)]
    from modelprov.weights.similarity import similarity

    assert picks[1].log10_p == pytest.approx(similarity(0.01, 0.01, 65536, candidates=2).log10_p)


def test_independent_pairs_skip_shared_seeds() -> None:
    cases = [{"case": "a", "derived": False, "transformations": ["fresh_init(seed=1)"]},
             {"case": "b", "derived": False, "transformations": ["train(seed=3)"]},
             {"case": "c", "derived": False, "transformations": ["composite(x=fresh(seed=8), y=trained(seed=3))"]},
             {"case": "d", "derived": True, "transformations": []}]
    assert [(a["case"], b["case"]) for a, b in independent_model_pairs(cases)] == [("a", "b"), ("a", "c")]


def test_extract_prefers_the_per_reference_score() -> None:
    case = {"derived": True, "expected_component": "", "expected_layers": [[0, 0], [1, 1]]}
    finding = {"kind": "weights", "verdict": "derived", "reference": {"name": "ref"}, "subject": "(whole model)",
               "transformations": ["layers permuted"],
               "statistics": {"log10_p": -40.0, "components": ["enc"],
                              "per_layer": [{"suspect_layer": 0, "reference_layer": 0},
                                            {"suspect_layer": 1, "reference_layer": 0}]}}
    report = {"findings": [finding, {**finding, "reference": {"name": "other"}}],
              "details": {"weights": {"references": [{"reference": "ref", "stacks": []}],
                                      "components": {"enc": {"weak_only": False}}}}}
    got = extract(report, case, "ref")
    assert (got["score"], got["score_source"], got["verdict"]) == (40.0, "finding", "derived")
    assert got["localised"] and (got["layer_precision"], got["layer_recall"]) == (0.5, 0.5)
    assert got["spurious_references"] == ["other"] and got["transformations_found"] == ["layers permuted"]
    report["details"]["weights"]["references"][0]["score"] = {"log10_p": -55.0}
    assert extract(report, case, "ref")["score"] == 55.0
    assert extract({"findings": [], "details": {}}, case, "ref")["verdict"] == "none"


def test_a_merge_states_its_parents_and_its_other_parent_is_not_spurious() -> None:
    merge = {"parents": [{"reference": "ref", "share": 0.31}, {"reference": "other", "share": 0.69}],
             "unknown_share": 0.0}
    finding = {"kind": "weights", "verdict": "derived", "reference": {"name": "ref"}, "subject": "(whole model)",
               "transformations": [], "statistics": {"log10_p": -300.0, "merge": merge}}
    report = {"findings": [finding, {**finding, "reference": {"name": "other"}}], "details": {}}
    case = {"derived": True, "expected_component": "", "expected_layers": [], "merge_parents": {"ref": 0.3, "other": 0.7}}
    got = extract(report, case, "ref")
    assert got["spurious_references"] == [] and got["merge_found"] == {"ref": 0.31, "other": 0.69}
    assert extract(report, {**case, "merge_parents": {}}, "ref")["spurious_references"] == ["other"]
    result = CaseResult("m", True, "ref", 300.0, "score", "derived", 1.0, "", merge_truth={"ref": 0.3, "unindexed": 0.7},
                        merge_found={"ref": 0.31})
    assert merge_error(result) == pytest.approx(0.7)  # the unindexed share was not stated
    assert merge_found([{**finding, "statistics": {}}]) == {}


def test_by_transformation_counts_cases_per_kind() -> None:
    def case(name: str, steps: list[str], verdict: str, recall: float | None = 1.0) -> CaseResult:
        return CaseResult(name, True, "ref", 0.0, "none", verdict, None, "", localised=verdict != "none",
                          layer_recall=recall, transformations_truth=steps)

    got = by_transformation([case("a", ["prune_mlp_width(0.75)", "cast(bf16)"], "derived", 0.5),
                             case("b", ["prune_mlp_width(0.5)"], "none", 0.0), case("c", ["cast(bf16)"], "copied")])
    assert got == {"cast": {"cases": 2, "detected": 2, "localised": 1},
                   "prune_mlp_width": {"cases": 2, "detected": 1, "localised": 0}}


def test_runner_on_a_two_case_suite(tmp_path: Path, minilm_dir: Path, minilm_independent_fresh: Path) -> None:
    """The real scanner on the reference itself (derived) and a fresh initialisation of it (independent)."""
    (tmp_path / "copy").symlink_to(minilm_dir)
    (tmp_path / "fresh").symlink_to(minilm_independent_fresh)
    suite = {"schema": 1, "references": {"minilm": {"name": "sentence-transformers/all-MiniLM-L6-v2"}}, "cases": [
        {"case": "copy", "path": "copy", "source_reference": "minilm", "derived": True, "transformations": [],
         "expected_component": "", "expected_layers": [[i, i] for i in range(6)]},
        {"case": "fresh", "path": "fresh", "source_reference": "minilm", "derived": False,
         "transformations": ["fresh_init(seed=1)"], "expected_component": None, "expected_layers": []},
    ]}
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    assert reference_name(suite, "minilm") == "all-MiniLM-L6-v2"
    doc = tmp_path / "detection.md"
    doc.write_text("# Doc\nhand-written\n")
    out = tmp_path / "detection.json"
    result = CliRunner().invoke(main, ["--suite", str(tmp_path), "--out", str(out), "--markdown", "--doc", str(doc)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    copy, fresh = data["cases"]
    assert copy["verdict"] == "copied" and copy["localised"] and copy["layer_recall"] == 1.0 and copy["score"] > 6
    assert fresh["verdict"] == "none" and fresh["score"] < 6
    summary = data["summary"]
    assert summary["confusion"]["true_positive"] == 1 and summary["confusion"]["true_negative"] == 1
    assert summary["roc_auc"] == 1.0 and summary["margin"] > 0
    text = doc.read_text()
    assert text.startswith("# Doc\nhand-written\n") and "| copy | derived |" in text and "| fresh | independent |" in text
    doc.write_text("# Doc\nhand-written\n")  # re-rendered from the JSON alone, without scanning
    result = CliRunner().invoke(main, ["--render-only", "--out", str(out), "--markdown", "--doc", str(doc)])
    assert result.exit_code == 0, result.output
    assert "| copy | derived |" in doc.read_text() and json.loads(out.read_text())["summary"] == summary
    only, _ = run(tmp_path, only={"fresh"})
    assert [r.case for r in only] == ["fresh"]
