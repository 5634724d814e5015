"""Each rule on synthetic findings: the statuses the programme's criteria demand, and the reasons given."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from modelprov.findings import LicenseObligation, ScanReport, Subject
from modelprov.policy import Status, apply_policy, evaluate, load_declaration, load_policy
from modelprov.policy.policy import preset_path
from tests.policy.synthetic import (
    DECLARED_FROZEN_ENCODER,
    DECLARED_NOTHING,
    DECLARED_REINITIALISED_ENCODER,
    EXAONE,
    LLAMA,
    QWEN_BASE,
    QWEN_VL,
    TRANSFORMERS_QWEN2,
    code,
    copied_encoder,
    derived_backbone,
    independent,
    tokenizer,
    weights,
    write,
)

SOVEREIGN = "sovereign-foundation-model"


def judge(findings, policy=SOVEREIGN, declaration: str | None = None, tmp_path: Path | None = None, **kw):
    decl = None
    if declaration is not None:
        assert tmp_path is not None
        decl = load_declaration(write(tmp_path / "declaration.toml", declaration))
    kw.setdefault("home_country", "KR")
    return evaluate(findings, load_policy(policy), decl, **kw)


def test_foreign_derived_backbone_fails_with_reason_and_finding():
    finding = derived_backbone(QWEN_BASE)
    result = judge([finding])
    rule = result.rule("foreign-base-model")
    assert rule.status is Status.FAIL
    assert rule.findings == [finding.id]
    assert "foreign" in rule.reasons[0] and "CN" in rule.reasons[0] and "KR" in rule.reasons[0]
    assert result.rule("backbone-pretrained-by-bidder").status is Status.FAIL
    assert result.overall is Status.FAIL and result.exit_code() == 1


def test_domestic_reference_is_not_foreign_but_still_not_the_bidders_own_backbone(tmp_path):
    result = judge([derived_backbone(EXAONE)])
    assert result.rule("foreign-base-model").status is Status.PASS
    assert "domestic" in result.rule("foreign-base-model").reasons[0]
    assert result.rule("backbone-pretrained-by-bidder").status is Status.FAIL
    # EXAONE's licence is non-commercial, whoever reuses it
    assert result.rule("non-commercial-license").status is Status.FAIL

    own = DECLARED_NOTHING.replace('organisation = "Example AI"', 'organisation = "LG AI Research"')
    result = judge([derived_backbone(EXAONE)], declaration=own, tmp_path=tmp_path)
    assert result.rule("backbone-pretrained-by-bidder").status is Status.PASS
    assert "own model" in result.rule("backbone-pretrained-by-bidder").reasons[0]


@pytest.mark.parametrize(
    ("home", "expected"),
    [("KR", Status.FAIL), ("US", Status.FAIL), ("CN", Status.PASS), ("cn", Status.PASS), (None, Status.REVIEW)],
)
def test_home_country_is_configurable_never_assumed(home, expected):
    result = judge([derived_backbone(QWEN_BASE)], home_country=home)
    assert result.rule("foreign-base-model").status is expected
    if home is None:
        assert "home country is not configured" in result.rule("foreign-base-model").reasons[0]


def test_home_country_and_organisations_come_from_the_policy_file(tmp_path):
    preset = preset_path(SOVEREIGN).read_text()
    kr = write(tmp_path / "kr.toml", preset.replace('home_country = ""', 'home_country = "KR"'))
    assert evaluate([derived_backbone(QWEN_BASE)], load_policy(kr)).rule("foreign-base-model").status is Status.FAIL
    allied = write(tmp_path / "orgs.toml", preset.replace("home_organisations = []", 'home_organisations = ["Alibaba Cloud"]'))
    assert evaluate([derived_backbone(QWEN_BASE)], load_policy(allied)).rule("foreign-base-model").status is Status.PASS


def test_reference_without_country_needs_review():
    unknown = replace(QWEN_BASE, country=None)
    rule = judge([derived_backbone(unknown)]).rule("foreign-base-model")
    assert rule.status is Status.REVIEW and "country is unknown" in rule.reasons[0]


@pytest.mark.parametrize("policy", [SOVEREIGN, "disclosure"])
def test_undeclared_copied_encoder_fails_with_and_without_a_declaration(policy, tmp_path):
    encoder = copied_encoder()
    for declaration in (None, DECLARED_NOTHING):
        result = judge([encoder], policy, declaration, tmp_path)
        rule = result.rule("undeclared-reuse")
        assert rule.status is Status.FAIL, declaration
        assert rule.findings == [encoder.id]
        assert result.exit_code() == 1


def test_declared_frozen_apache_encoder_fails_sovereign_but_passes_license_and_disclosure(tmp_path):
    encoder = copied_encoder(obligations=[LicenseObligation("Apache-2.0", "§4(a) give a copy of the License", None)])
    sovereign = judge([encoder], SOVEREIGN, DECLARED_FROZEN_ENCODER, tmp_path)
    assert sovereign.rule("reused-weights-retrained").status is Status.FAIL
    assert "copied or frozen" in sovereign.rule("reused-weights-retrained").reasons[0]
    assert sovereign.rule("undeclared-reuse").status is Status.PASS
    assert sovereign.overall is Status.FAIL

    licence = judge([encoder], "license-compliance", DECLARED_FROZEN_ENCODER, tmp_path)
    assert licence.rule("non-commercial-license").status is Status.PASS
    # the obligation cannot be read from the weights, but the reuse is declared: a warning, not a review
    assert licence.rule("license-obligations").status is Status.WARN
    assert licence.exit_code() == 0

    disclosure = judge([encoder], "disclosure", DECLARED_FROZEN_ENCODER, tmp_path)
    assert disclosure.overall is Status.PASS


def test_declared_reinitialised_component_at_copy_level_fails(tmp_path):
    result = judge([copied_encoder()], "disclosure", DECLARED_REINITIALISED_ENCODER, tmp_path)
    rule = result.rule("declared-training-verified")
    assert rule.status is Status.FAIL
    assert "declared re-initialised" in rule.reasons[0] and "copy level" in rule.reasons[0]
    assert "components[0] (line" in rule.reasons[0]


def test_declared_reinitialised_component_that_is_independent_passes(tmp_path):
    fresh = independent("model.visual", QWEN_VL, share=0.12)
    result = judge([fresh], SOVEREIGN, DECLARED_REINITIALISED_ENCODER, tmp_path)
    assert result.rule("declared-training-verified").status is Status.PASS
    assert result.rule("reused-weights-retrained").status is Status.PASS
    assert result.overall is Status.PASS


def test_declared_reinitialised_component_that_is_derived_fails(tmp_path):
    tuned = weights("model.visual", QWEN_VL, "derived", similarity=0.6, log10_p=-80, share=0.12)
    result = judge([tuned], "disclosure", DECLARED_REINITIALISED_ENCODER, tmp_path)
    assert result.rule("declared-training-verified").status is Status.FAIL


def test_fine_tuned_encoder_is_review_by_default_and_parameter_can_make_it_fail(tmp_path):
    tuned = weights("model.visual", QWEN_VL, "derived", similarity=0.6, log10_p=-80, share=0.12)
    assert judge([tuned]).rule("reused-weights-retrained").status is Status.REVIEW
    preset = preset_path(SOVEREIGN).read_text()
    strict = write(tmp_path / "strict.toml", preset.replace('derived_status = "review"', 'derived_status = "fail"'))
    assert evaluate([tuned], load_policy(strict)).rule("reused-weights-retrained").status is Status.FAIL


@pytest.mark.parametrize(
    ("license_id", "expected"),
    [
        ("LicenseRef-exaone", Status.FAIL),
        ("CC-BY-NC-4.0", Status.FAIL),
        ("LicenseRef-qwen-research", Status.FAIL),
        ("MIT OR CC-BY-NC-4.0", Status.PASS),
        ("Apache-2.0", Status.PASS),
        ("LicenseRef-unheard-of", Status.REVIEW),
        (None, Status.REVIEW),
    ],
)
def test_non_commercial_reference_licence_fails(license_id, expected):
    ref = replace(QWEN_VL, license=license_id)
    result = judge([copied_encoder(ref)], "license-compliance")
    assert result.rule("non-commercial-license").status is expected


def test_non_commercial_code_reuse_also_fails():
    ref = replace(TRANSFORMERS_QWEN2, license="CC-BY-NC-SA-4.0")
    result = judge([code("modeling_example.py::Attention.forward", ref, "copied")], "license-compliance")
    assert result.rule("non-commercial-license").status is Status.FAIL


def test_llama_attribution_duties_warn_and_fail_on_warn_exits_1():
    result = judge([tokenizer(LLAMA, "extended")], "license-compliance")
    rule = result.rule("attribution-duties")
    assert rule.status is Status.WARN
    assert any("Built with Llama" in r for r in rule.reasons)
    assert any("begin with \"Llama\"" in r for r in rule.reasons)
    assert result.overall is Status.WARN
    assert (result.exit_code("fail"), result.exit_code("review"), result.exit_code("warn")) == (0, 0, 1)


def test_unmet_obligation_fails_and_undecidable_one_needs_review():
    unmet = LicenseObligation("Apache-2.0", "§4(a) give a copy of the License", False, "no LICENSE file")
    unknown = LicenseObligation("Apache-2.0", "§4(b) state changes", None)
    result = judge([copied_encoder(obligations=[unmet])], "license-compliance")
    assert result.rule("license-obligations").status is Status.FAIL
    assert "no LICENSE file" in result.rule("license-obligations").reasons[0]
    result = judge([copied_encoder(obligations=[unknown])], "license-compliance")
    assert result.rule("license-obligations").status is Status.REVIEW
    assert (result.exit_code("fail"), result.exit_code("review")) == (0, 1)


def test_tokenizer_reuse_declared_passes_and_undeclared_fails(tmp_path):
    finding = tokenizer(QWEN_BASE, "extended")
    declared = DECLARED_NOTHING.replace('origin = "own"', 'origin = "qwen2.5"\nlicense = "Apache-2.0"')
    result = judge([finding], SOVEREIGN, declared, tmp_path)
    assert result.rule("undeclared-reuse").status is Status.PASS
    assert "declared in tokenizer.origin" in result.rule("undeclared-reuse").reasons[0]
    assert result.overall is Status.PASS
    # "own" tokenizer, yet the scan finds Qwen's
    own = judge([finding], SOVEREIGN, DECLARED_NOTHING, tmp_path)
    assert own.rule("undeclared-reuse").status is Status.FAIL


def test_declared_licence_that_differs_from_the_reference_needs_review(tmp_path):
    wrong = DECLARED_FROZEN_ENCODER.replace('license = "Apache-2.0"', 'license = "MIT"')
    rule = judge([copied_encoder()], "disclosure", wrong, tmp_path).rule("undeclared-reuse")
    assert rule.status is Status.REVIEW and "differs" in rule.reasons[0]


def test_declared_code_source_matches_by_path_pattern(tmp_path):
    declaration = DECLARED_NOTHING + '\n[[code]]\nsource = "transformers/qwen2"\npaths = ["modeling_*.py"]\n'
    inside = code("modeling_example.py::Attention.forward", TRANSFORMERS_QWEN2)
    outside = code("serve/engine.py::Engine.step", TRANSFORMERS_QWEN2)
    rule = judge([inside, outside], "disclosure", declaration, tmp_path).rule("undeclared-reuse")
    assert rule.status is Status.FAIL
    assert rule.findings == [outside.id]


def test_independent_model_with_an_honest_declaration_passes_everything(tmp_path):
    findings = [
        independent("model.language_model", QWEN_BASE, share=0.88),
        independent("model.visual", QWEN_VL, share=0.12),
        tokenizer(QWEN_BASE, "unrelated"),
    ]
    result = judge(findings, SOVEREIGN, DECLARED_NOTHING, tmp_path)
    assert [r.status for r in result.rules] == [Status.PASS] * len(result.rules)
    assert result.exit_code("warn") == 0


def test_training_evidence_missing_needs_review(tmp_path):
    bare = DECLARED_NOTHING.split("[training]")[0]
    assert judge([], SOVEREIGN, bare, tmp_path).rule("training-evidence").status is Status.REVIEW
    assert judge([]).rule("training-evidence").status is Status.REVIEW  # no declaration at all
    assert judge([], SOVEREIGN, DECLARED_NOTHING, tmp_path).rule("training-evidence").status is Status.PASS


def test_declared_base_model_fails_the_own_backbone_rule(tmp_path):
    declaration = DECLARED_NOTHING + '\n[[base_models]]\nreference = "Qwen/Qwen2.5-7B"\n'
    rule = judge([], SOVEREIGN, declaration, tmp_path).rule("backbone-pretrained-by-bidder")
    assert rule.status is Status.FAIL and "base_models[0] (line" in rule.reasons[0]


# ------------------------------------------------------------------ thresholds and evidence classification


def test_tiny_effect_with_tiny_p_value_is_not_reuse():
    # a huge sample makes 0.02 "significant"; measured independent nulls reach 0.03, so it is not evidence
    finding = weights("model.language_model", QWEN_BASE, "independent", similarity=0.02, log10_p=-9, share=0.9)
    result = judge([finding])
    assert result.overall is Status.REVIEW  # only training-evidence (no declaration) remains
    assert result.rule("foreign-base-model").status is Status.PASS


def test_grey_zone_evidence_needs_review_not_failure():
    finding = weights("model.language_model", QWEN_BASE, "independent", similarity=0.07, log10_p=-4, share=0.9)
    result = judge([finding])
    assert result.rule("foreign-base-model").status is Status.REVIEW
    assert result.rule("undeclared-reuse").status is Status.REVIEW
    assert "ambiguous" in result.rule("foreign-base-model").reasons[0]


def test_policy_thresholds_escalate_but_never_downgrade_a_verdict(tmp_path):
    quantised = weights("model.visual", QWEN_VL, "derived", similarity=0.993, log10_p=-300, share=0.12)
    strict = judge([quantised]).rule("reused-weights-retrained")
    assert strict.status is Status.FAIL  # ≥ 0.98: copy level under the policy's threshold ...
    assert "not a frozen copy" in strict.reasons[0] and "were copied or frozen" not in strict.reasons[0]  # ... said so
    preset = preset_path(SOVEREIGN).read_text()
    lenient = write(tmp_path / "lenient.toml", preset.replace("copy_similarity = 0.98\n", "copy_similarity = 0.999\n"))
    assert evaluate([quantised], load_policy(lenient)).rule("reused-weights-retrained").status is Status.REVIEW
    # a detector's "copied" (digests equal) stays copied whatever the similarity threshold
    exact = weights("model.visual", QWEN_VL, "copied", similarity=0.9, log10_p=-300, share=0.12)
    assert evaluate([exact], load_policy(lenient)).rule("reused-weights-retrained").status is Status.FAIL


def test_per_rule_threshold_override_applies_to_that_rule_only(tmp_path):
    preset = preset_path(SOVEREIGN).read_text()
    text = preset.replace('parameters = { derived_status = "review" }',
                          'parameters = { derived_status = "review" }\nthresholds = { copy_similarity = 0.999 }')
    policy = load_policy(write(tmp_path / "p.toml", text))
    near = weights("model.visual", QWEN_VL, "derived", similarity=0.995, log10_p=-300, share=0.12)
    decl = load_declaration(write(tmp_path / "d.toml", DECLARED_REINITIALISED_ENCODER))
    result = evaluate([near], policy, decl, home_country="KR")
    assert result.rule("reused-weights-retrained").status is Status.REVIEW  # near copy under 0.999
    assert "at copy level" in result.rule("declared-training-verified").reasons[0]  # 0.98 still applies here


def test_backbone_is_the_declared_one_or_the_bulk_of_the_parameters(tmp_path):
    vision_only = weights("vision_model", QWEN_VL, "derived", similarity=0.9, log10_p=-200, share=0.97)
    assert judge([vision_only]).rule("foreign-base-model").status is Status.FAIL  # 97%: it *is* the backbone
    small = weights("model.visual", QWEN_VL, "derived", similarity=0.9, log10_p=-200, share=0.12)
    assert judge([small]).rule("foreign-base-model").status is Status.PASS
    declared = DECLARED_NOTHING.replace("[tokenizer]", '[model]\nbackbone = "model.visual"\n\n[tokenizer]')
    assert judge([small], SOVEREIGN, declared, tmp_path).rule("foreign-base-model").status is Status.FAIL


def test_severity_caps_what_a_rule_can_say(tmp_path):
    preset = preset_path(SOVEREIGN).read_text()
    text = preset.replace('[rules.reused-weights-retrained]\ndescription = "Reused open-source weights must be '
                          're-initialised and trained by the bidder, not copied or frozen."\nseverity = "fail"',
                          '[rules.reused-weights-retrained]\nseverity = "warn"')
    assert text != preset
    result = evaluate([copied_encoder()], load_policy(write(tmp_path / "p.toml", text)))
    assert result.rule("reused-weights-retrained").status is Status.WARN


def test_exit_code_rejects_unknown_fail_on():
    with pytest.raises(ValueError, match="fail_on"):
        judge([]).exit_code("error")


def test_result_to_dict_names_rules_findings_and_overall():
    encoder = copied_encoder()
    d = judge([encoder]).to_dict()
    assert d["overall"] == "FAIL" and d["home_country"] == "KR" and d["name"] == SOVEREIGN
    rule = next(r for r in d["rules"] if r["id"] == "reused-weights-retrained")
    assert rule["status"] == "FAIL" and rule["findings"] == [encoder.id] and rule["severity"] == "FAIL"
    assert rule["issues"][0]["finding"] == encoder.id


def test_merged_findings_are_judged_by_all_their_components(tmp_path):
    merged = weights("model.visual + model.visual_merger", QWEN_VL, "copied", similarity=0.995, log10_p=-900, share=0.13)
    merged.statistics["components"] = ["model.visual", "model.visual_merger"]
    result = judge([merged], "disclosure", DECLARED_FROZEN_ENCODER, tmp_path)
    assert result.rule("undeclared-reuse").status is Status.FAIL  # model.visual_merger is not within model.visual
    wider = DECLARED_FROZEN_ENCODER.replace('component = "model.visual"', 'component = "model"')
    assert judge([merged], "disclosure", wider, tmp_path).rule("undeclared-reuse").status is Status.PASS
    assert judge([merged]).rule("reused-weights-retrained").status is Status.FAIL  # both parts are encoders


def test_whole_model_finding_is_the_backbone(tmp_path):
    whole = weights("(whole model)", QWEN_BASE, "derived", similarity=0.97, log10_p=-500, share=None)
    declared = DECLARED_NOTHING.replace("[tokenizer]", '[model]\nbackbone = "model.language_model"\n\n[tokenizer]')
    result = judge([whole], SOVEREIGN, declared, tmp_path)
    assert result.rule("foreign-base-model").status is Status.FAIL
    assert result.rule("reused-weights-retrained").status is Status.PASS


def test_the_2026_case_fails_even_when_the_copy_is_not_bit_identical():
    # reported 98.9% Pearson (centred) to Qwen2.5-VL's vision tower, ~12% of the parameters, not exact
    encoder = weights("model.visual", QWEN_VL, "derived", similarity=0.989, log10_p=-700, share=0.12)
    rule = judge([encoder]).rule("reused-weights-retrained")
    assert rule.status is Status.FAIL and "copy level" in rule.reasons[0]


def test_result_dict_validates_against_the_report_schema():
    schema = json.loads((Path(__file__).parents[2] / "docs/schema/report.schema.json").read_text())
    policy_schema = {"$defs": schema["$defs"], "$ref": "#/$defs/policy"}
    d = judge([copied_encoder(), tokenizer(LLAMA, "extended")]).to_dict()
    jsonschema.validate(d, policy_schema)
    assert all(r["outcome"] == r["status"] for r in d["rules"])


def test_apply_policy_stores_the_verdicts_in_the_scan_report(tmp_path):
    encoder = weights("vision_tower", QWEN_VL, "copied", similarity=1.0, log10_p=-900, share=None)
    encoder.parameter_count = 22_000_000
    subject = Subject("m", "safetensors", None, [], 400, 30_000_000, {"vision_tower": 22_000_000, "model": 8_000_000})
    report = ScanReport(subject, {}, {}, [encoder])
    decl = write(tmp_path / "d.toml", DECLARED_NOTHING)
    result = apply_policy(report, SOVEREIGN, decl, home_country="KR")
    assert report.policy == result.to_dict() and report.policy["declaration"] == str(decl)
    # 22M of 30M parameters: the share computed from the subject makes it the backbone, whatever its name
    assert result.rule("foreign-base-model").status is Status.FAIL


@pytest.mark.parametrize("log10_p", [-72472654.0, -1e308, float("-inf"), 0.0, 3.0, 1e308, float("inf")])
def test_extreme_p_values_are_judged_and_printed(log10_p):
    finding = weights("model.visual", QWEN_VL, "derived", similarity=0.5, log10_p=None, share=0.12)
    finding.statistics["log10_p"] = log10_p
    rule = judge([finding]).rule("reused-weights-retrained")
    assert rule.status is Status.REVIEW  # derived verdict, similarity below copy level
    assert "centred similarity 0.500" in rule.reasons[0]


def test_tokenizer_declared_by_family_member_covers_the_family_reference(tmp_path):
    # the tokenizer index holds one "qwen3" reference for ranks shared by Qwen1.5 to Qwen3
    shared = replace(QWEN_BASE, name="qwen3", family="qwen", repo_id="Qwen/Qwen3-8B")
    declared = DECLARED_NOTHING.replace('origin = "own"', 'origin = "Qwen/Qwen2.5-7B"')
    assert judge([tokenizer(shared)], "disclosure", declared, tmp_path).overall is Status.PASS
    # weights are not shared across a family: a declared Qwen2.5 encoder does not cover a Qwen3 one
    other = DECLARED_FROZEN_ENCODER.replace('reference = "Qwen/Qwen2.5-VL-7B-Instruct"', 'reference = "qwen2.5-vl-72b"')
    assert judge([copied_encoder()], "disclosure", other, tmp_path).rule("undeclared-reuse").status is Status.FAIL
