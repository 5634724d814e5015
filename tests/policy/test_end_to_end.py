"""End to end on real weights: `provenance.scan.scan` finds the copied all-MiniLM-L6-v2 encoder inside a
composite model, and the policies judge it as the programme rules demand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from modelprov.cli.main import app
from modelprov.findings import Reference
from modelprov.policy import Status, apply_policy
from modelprov.index import ReferenceIndex, add_checkpoint
from modelprov.scan import scan
from tests.policy.synthetic import DECLARED_NOTHING, write

DECLARATION_WITH_ENCODER = DECLARED_NOTHING + """
[[components]]
component = "vision_tower"
reference = "sentence-transformers/all-MiniLM-L6-v2"
license = "Apache-2.0"
reinitialised = false
trained = false
"""


def _own_backbone(seed: int) -> dict[str, np.ndarray]:
    """A Llama-shaped backbone initialised independently of every reference (std 0.02, norms at 1)."""
    rng = np.random.default_rng(seed)
    hidden, inter, vocab = 384, 1024, 32000
    out = {"model.embed_tokens.weight": rng.normal(0, 0.02, (vocab, hidden)),
           "lm_head.weight": rng.normal(0, 0.02, (vocab, hidden)), "model.norm.weight": np.ones(hidden)}
    for i in range(8):
        p = f"model.layers.{i}."
        for name, shape in [("self_attn.q_proj", (hidden, hidden)), ("self_attn.k_proj", (hidden, hidden)),
                            ("self_attn.v_proj", (hidden, hidden)), ("self_attn.o_proj", (hidden, hidden)),
                            ("mlp.gate_proj", (inter, hidden)), ("mlp.up_proj", (inter, hidden)),
                            ("mlp.down_proj", (hidden, inter))]:
            out[p + name + ".weight"] = rng.normal(0, 0.02, shape)
        out[p + "input_layernorm.weight"] = np.ones(hidden)
        out[p + "post_attention_layernorm.weight"] = np.ones(hidden)
    return {k: v.astype(np.float16) for k, v in out.items()}


@pytest.fixture(scope="module")
def reports(tmp_path_factory, minilm_dir):
    """Scan reports of a composite (own backbone + copied MiniLM as `vision_tower`) and of the backbone alone."""
    root = tmp_path_factory.mktemp("e2e")
    index = ReferenceIndex.create(root / "index")
    minilm = Reference("all-MiniLM-L6-v2", family="MiniLM", org="sentence-transformers", country="US",
                       license="Apache-2.0", repo_id="sentence-transformers/all-MiniLM-L6-v2")
    add_checkpoint(index, minilm_dir, minilm)
    index.save()
    backbone = _own_backbone(seed=2026)
    encoder = {f"vision_tower.{k}": v for k, v in load_file(str(minilm_dir / "model.safetensors")).items()}
    out = {}
    for name, tensors in (("composite", {**backbone, **encoder}), ("independent", backbone)):
        folder = root / name
        folder.mkdir()
        save_file(tensors, str(folder / "model.safetensors"))
        out[name] = scan(folder, index, hash_files=False)
    return out


def test_the_scan_finds_the_copied_encoder_and_nothing_in_the_own_backbone(reports):
    (finding,) = reports["composite"].findings
    assert finding.subject == "vision_tower" and finding.reference.name == "all-MiniLM-L6-v2"
    assert finding.verdict == "copied" and finding.parameter_share < 0.5
    assert reports["independent"].findings == []


def test_undeclared_copied_encoder_fails_sovereign_and_disclosure(reports, tmp_path):
    decl = write(tmp_path / "d.toml", DECLARED_NOTHING)
    for policy in ("sovereign-foundation-model", "disclosure"):
        result = apply_policy(reports["composite"], policy, decl, home_country="KR")
        assert result.rule("undeclared-reuse").status is Status.FAIL
        assert result.exit_code() == 1
    sovereign = apply_policy(reports["composite"], "sovereign-foundation-model", decl, home_country="KR")
    assert sovereign.rule("reused-weights-retrained").status is Status.FAIL
    assert sovereign.rule("foreign-base-model").status is Status.PASS  # the encoder is not the backbone


def test_declared_apache_encoder_fails_sovereign_but_passes_license_compliance(reports, tmp_path):
    decl = write(tmp_path / "d.toml", DECLARATION_WITH_ENCODER)
    sovereign = apply_policy(reports["composite"], "sovereign-foundation-model", decl, home_country="KR")
    assert sovereign.rule("undeclared-reuse").status is Status.PASS
    assert sovereign.rule("reused-weights-retrained").status is Status.FAIL
    assert sovereign.overall is Status.FAIL
    licence = apply_policy(reports["composite"], "license-compliance", decl)
    assert licence.overall is Status.PASS and licence.exit_code("warn") == 0


def test_independent_model_passes(reports, tmp_path):
    decl = write(tmp_path / "d.toml", DECLARED_NOTHING)
    for policy in ("sovereign-foundation-model", "license-compliance", "disclosure"):
        result = apply_policy(reports["independent"], policy, decl, home_country="KR")
        assert result.overall is Status.PASS, (policy, result.to_dict())


def test_policy_check_on_the_saved_report(reports, tmp_path, cli):
    path = write(tmp_path / "report.json", json.dumps(reports["composite"].to_dict()))
    decl = str(write(tmp_path / "d.toml", DECLARATION_WITH_ENCODER))
    sovereign = cli.invoke(app, ["policy", "check", str(path), "--policy", "sovereign-foundation-model",
                                 "--declaration", decl, "--home-country", "KR", "--json"])
    assert sovereign.exit_code == 1
    verdicts = {r["id"]: r for r in json.loads(sovereign.stdout)["rules"]}
    assert verdicts["reused-weights-retrained"]["status"] == "FAIL"
    assert verdicts["reused-weights-retrained"]["findings"] == ["weights:vision_tower:all-MiniLM-L6-v2"]
    licence = cli.invoke(app, ["policy", "check", str(path), "--policy", "license-compliance", "--declaration", decl])
    assert licence.exit_code == 0, licence.stdout
