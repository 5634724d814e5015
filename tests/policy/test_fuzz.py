"""Whatever a user puts in a policy or declaration file, loading ends in a result or a PolicyError, never a crash."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelprov.errors import PolicyError
from modelprov.policy import Status, evaluate, load_declaration, load_policy, load_report_findings

KEYS = st.sampled_from([
    "policy", "name", "rules", "thresholds", "severity", "parameters", "components", "component", "reference",
    "reinitialised", "trained", "bidder", "tokenizer", "origin", "training", "evidence", "code", "paths",
    "undeclared-reuse", "copy_similarity", "kinds", "home_country", "x",
])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=5)


def _load_or_policy_error(load, path: Path) -> None:
    try:
        load(path)
    except PolicyError as err:
        assert "\n" not in err.one_line()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_any_yaml_declaration_loads_or_raises_policy_error(document):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.yaml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        _load_or_policy_error(load_declaration, path)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(['[', ']', '[[', ']]', '.', '"', '=', '\n', ' ', '#', ',', '{', '}', '1', '0.5', 'true',
                                 'rules', 'policy', 'name', 'components', 'severity', '"fail"', 'undeclared-reuse']),
                max_size=40).map("".join))
def test_any_toml_text_loads_or_raises_policy_error(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.toml"
        path.write_text(text, encoding="utf-8")
        _load_or_policy_error(load_policy, path)
        _load_or_policy_error(load_declaration, path)


FINDING_FIELDS = {
    "kind": st.sampled_from(["weights", "tokenizer", "code", "architecture", "x", 3]),
    "verdict": st.one_of(st.sampled_from(["copied", "derived", "independent", "identical", "unrelated"]), SCALARS),
    "subject": st.one_of(st.sampled_from(["model.visual", "(whole model)", "a + b", "m.py::f"]), SCALARS),
    "reference": st.one_of(st.fixed_dictionaries({"name": st.text(min_size=1, max_size=5)},
                                                 optional={"country": SCALARS, "org": SCALARS, "license": SCALARS}),
                           SCALARS),
    "statistics": st.one_of(st.dictionaries(st.sampled_from(["centred_similarity", "log10_p", "p_value", "components"]),
                                            VALUES, max_size=3), SCALARS),
    "parameter_share": SCALARS,
    "parameter_count": SCALARS,
    "license_obligations": VALUES,
}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional=FINDING_FIELDS), max_size=3))
def test_any_saved_report_is_judged_or_raises_policy_error(findings):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.json"
        path.write_text(json.dumps({"findings": findings}), encoding="utf-8")
        try:
            loaded, subject = load_report_findings(path)
        except PolicyError as err:
            assert "\n" not in err.one_line()
            return
        result = evaluate(loaded, load_policy("sovereign-foundation-model"), subject=subject, home_country="KR")
        assert result.overall in Status
