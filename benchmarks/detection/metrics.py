"""Pure metric functions of the detection benchmark: separation, confusion, localisation, null calibration.

Kept apart from the runner so they are unit-tested on synthetic inputs (tests/weights/test_detection_metrics.py).
Scores are −log10 p (higher = more evidence of derivation); truth is `True` for derived cases.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import confusion_matrix, roc_auc_score

WHOLE_MODEL = "(whole model)"


@dataclass(frozen=True)
class Confusion:
    """Confusion matrix of a binary verdict (derived/copied = positive) against the ground truth."""

    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int

    @property
    def recall(self) -> float | None:
        pos = self.true_positive + self.false_negative
        return self.true_positive / pos if pos else None

    @property
    def false_positive_rate(self) -> float | None:
        neg = self.false_positive + self.true_negative
        return self.false_positive / neg if neg else None

    @property
    def precision(self) -> float | None:
        called = self.true_positive + self.false_positive
        return self.true_positive / called if called else None

    def to_dict(self) -> dict[str, float | int | None]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall,
                "false_positive_rate": self.false_positive_rate}


def confusion(truth: Sequence[bool], predicted: Sequence[bool]) -> Confusion:
    """Counts of each (truth, verdict) combination."""
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    tn, fp, fn, tp = confusion_matrix(np.asarray(truth, bool), np.asarray(predicted, bool),
                                      labels=[False, True]).ravel()
    return Confusion(int(tp), int(fp), int(tn), int(fn))


def roc_auc(truth: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve of the score; None when the cases hold only one class."""
    y = np.asarray(truth, bool)
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, np.asarray(scores, float)))


def separation_margin(truth: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Lowest derived score minus highest independent score: > 0 means a threshold separates them all."""
    s = np.asarray(scores, float)
    y = np.asarray(truth, bool)
    if y.all() or not y.any():
        return None
    return float(s[y].min() - s[~y].max())


def layer_pair_scores(found: Iterable[Sequence[int]],
                      expected: Iterable[Sequence[int]]) -> tuple[float | None, float | None]:
    """Precision and recall of (suspect layer, reference layer) pairs; None where the denominator is empty."""
    f = {(int(a), int(b)) for a, b in found}
    e = {(int(a), int(b)) for a, b in expected}
    hit = len(f & e)
    return (hit / len(f) if f else None), (hit / len(e) if e else None)


def localisation_matches(finding_components: Sequence[str], subject: str, expected: str | None,
                         strong_components: Sequence[str]) -> bool | None:
    """Does a finding sit on the expected part? None when there is nothing expected (independent case).

    `expected` "" (or "(whole model)") means the whole model: the finding must be "(whole model)" or
    cover every component that holds evidence-bearing weights (`strong_components`). A prefix such as
    "model.vision_tower" means the finding's components must all lie inside it — and it must not be
    the whole model unless that prefix is all the model holds.
    """
    if expected is None:
        return None
    comps = set(finding_components) or ({subject} if subject else set())
    if not comps:
        return False
    if expected in ("", WHOLE_MODEL):
        return subject == WHOLE_MODEL or set(strong_components) <= comps
    if subject == WHOLE_MODEL:
        return all(_inside(c, expected) for c in strong_components)
    return all(_inside(c, expected) for c in comps)


def _inside(component: str, prefix: str) -> bool:
    return component == prefix or component.startswith(prefix + ".")


# --- Null calibration -------------------------------------------------------------------------------------

def fisher_z_array(r: Sequence[float], n: Sequence[int]) -> np.ndarray:
    """The scanner's per-tensor statistic (`modelprov.weights.similarity.fisher_z`) for each (r, n) pair."""
    from modelprov.weights.similarity import fisher_z

    return np.array([fisher_z(float(a), int(b)) for a, b in zip(r, n)], dtype=float)


@dataclass(frozen=True)
class NullSummary:
    """How a sample of null z statistics compares with N(0, 1)."""

    count: int
    mean: float
    sd: float
    max: float
    ks_statistic: float
    ks_p: float
    tail_1e2: int  # samples above N(0,1)'s one-sided 1e-2 point (2.326); expected count·1e-2
    tail_1e3: int  # samples above 3.090; expected count·1e-3

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def null_summary(z: Sequence[float]) -> NullSummary:
    """Mean, sd, max, the Kolmogorov–Smirnov test against N(0, 1), and tail counts of a null z sample."""
    z = np.asarray(z, float)
    if z.size == 0:
        raise ValueError("empty null sample")
    ks = stats.kstest(z, "norm")
    return NullSummary(int(z.size), float(z.mean()), float(z.std(ddof=1)) if z.size > 1 else 0.0, float(z.max()),
                       float(ks.statistic), float(ks.pvalue), int((z > stats.norm.isf(1e-2)).sum()),
                       int((z > stats.norm.isf(1e-3)).sum()))


def empirical_fpr(null_scores: Sequence[float], threshold: float) -> float:
    """Share of null scores at or above the threshold (the rate of false positives it would give)."""
    s = np.asarray(null_scores, float)
    if s.size == 0:
        raise ValueError("empty null sample")
    return float((s >= threshold).mean())


def rate_upper_bound(events: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper bound of a rate seen `events` times in `trials` (0 of n: ≈ 3/n)."""
    if trials <= 0 or not 0 <= events <= trials:
        raise ValueError("need 0 <= events <= trials and trials > 0")
    return 1.0 if events == trials else float(stats.beta.ppf(confidence, events + 1, trials - events))


def threshold_for_fpr(null_scores: Sequence[float], target: float) -> float | None:
    """Smallest threshold whose empirical false-positive rate on the null sample is ≤ target.

    None when the sample is too small to measure that rate (fewer than 1/target samples): then only a
    model of the null (e.g. N(0, 1) with a Bonferroni correction) can give the threshold.
    """
    s = np.sort(np.asarray(null_scores, float))[::-1]
    if not 0 < target < 1:
        raise ValueError("target must lie in (0, 1)")
    if s.size < math.ceil(1 / target):
        return None
    allowed = int(math.floor(target * s.size))  # null samples that may lie at or above the threshold
    return float(np.nextafter(s[allowed], np.inf)) if allowed < s.size else float(s[-1])


def replace_between_markers(text: str, body: str, start: str, end: str) -> str:
    """`text` with the part between the `start` and `end` marker lines replaced by `body` (appended if absent)."""
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text.split(start, 1)[1]:
        head, rest = text.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + block + "\n"
