"""Plain statements of findings: what the evidence can and cannot say."""

from __future__ import annotations

import pytest

from modelprov.report import finding_statements
from modelprov.report.wording import DIRECTION


def _weights(verdict: str) -> dict:
    return {"kind": "weights", "verdict": verdict, "parameter_share": 0.9,
            "statistics": {"layers_total": 6, "layers_matched": 6, "centred_similarity": 0.91, "null_sd": 0.004}}


def test_a_derived_weights_finding_says_weights_do_not_show_the_direction():
    """Two siblings fine-tuned from one base match each other as "derived" (paraphrase-MiniLM-L3-v2 against
    all-MiniLM-L6-v2, both from MiniLM-L12): the statement must not claim which one came from which."""
    said = finding_statements(_weights("derived"))
    assert "6 of 6 layers match" in said and DIRECTION in said
    assert "common ancestor" in DIRECTION


@pytest.mark.parametrize("verdict", ["copied", "none", "output-aligned"])
def test_other_verdicts_carry_no_direction_caveat(verdict):
    assert DIRECTION not in finding_statements(_weights(verdict))
