"""A calibrated probability that a (component, reference) finding is reuse, with an honest "inconclusive" band.

The map from evidence to probability is fitted on the detection suite (`python -m benchmarks.detection.probability`:
isotonic regression with scikit-learn, cross-validated) and shipped as `calibration.json`, so a scan applies it
with no fitting and no scikit-learn. The feature is x = log10(1 + s), s = −log10 p of the reference's combined
evidence (`details.weights.references[i].score`), which exists for derived and independent models alike.
Between the highest independent and the lowest derived score the suite has no case: the fit interpolates
there, and that is where the "inconclusive" band lies.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from modelprov.findings import Finding

CALIBRATION_RESOURCE = "calibration.json"
BANDS = ("independent", "inconclusive", "reuse")


@dataclass(frozen=True)
class Calibration:
    """A monotone map x = log10(1 + s) → P(reuse) (piecewise linear through `points`), the band edges and the
    sample behind it."""

    points: tuple[tuple[float, float], ...]  # (x, P) knots of the isotonic fit, x increasing
    lower: float  # below: "independent"
    upper: float  # at or above: "reuse"; between: "inconclusive"
    min_tensors: int  # a derived (not copied) finding on fewer evidence tensors is "inconclusive" whatever P
    n: int
    positives: int
    negatives: int
    method: str = "isotonic"
    source: str = ""

    def probability(self, score: float) -> float:
        """P(reuse) for s = −log10 p (clipped at 0), constant beyond the fitted range."""
        x = math.log10(1.0 + max(0.0, score))
        xs, ps = zip(*self.points)
        if x <= xs[0]:
            return ps[0]
        for (x0, p0), (x1, p1) in zip(self.points, self.points[1:]):
            if x <= x1:
                return p0 + (p1 - p0) * (x - x0) / (x1 - x0) if x1 > x0 else p1
        return ps[-1]

    def band(self, probability: float, finding: Finding | None = None) -> str:
        """"reuse" (copied or derived), "inconclusive" or "independent"; few tensors make a derived (not copied) finding inconclusive."""
        if finding is not None and finding.verdict == "derived" and (
                finding.statistics.get("tensors_matched", self.min_tensors) < self.min_tensors):
            return "inconclusive"
        if probability >= self.upper:
            return "reuse"
        return "independent" if probability < self.lower else "inconclusive"

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "points": [list(p) for p in self.points], "lower": self.lower,
                "upper": self.upper, "min_tensors": self.min_tensors, "n": self.n, "positives": self.positives,
                "negatives": self.negatives, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
        points = tuple((float(x), float(p)) for x, p in d["points"])
        return cls(points, float(d["lower"]), float(d["upper"]), int(d["min_tensors"]), int(d["n"]),
                   int(d["positives"]), int(d["negatives"]), str(d.get("method", "isotonic")), str(d.get("source", "")))


@lru_cache(maxsize=1)
def shipped_calibration() -> Calibration:
    """The calibration fitted on the detection suite and shipped with the package."""
    text = resources.files("modelprov.weights").joinpath(CALIBRATION_RESOURCE).read_text(encoding="utf-8")
    return Calibration.from_dict(json.loads(text))


def probability_statement(finding: Finding, score: float, calibration: Calibration) -> dict[str, Any]:
    """What a finding carries: P(reuse), its band, the feature and the calibration sample it rests on.

    An output-aligned finding gets none: it is no reuse verdict, and the suite calibrates reuse only on the
    cases the scanner did not call output-aligned.
    """
    sample = {"method": calibration.method, "n": calibration.n, "positives": calibration.positives,
              "negatives": calibration.negatives, "band": [calibration.lower, calibration.upper]}
    if finding.verdict == "output-aligned":
        return {"reuse": None, "band": "output-aligned", "score": score, "calibration": sample}
    p = calibration.probability(score)
    return {"reuse": p, "band": calibration.band(p, finding), "score": score, "calibration": sample}
