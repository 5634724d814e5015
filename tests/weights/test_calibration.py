"""The calibrated probability of reuse: fitted out of fold, shipped with the package, applied by the scan, and its
"inconclusive" band mapped to REVIEW by the policies."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.detection.probability import calibration_rows, fit, out_of_fold, reliability
from modelprov.policy import Relation, Status, Thresholds, evaluate, load_policy, relation
from modelprov.weights.calibration import Calibration, probability_statement, shipped_calibration
from tests.policy.synthetic import QWEN_BASE, weights


def _cases(derived_scores, independent_scores):
    return ([{"case": f"d{i}", "score": s, "relation": "derived", "verdict": "derived"} for i, s in enumerate(derived_scores)]
            + [{"case": f"n{i}", "score": s, "relation": "none", "verdict": "none"} for i, s in enumerate(independent_scores)])


def test_no_case_is_scored_by_a_model_fitted_on_it(monkeypatch):
    """Every model that scores a case was fitted on a training set without that case, and every case is scored."""
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 1.5, 12), rng.uniform(1.0, 2.5, 12)])  # distinct values: they identify cases
    y = np.array([0] * 12 + [1] * 12)
    seen: list[tuple[set, set]] = []
    fit_, predict_ = IsotonicRegression.fit, IsotonicRegression.predict

    def fit(self, xs, ys, *a, **k):
        self._trained_on = set(np.asarray(xs).ravel().tolist())
        return fit_(self, xs, ys, *a, **k)

    def predict(self, xs):
        seen.append((self._trained_on, set(np.asarray(xs).ravel().tolist())))
        return predict_(self, xs)

    monkeypatch.setattr(IsotonicRegression, "fit", fit)
    monkeypatch.setattr(IsotonicRegression, "predict", predict)
    oof = out_of_fold(x, y)
    assert len(seen) == 5 and all(not (train & scored) for train, scored in seen)
    assert set().union(*(scored for _, scored in seen)) == set(x.tolist()) and np.isfinite(oof).all()


def test_output_aligned_cases_are_left_out_and_errors_too():
    cases = _cases([296.0, 295.0], [0.3]) + [
        {"case": "distilled", "score": 296.0, "relation": "output-aligned", "verdict": "output-aligned"},
        {"case": "crashed", "score": 0.0, "relation": "derived", "verdict": "error"},
        {"case": "missed_distillation", "score": 296.0, "relation": "output-aligned", "verdict": "derived"}]
    rows = {r["case"]: r["reuse"] for r in calibration_rows(cases)}
    assert rows == {"d0": True, "d1": True, "n0": False, "missed_distillation": False}


def test_the_fit_separates_the_suite_and_leaves_the_gap_inconclusive():
    result = fit(_cases([296.0, 295.5, 294.9, 296.2, 295.0, 297.0], [0.0, 0.3, 0.8, 0.4, 0.6]))
    cal = Calibration.from_dict(result["calibration"])
    assert cal.n == 11 and (cal.positives, cal.negatives) == (6, 5)
    assert cal.band(cal.probability(296.0)) == "reuse" and cal.band(cal.probability(0.2)) == "independent"
    assert cal.band(cal.probability(30.0)) == "inconclusive"  # no suite case lies there
    assert [b["n"] for b in result["reliability"]] and sum(b["n"] for b in result["reliability"]) == 11


def test_reliability_bins_count_and_average():
    bins = reliability(np.array([0.0, 0.01, 0.6, 0.97, 1.0]), np.array([0, 0, 1, 1, 1]))
    assert [b["n"] for b in bins] == [2, 0, 1, 2]
    assert bins[3]["mean_predicted"] == pytest.approx(0.985) and bins[3]["observed"] == 1.0


def test_the_shipped_calibration_is_monotone_and_states_its_sample():
    cal = shipped_calibration()
    assert cal.n == cal.positives + cal.negatives and cal.negatives >= 8
    ps = [cal.probability(s) for s in (0, 1, 5, 20, 100, 250, 300)]
    assert ps == sorted(ps) and ps[0] < cal.lower and ps[-1] >= cal.upper


def test_few_tensors_make_a_derived_finding_inconclusive():
    cal = shipped_calibration()
    small = weights("mm_projector", QWEN_BASE, "derived", similarity=0.5, log10_p=-300, share=0.01)
    small.statistics["tensors_matched"] = 2
    assert probability_statement(small, 296.0, cal)["band"] == "inconclusive"
    small.statistics["tensors_matched"] = 12
    assert probability_statement(small, 296.0, cal)["band"] == "reuse"


def test_inconclusive_findings_go_to_review():
    finding = weights("(whole model)", QWEN_BASE, "derived", similarity=0.4, log10_p=-40, share=1.0)
    finding.statistics["probability"] = probability_statement(finding, 40.0, shipped_calibration())
    assert finding.statistics["probability"]["band"] == "inconclusive"
    assert relation(finding, Thresholds()) is Relation.UNCERTAIN
    result = evaluate([finding], load_policy("sovereign-foundation-model"), home_country="KR")
    assert result.rule("foreign-base-model").status is Status.REVIEW
    assert result.rule("undeclared-reuse").status is Status.REVIEW
    finding.statistics["probability"] = probability_statement(finding, 0.5, shipped_calibration())
    assert finding.statistics["probability"]["band"] == "independent"
    assert relation(finding, Thresholds()) is Relation.UNCERTAIN  # not backed, but not dropped either
    finding.statistics["probability"] = probability_statement(finding, 296.0, shipped_calibration())
    assert relation(finding, Thresholds()) is Relation.DERIVED


def test_a_scan_gives_every_weights_finding_its_probability(minilm_dir, minilm_index):
    from modelprov.scan import scan

    report = scan(minilm_dir, minilm_index, tokenizer=False, code=False, hash_files=False)
    (finding,) = [f for f in report.findings if f.kind == "weights"]
    probability = finding.statistics["probability"]
    assert probability["band"] == "reuse" and probability["reuse"] >= 0.95
    assert probability["calibration"]["n"] == shipped_calibration().n
