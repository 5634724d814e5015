"""Policy, declaration and report files: presets load, examples validate, and every malformed file is
reported with its file, line and key path."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from modelprov.errors import PolicyError
from modelprov.findings import LicenseObligation
from modelprov.policy import (
    RULES, finding_from_dict, list_presets, load_declaration, load_policy, load_report_findings,
)
from modelprov.policy.declaration import path_matches
from tests.policy.synthetic import LLAMA, QWEN_VL, code, copied_encoder, tokenizer, write

EXAMPLES = Path(__file__).parents[2] / "docs" / "examples"


def test_presets_are_the_three_programmes_and_use_only_known_rules():
    assert list_presets() == ["disclosure", "license-compliance", "sovereign-foundation-model"]
    for name in list_presets():
        policy = load_policy(name)
        assert policy.name == name and policy.source == name
        assert policy.rules and all(rule.id in RULES for rule in policy.rules)
        assert policy.home_country is None  # "foreign" is never hard-coded


def test_example_policy_and_declarations_load_and_agree():
    policy = load_policy(EXAMPLES / "policy.toml")
    assert policy.home_country == "KR"
    retrained = next(r for r in policy.rules if r.id == "reused-weights-retrained")
    assert retrained.thresholds.copy_similarity == 0.96 and policy.thresholds.copy_similarity == 0.98
    from_toml = load_declaration(EXAMPLES / "declaration.toml")
    from_yaml = load_declaration(EXAMPLES / "declaration.yaml")
    strip = lambda items: [asdict(i) | {"line": None} for i in items]  # noqa: E731 (lines differ by format)
    assert strip(from_toml.items) == strip(from_yaml.items)
    assert from_toml.backbone == from_yaml.backbone == ("model.language_model", "lm_head")
    assert from_toml.organisation == "Example AI"


MALFORMED_POLICIES = [
    ("syntax.toml", '[policy]\nname = "x"\n[rules.attribution-duties\n', "line 3, column"),
    ("rule.toml", '[policy]\nname = "x"\n\n[rules.no-such-rule]\nseverity = "fail"\n',
     "line 4: rules.no-such-rule: unknown rule id 'no-such-rule'"),
    ("severity.toml", '[policy]\nname = "x"\n[rules.attribution-duties]\nseverity = "fatal"\n',
     "line 4: rules.attribution-duties.severity: 'fatal' is not one of"),
    ("type.toml", '[policy]\nname = "x"\n[rules.undeclared-reuse]\nparameters = { kinds = "weights" }\n',
     "line 4: rules.undeclared-reuse.parameters.kinds: 'weights' is not of type 'array'"),
    ("param.toml", '[policy]\nname = "x"\n[rules.undeclared-reuse]\n\n\nparameters = { colour = 1 }\n',
     "line 6: rules.undeclared-reuse.parameters.colour: unknown key 'colour' (expected one of: kinds, "
     "without_declaration)"),
    ("missing.toml", '[policy]\ndescription = "no name"\n[rules.attribution-duties]\n',
     "line 1: policy: missing required key 'name'"),
    ("norules.toml", '[policy]\nname = "x"\n', "missing required key 'rules'"),
    ("range.toml", '[policy]\nname = "x"\n[thresholds]\n\ncopy_similarity = 1.5\n[rules.attribution-duties]\n',
     "line 5: thresholds.copy_similarity: must be between 0 and 1, got 1.5"),
    ("order.toml", '[policy]\nname = "x"\n[thresholds]\nnear_copy_similarity = 0.999\n[rules.attribution-duties]\n',
     "near_copy_similarity: must not exceed copy_similarity"),
    ("regex.toml", '[policy]\nname = "x"\ncomponent_patterns = ["vision", "(unclosed"]\n[rules.attribution-duties]\n',
     "line 3: policy.component_patterns[1]: invalid regular expression"),
    ("country.toml", '[policy]\nname = "x"\nhome_country = "Korea"\n[rules.attribution-duties]\n',
     "line 3: policy.home_country"),
]


def test_unknown_policy_name_lists_the_presets():
    with pytest.raises(PolicyError, match="no such policy file or preset.*sovereign-foundation-model"):
        load_policy("sovereign")
    with pytest.raises(PolicyError, match="no such file"):
        load_policy("does-not-exist.toml")


MALFORMED_DECLARATIONS = [
    ("second.toml",
     '[[components]]\ncomponent = "a"\nreference = "r"\nreinitialised = true\ntrained = true\n\n'
     '[[components]]\ncomponent = "b"\nreference = "r"\nreinitialised = "yes"\ntrained = true\n',
     "line 10: components[1].reinitialised: 'yes' is not of type 'boolean'"),
    ("required.toml", '[bidder]\nname = "x"\n\n[[components]]\ncomponent = "a"\nreference = "r"\ntrained = true\n',
     "line 4: components[0]: missing required key 'reinitialised'"),
    ("section.toml", '[bidder]\nname = "x"\n\n[weights]\nreference = "r"\n', "line 4: weights: unknown key 'weights'"),
    ("nested.yaml", "bidder:\n  name: x\ncomponents:\n  - component: v\n    reference: r\n    reinitialised: true\n"
                    "    trained: true\n    colour: red\n", "line 8: components[0].colour: unknown key 'colour'"),
    ("syntax.yaml", "bidder:\n  name: [x\n", "invalid YAML"),
    ("list.yaml", "- just\n- a list\n", "line 1: the document must be a mapping"),
    ("tokens.yaml", "training:\n  tokens: -5\n", "line 2: training.tokens"),
("deep.yaml", "components: " + "[" * 300 + "]" * 300 + "\n", "line 1: components[0]: [[[...]]] is not of type 'object'"),
("deeper.yaml", "components: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
("intkey.yaml", "bidder:\n  name: x\n1: y\n", "line 3: keys must be strings, got 1"),
("alias.yaml", "bidder:\n  name: x\nloop: &x [*x]\n", "line 3: loop[0]: an alias refers to itself"),
("bomb.yaml", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 7)), "once aliases are expanded"),
]


@pytest.mark.parametrize(
    ("load", "name", "text", "expected"),
    [(load_policy, *case) for case in MALFORMED_POLICIES] + [(load_declaration, *case) for case in MALFORMED_DECLARATIONS],
)
def test_malformed_file_names_file_line_and_key(tmp_path, load, name, text, expected):
    path = write(tmp_path / name, text)
    with pytest.raises(PolicyError) as caught:
        load(path)
    assert caught.value.path == str(path)
    assert expected in caught.value.problem
    assert "\n" not in caught.value.one_line()


def test_yaml_syntax_error_carries_line_and_column(tmp_path):
    path = write(tmp_path / "d.yaml", "bidder:\n  name: x\ncomponents:\n  - component: [v\n    reference: r\n")
    with pytest.raises(PolicyError, match=r"line \d+, column \d+: invalid YAML"):
        load_declaration(path)


def test_declaration_matches_references_by_name_family_or_repo_id(tmp_path):
    for declared in ("qwen2.5-vl-7b", "Qwen2.5-VL", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl-7b-instruct"):
        text = (f'[[components]]\ncomponent = "model.visual"\nreference = "{declared}"\n'
                'reinitialised = false\ntrained = false\n')
        decl = load_declaration(write(tmp_path / "d.toml", text))
        assert decl.match(copied_encoder(QWEN_VL)) is not None, declared
        assert decl.match(copied_encoder(LLAMA)) is None
    # a component path must match on dot boundaries: model.visual does not cover model.visual2
    decl = load_declaration(write(tmp_path / "d.toml", text))
    moved = copied_encoder(QWEN_VL)
    moved.subject = "model.visual2"
    assert decl.match(moved) is None


def test_saved_report_findings_round_trip(tmp_path):
    findings = [
        copied_encoder(obligations=[LicenseObligation("Apache-2.0", "§4(a)", None, "LICENSE missing")]),
        tokenizer(LLAMA, "extended"),
        code("modeling.py::Attention.forward", QWEN_VL, "copied"),
    ]
    report = {"subject": {"path": "m", "parameter_count": 10, "tensor_count": 3}, "findings": [f.to_dict() for f in findings]}
    path = write(tmp_path / "report.json", json.dumps(report))
    loaded, subject = load_report_findings(path)
    assert loaded == findings and subject["parameter_count"] == 10
    assert finding_from_dict(findings[0].to_dict()).id == findings[0].id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"findings": [\n{"kind": "weights"}\n', "line 3"),
        ('{"subject": {}}', "no 'findings' list"),
        ('{"findings": [{"kind": "weights", "verdict": "copied", "subject": "x"}]}', "findings[0]: missing field 'reference'"),
        ('{"findings": [{"kind": "vibes", "verdict": "copied", "subject": "x", "reference": {"name": "r"}}]}',
         "findings[0].kind"),
        ('{"findings": [{"kind": "weights", "verdict": "copied", "subject": "x", "reference": {"name": "r"}, '
         '"parameter_share": "12%"}]}', "findings[0].parameter_share: expected a number or null"),
        ('{"findings": [{"kind": "code", "verdict": "copied", "subject": "x", "reference": {"name": "r", "country": 82}}]}',
         "findings[0].reference.country: expected a string"),
        ('{"findings": [{"kind": "code", "verdict": "copied", "subject": "x", "reference": {"name": "r"}, '
         '"license_obligations": ["MIT"]}]}', "findings[0].license_obligations: expected a list of objects"),
        ('{"findings": [{"kind": "code", "verdict": "copied", "subject": "x", "reference": {"name": "r"}, '
         '"license_obligations": [{"license": "MIT", "obligation": "keep notice", "met": "yes"}]}]}',
         "findings[0].license_obligations[0].met: expected true, false or null"),
    ],
)
def test_malformed_report_is_a_policy_error(tmp_path, text, expected):
    with pytest.raises(PolicyError) as caught:
        load_report_findings(write(tmp_path / "report.json", text))
    assert expected in caught.value.problem


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("modeling_example.py", "modeling_*.py", True),
        ("src/model/modeling_example.py", "modeling_*.py", True),
        ("src/model/modeling_example.py", "model/*.py", True),
        ("src/model/modeling_example.py", "serve/*.py", False),
        ("src/model/engine.py", "modeling_*.py", False),
    ],
)
def test_declared_code_paths_match_the_file_or_its_trailing_parts(path, pattern, expected):
    assert path_matches(path, pattern) is expected
