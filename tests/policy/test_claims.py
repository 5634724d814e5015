"""Model-card claims: the card's front matter and adapter_config.json as an implicit declaration, contradictions
with the weights as findings, and the front matter a bidder should publish."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from modelprov.errors import ModelCardError
from modelprov.findings import Finding
from modelprov.policy import (
    Status, apply_policy, card_declaration, check_claims, check_report, load_policy, parse_claims_text,
    read_model_card, suggested_front_matter,
)
from modelprov.reader import open_checkpoint
from modelprov.report import to_json
from modelprov.scan import scan
from tests.policy.synthetic import LLAMA, QWEN_BASE, weights

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"


def _card(meta: str, body: str = "# A model\n") -> str:
    return f"---\n{meta}---\n{body}"


def _copy(minilm_dir, root, name: str, card: str | None, adapter: dict | None = None):
    folder = root / name
    shutil.copytree(minilm_dir, folder)
    (folder / "README.md").unlink()
    if card is not None:
        (folder / "README.md").write_text(card)
    if adapter is not None:
        (folder / "adapter_config.json").write_text(json.dumps(adapter))
    return folder


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, minilm_dir):
    """A MiniLM copy shipped with a lying card, a truthful card, a from-scratch claim, and no card (weights only:
    MiniLM ships bert-base-uncased's tokenizer, which a card naming MiniLM does not name)."""
    root = tmp_path_factory.mktemp("claims")
    cards = {
        "lying": _card("base_model: Qwen/Qwen2.5-0.5B\nbase_model_relation: finetune\nlicense: apache-2.0\n"),
        "truthful": _card(f"base_model: {MINILM_REPO}\nbase_model_relation: finetune\nlicense: apache-2.0\n"),
        "scratch": _card("license: apache-2.0\n", "# Ours\nThis encoder was trained entirely from scratch on our corpus.\n"),
        "none": None,
    }
    return {name: scan(_copy(minilm_dir, root, name, card), tokenizer=False, code=False, hash_files=False)
            for name, card in cards.items()}


def _claims(report) -> list[Finding]:
    return [f for f in report.findings if f.kind == "claim"]


def test_a_card_naming_another_base_model_is_a_contradiction_and_fails_disclosure(scanned):
    report = scanned["lying"]
    (claim,) = _claims(report)
    assert claim.verdict == "contradicted" and claim.reference.name == "all-MiniLM-L6-v2"
    assert '"Qwen/Qwen2.5-0.5B"' in claim.summary and "all-MiniLM-L6-v2" in claim.summary  # both sides quoted
    assert claim.statistics["claim"] == {"key": "base_model", "value": "Qwen/Qwen2.5-0.5B",
                                         "where": claim.statistics["claim"]["where"]}
    result = apply_policy(report, load_policy("disclosure"))  # no declaration file: the card is the declaration
    rule = result.rule("undeclared-reuse")
    assert rule.status is Status.FAIL and claim.id in rule.findings
    assert any("not in the model card" in r for r in rule.reasons)


def test_a_truthful_card_passes_the_disclosure_rule(scanned):
    report = scanned["truthful"]
    assert _claims(report) == []
    result = apply_policy(report, load_policy("disclosure"))
    assert result.rule("undeclared-reuse").status is Status.PASS
    assert all("README.md: base_model" in r for r in result.rule("undeclared-reuse").reasons)


def test_without_a_card_nothing_is_declared(scanned):
    report = scanned["none"]
    assert report.details["claims"]["card"]["files"] == []
    rule = apply_policy(report, load_policy("disclosure")).rule("undeclared-reuse")
    assert rule.status is Status.FAIL and any("no declaration supplied" in r for r in rule.reasons)


def test_from_scratch_prose_contradicts_derived_weights(scanned):
    (claim,) = _claims(scanned["scratch"])
    assert claim.statistics["claim"]["key"] == "from_scratch"
    assert "trained entirely from scratch" in claim.summary and "copied from" in claim.summary


def test_an_explicit_declaration_overrides_the_card(scanned, tmp_path):
    decl = tmp_path / "d.toml"
    decl.write_text(f'[[base_models]]\nreference = "{MINILM_REPO}"\n')
    report = scanned["lying"]
    rule = apply_policy(report, load_policy("disclosure"), decl).rule("undeclared-reuse")
    assert rule.status is Status.PASS  # the file declares the reuse; the card's lie stays in the report


def test_policy_check_of_a_saved_report_reads_the_card(scanned, tmp_path):
    path = tmp_path / "report.json"
    path.write_text(to_json(scanned["lying"]))
    assert check_report(path, "disclosure").rule("undeclared-reuse").status is Status.FAIL
    path.write_text(to_json(scanned["truthful"]))
    assert check_report(path, "disclosure").rule("undeclared-reuse").status is Status.PASS


def test_the_report_suggests_the_front_matter_to_publish(scanned):
    claims = scanned["none"].details["claims"]
    assert claims["suggested_front_matter"]["base_model"] == MINILM_REPO
    assert claims["suggested_front_matter_text"].startswith("---\nbase_model: " + MINILM_REPO)


# --- the card's own consistency and the relations, on synthetic findings ----------------------------------

def test_quantized_relation_needs_a_copy():
    card = parse_claims_text(_card("base_model: Qwen/Qwen2.5-7B\nbase_model_relation: quantized\n"))
    derived = weights("(whole model)", QWEN_BASE, "derived", similarity=0.9, log10_p=-300, share=1.0)
    (claim,) = check_claims(card, [derived])
    assert claim.statistics["claim"]["key"] == "base_model_relation" and '"quantized"' in claim.summary
    copied = weights("(whole model)", QWEN_BASE, "copied", similarity=1.0, log10_p=-300, share=1.0)
    assert check_claims(card, [copied]) == []


def test_a_merge_naming_one_parent_is_contradicted():
    card = parse_claims_text(_card("base_model: Qwen/Qwen2.5-7B\nbase_model_relation: merge\n"))
    (claim,) = check_claims(card, [])
    assert "only \"Qwen/Qwen2.5-7B\"" in claim.summary
    two = parse_claims_text(_card("base_model:\n- Qwen/Qwen2.5-7B\n- meta-llama/Llama-3.1-8B\nbase_model_relation: merge\n"))
    assert check_claims(two, []) == []


def test_adapter_config_declares_its_base():
    card = parse_claims_text(None, json.dumps({"base_model_name_or_path": "meta-llama/Llama-3.1-8B", "r": 8}))
    assert [c.value for c in card.base_models] == ["meta-llama/Llama-3.1-8B"]
    assert card.relation.value == "adapter"
    found = weights("(whole model)", LLAMA, "derived", similarity=0.99, log10_p=-300, share=1.0)
    decl = card_declaration(card)
    assert decl.origin == "model card" and decl.match(found) is not None
    assert check_claims(card, [found]) == []


def test_a_licence_alone_declares_nothing():
    assert card_declaration(parse_claims_text(_card("license: mit\n"))) is None


def test_suggested_relation_follows_the_findings():
    quantised = weights("(whole model)", QWEN_BASE, "copied", similarity=1.0, log10_p=-300, share=1.0)
    quantised.statistics["storage"] = ["quantised as Q4_K"]
    meta = suggested_front_matter([quantised])
    assert meta == {"base_model": "Qwen/Qwen2.5-7B", "base_model_relation": "quantized", "license": "apache-2.0"}
    exact = weights("(whole model)", QWEN_BASE, "copied", similarity=1.0, log10_p=-300, share=1.0)
    assert "base_model_relation" not in suggested_front_matter([exact])  # a re-upload: no Hub relation fits
    tuned = weights("(whole model)", LLAMA, "derived", similarity=0.99, log10_p=-300, share=1.0)
    assert suggested_front_matter([tuned])["base_model_relation"] == "finetune"
    assert suggested_front_matter([tuned])["license"] == "other"


# --- hostile cards -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, problem", [
    ("---\nbase_model: [unclosed\n---\n", "invalid YAML front matter"),
    ("---\nbase_model: x\n", "never closed"),
    ("---\na: &x [1, 2]\nb: *x\n---\n", "aliases"),
    ("---\n- just\n- a list\n---\n", "not a mapping"),
    ("---\nbase_model: {a: 1}\n---\n", "base_model: expected a string"),
    ("---\nbase_model: [" + ", ".join(["x"] * 65) + "]\n---\n", "more than 64 entries"),
    ("---\n" + "a: b\n" * 20000 + "---\n", "front matter longer than"),
])
def test_a_malformed_card_is_one_line_naming_the_file(text, problem):
    with pytest.raises(ModelCardError) as err:
        parse_claims_text(text)
    line = err.value.one_line()
    assert line.startswith("README.md: ") and problem in line and "\n" not in line


