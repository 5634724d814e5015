"""`provenance policy list|show|validate|check`: output, one-line errors and exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelprov.cli.main import app
from modelprov.findings import LicenseObligation
from modelprov.policy import load_policy
from tests.policy.synthetic import (
    DECLARED_FROZEN_ENCODER,
    DECLARED_NOTHING,
    LLAMA,
    QWEN_BASE,
    QWEN_VL,
    copied_encoder,
    independent,
    tokenizer,
    write,
)

EXAMPLES = Path(__file__).parents[2] / "docs" / "examples"


def report(tmp_path: Path, findings, tensor_count: int = 400) -> str:
    data = {"subject": {"path": "model", "parameter_count": 8_000_000_000, "tensor_count": tensor_count},
            "findings": [f.to_dict() for f in findings]}
    return str(write(tmp_path / "report.json", json.dumps(data)))


def test_list_names_the_presets(cli):
    result = cli.invoke(app, ["policy", "list"])
    assert result.exit_code == 0
    for name in ("sovereign-foundation-model", "license-compliance", "disclosure"):
        assert name in result.stdout


def test_show_json_is_the_loaded_policy(cli):
    result = cli.invoke(app, ["policy", "show", "sovereign-foundation-model", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == load_policy("sovereign-foundation-model").to_dict()
    table = cli.invoke(app, ["policy", "show", str(EXAMPLES / "policy.toml")])
    assert "reused-weights-retrained" in table.stdout and "home country: KR" in table.stdout


def test_validate_accepts_examples_and_reports_bad_files_on_one_line(cli, tmp_path):
    for name in ("policy.toml", "declaration.toml", "declaration.yaml"):
        result = cli.invoke(app, ["policy", "validate", str(EXAMPLES / name)])
        assert result.exit_code == 0, result.stderr
        assert "valid" in result.stdout
    bad = write(tmp_path / "bad.toml", '[policy]\nname = "x"\n\n[rules.no-such-rule]\n')
    result = cli.invoke(app, ["policy", "validate", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"modelprov: error: {bad}: line 4: rules.no-such-rule: unknown rule id")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_check_fails_an_undeclared_copied_encoder_and_explains_why(cli, tmp_path):
    path = report(tmp_path, [copied_encoder()])
    result = cli.invoke(app, ["policy", "check", path, "--policy", "sovereign-foundation-model", "--home-country", "KR"],
                        env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert "overall: FAIL" in result.stdout and "reused-weights-retrained" in result.stdout
    # the evidence, in brackets, is printed rather than swallowed as rich markup
    assert "copied or frozen, not re-initialised and trained [centred similarity 0.995" in result.stdout


def test_check_declared_apache_encoder_passes_license_compliance(cli, tmp_path):
    encoder = copied_encoder(obligations=[LicenseObligation("Apache-2.0", "§4(a) give a copy of the License", None)])
    path = report(tmp_path, [encoder])
    decl = str(write(tmp_path / "d.toml", DECLARED_FROZEN_ENCODER))
    args = ["policy", "check", path, "--declaration", decl, "--json"]
    licence = cli.invoke(app, [*args, "--policy", "license-compliance"])
    assert licence.exit_code == 0
    assert json.loads(licence.stdout)["overall"] == "WARN"
    sovereign = cli.invoke(app, [*args, "--policy", "sovereign-foundation-model"])
    assert sovereign.exit_code == 1
    assert json.loads(sovereign.stdout)["overall"] == "FAIL"


@pytest.mark.parametrize(("fail_on", "expected"), [("fail", 0), ("review", 0), ("warn", 1)])
def test_fail_on_moves_the_threshold_of_exit_1(cli, tmp_path, fail_on, expected):
    path = report(tmp_path, [tokenizer(LLAMA, "extended")])
    result = cli.invoke(app, ["policy", "check", path, "--policy", "license-compliance", "--fail-on", fail_on])
    assert result.exit_code == expected


def test_independent_model_passes(cli, tmp_path):
    path = report(tmp_path, [independent("model.language_model", QWEN_BASE, 0.9), independent("model.visual", QWEN_VL, 0.1)])
    decl = str(write(tmp_path / "d.toml", DECLARED_NOTHING))
    result = cli.invoke(app, ["policy", "check", path, "--policy", "sovereign-foundation-model", "--declaration", decl,
                              "--home-country", "KR", "--fail-on", "warn"])
    assert result.exit_code == 0, result.stdout
    assert "overall: PASS" in result.stdout


def test_check_errors_exit_2_and_empty_subject_exits_3(cli, tmp_path):
    path = report(tmp_path, [copied_encoder()])
    bad_decl = write(tmp_path / "d.yaml", "components:\n  - component: v\n")
    result = cli.invoke(app, ["policy", "check", path, "--policy", "disclosure", "--declaration", str(bad_decl)])
    assert result.exit_code == 2 and "line 2: components[0]: missing required key" in result.stderr
    empty = report(tmp_path, [], tensor_count=0)
    result = cli.invoke(app, ["policy", "check", empty, "--policy", "disclosure"])
    assert result.exit_code == 3 and "nothing was scanned" in result.stderr


def test_home_country_must_be_an_alpha_2_code(cli, tmp_path):
    path = report(tmp_path, [copied_encoder()])
    result = cli.invoke(app, ["policy", "check", path, "--policy", "sovereign-foundation-model", "--home-country", "Korea"])
    assert result.exit_code == 2
    assert "home country must be an ISO 3166-1 alpha-2 code such as KR, got 'Korea'" in result.stderr