def test_a_malformed_card_does_not_stop_the_scan(tmp_path, minilm_dir):
    folder = _copy(minilm_dir, tmp_path, "bad", "---\nbase_model: [unclosed\n---\n")
    report = scan(folder, tokenizer=False, code=False, hash_files=False)
    assert "README.md: line 3: invalid YAML front matter" in report.details["claims"]["error"]
    assert _claims(report) == [] and any(f.kind == "weights" for f in report.findings)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_a_card_that_is_not_a_regular_file_is_refused(tmp_path, minilm_dir):
    folder = _copy(minilm_dir, tmp_path, "fifo", None)
    os.mkfifo(folder / "README.md")  # reading it would block forever
    with open_checkpoint(folder) as ckpt, pytest.raises(ModelCardError) as err:
        read_model_card(ckpt)
    assert err.value.one_line().endswith("README.md: not a regular file")


def test_a_linked_card_is_read_and_a_link_to_a_device_refused(tmp_path, minilm_dir):
    folder = _copy(minilm_dir, tmp_path, "linked", None)
    blob = tmp_path / "blob"
    blob.write_text(_card(f"base_model: {MINILM_REPO}\n"))
    (folder / "README.md").symlink_to(blob)  # as in the Hugging Face cache
    with open_checkpoint(folder) as ckpt:
        assert [c.value for c in read_model_card(ckpt).base_models] == [MINILM_REPO]
    (folder / "README.md").unlink()
    (folder / "README.md").symlink_to("/dev/zero")  # reading it would never end
    with open_checkpoint(folder) as ckpt, pytest.raises(ModelCardError) as err:
        read_model_card(ckpt)
    assert err.value.one_line().endswith("README.md: not a regular file")


def test_evidence_the_calibration_does_not_back_contradicts_no_claim():
    """A derived finding outside the calibrated `reuse` band is REVIEW: no card is called a liar on it, and
    no front matter is suggested from it."""
    card = parse_claims_text(_card("license: mit\n", "We trained this model from scratch.\n"))
    finding = weights("model.layers", QWEN_BASE, "derived", similarity=0.35, log10_p=-73, share=0.016)
    finding.statistics["probability"] = {"reuse": 0.0, "band": "independent"}
    assert check_claims(card, [finding]) == [] and suggested_front_matter([finding]) == {}
    finding.statistics["probability"] = {"reuse": 1.0, "band": "reuse"}
    assert len(check_claims(card, [finding])) == 1 and suggested_front_matter([finding])["base_model"]


@pytest.mark.parametrize("prose, claimed", [
    ("We trained this model from scratch on 2T tokens.", True),
    ("Pre-trained entirely from scratch by our lab.", True),
    ("This model was not trained from scratch; it continues Qwen2.5.", False),
    ("Instead of training from scratch, we fine-tuned Llama.", False),
    ("We didn't pre-train from scratch.", False),
    ("Scratch that: the model is a fine-tune.", False),
])
def test_from_scratch_prose_is_a_claim_only_when_affirmed(prose, claimed):
    card = parse_claims_text(_card("license: mit\n", prose + "\n"))
    assert (card.from_scratch is not None) is claimed
