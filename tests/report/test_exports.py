"""Markdown summary and the machine-readable exports: CycloneDX 1.6 ML-BOM, SARIF 2.1.0, SPDX 3.0.1 AI."""

from __future__ import annotations

import io
import json
import re

import pytest

from modelprov.report import (
    cyclonedx_json, render_markdown, sarif_json, spdx_json, to_cyclonedx, to_json, validate_cyclonedx,
)

from .synthetic import HOSTILE, _code_scan, build_report


# --- Markdown -------------------------------------------------------------------------------------------

def test_markdown_leads_with_the_verdict_and_lists_findings(report):
    md = render_markdown(report)
    lines = md.splitlines()
    assert lines[0].startswith("# Provenance report: /data/bids/acme-vl-8b")
    assert lines[2].startswith("**FAIL: sovereign-foundation-model")
    assert "| weights | `visual` | **copied** | qwen2.5-vl-7b (Apache-2.0) | 8.2% |" in md
    assert "| tokenizer | `tokenizer.json` | **extended** |" in md
    assert "41–44 ↔ 59–62; 46–51 ↔ 64–69" in md  # code regions, both sides
    assert "| `license-obligations` | **FAIL** |" in md


def test_markdown_tables_survive_hostile_text(report):
    report["policy"]["rules"][0]["reason"] = f"reason with {HOSTILE}"
    report["findings"][0]["summary"] = f"summary with {HOSTILE}"
    md = render_markdown(report)
    outside_code = re.sub(r"(`+).*?\1", "", md)  # code spans show their text literally, HTML included
    assert "<script" not in outside_code and "&lt;script&gt;" in outside_code  # special token, escaped as text
    assert "<" not in re.sub(r"</?(details|summary)>", "", outside_code)
    unescaped_pipe = r"(?<!\\)\|"
    rule_row = next(line for line in md.splitlines() if "reason with" in line)
    assert len(re.split(unescaped_pipe, rule_row)) == 5  # | rule | outcome | reason |
    files_row = next(line for line in md.splitlines() if line.startswith("| ``extra/"))
    assert len(re.split(unescaped_pipe, files_row)) == 6  # | path | role | size | sha256 |
    assert "summary with &lt;script&gt;alert('x')&lt;/script&gt; \\| \\`tick\\` \\*star\\*" in md


# --- CycloneDX -------------------------------------------------------------------------------------------

def test_cyclonedx_is_a_valid_1_6_ml_bom(report):
    text = cyclonedx_json(report)
    assert validate_cyclonedx(text) is None
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6"
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model" and "modelCard" in model
    assert model["modelCard"]["modelParameters"]["modelArchitecture"] == "AcmeVLForConditionalGeneration"
    hashes = {c["name"]: c.get("hashes", [{}])[0].get("content") for c in model["components"]}
    assert hashes == {f["path"]: f["sha256"] for f in report["subject"]["files"]}


def test_cyclonedx_pedigree_follows_the_findings(report):
    model = to_cyclonedx(report)["metadata"]["component"]
    ancestors = model["pedigree"]["ancestors"]
    variants = model["pedigree"]["variants"]
    assert [a["name"] for a in ancestors] == ["Qwen/Qwen2.5-VL-7B-Instruct"]  # the copied vision tower
    assert ancestors[0]["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert ancestors[0]["supplier"] == {"name": "Alibaba Cloud"}
    props = {p["name"]: p["value"] for p in ancestors[0]["properties"]}
    assert props["modelprov:verdict"] == "copied" and props["modelprov:subject"] == "visual"
    # tokenizer extension and copied code: related, direction unknown
    assert sorted(v["name"] for v in variants) == ["Qwen/Qwen2.5-7B-Instruct", "https://github.com/huggingface/transformers"]
    # the independent language model is no relative at all
    no_finding = to_cyclonedx(build_report(code=False))["metadata"]["component"]["pedigree"]
    assert [v["name"] for v in no_finding["variants"]] == ["Qwen/Qwen2.5-7B-Instruct"]


def test_cyclonedx_validator_is_not_a_rubber_stamp(report):
    bom = to_cyclonedx(report)
    bom["metadata"]["component"]["modelCard"]["unknownField"] = 1
    assert validate_cyclonedx(json.dumps(bom)) is not None
    bom = to_cyclonedx(report)
    bom["metadata"]["component"]["components"][0]["hashes"][0]["content"] = "xyz"
    assert validate_cyclonedx(json.dumps(bom)) is not None


def test_cyclonedx_serial_number_ignores_the_timestamp():
    a = to_cyclonedx(build_report(timestamp="2026-11-22T00:00:00Z"))
    b = to_cyclonedx(build_report(timestamp="2027-02-02T00:00:00Z"))
    assert a["serialNumber"] == b["serialNumber"]
    assert a["metadata"]["timestamp"] != b["metadata"]["timestamp"]
    assert a["serialNumber"] != to_cyclonedx(build_report(code=False))["serialNumber"]


# --- SARIF -----------------------------------------------------------------------------------------------

def test_sarif_from_a_saved_report_equals_the_code_scanners_own(report):
    from modelprov.code.sarif import to_sarif

    _, result = _code_scan()
    saved = json.loads(to_json(report))  # through JSON, as `provenance report render` sees it
    assert json.loads(sarif_json(saved)) == json.loads(json.dumps(to_sarif(result)))
    run = json.loads(sarif_json(saved))["runs"][0]
    assert run["results"][0]["locations"][0]["physicalLocation"]["region"] == {"startLine": 40, "endLine": 51}


def test_sarif_without_a_code_scan_is_a_valid_run_with_no_results():
    from modelprov.code import validate_sarif

    log = json.loads(sarif_json(build_report(code=False)))
    validate_sarif(log)
    (run,) = log["runs"]
    assert run["results"] == [] and "no code was scanned" in run["properties"]["note"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "modelprov-code" and driver["version"] and {r["id"] for r in driver["rules"]} == {
        "PROV-CODE-COPIED", "PROV-CODE-DERIVED", "PROV-CODE-LICENSE"}


# --- SPDX 3 ----------------------------------------------------------------------------------------------

def test_spdx_document_has_the_ai_package_its_files_and_its_ancestor(report):
    spdx = pytest.importorskip("spdx_python_model", reason="optional dependency spdx-python-model").v3_0_1

    text = spdx_json(report)
    objects = spdx.SHACLObjectSet()
    spdx.JSONLDDeserializer().read(io.BytesIO(text.encode()), objects)
    packages = {o.name: o for o in objects.foreach_type(spdx.ai_AIPackage)}
    assert set(packages) == {"acme-vl-8b", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct"}
    relations = {(r.from_.name if hasattr(r.from_, "name") else r.from_, r.relationshipType.rsplit("/", 1)[-1])
                 for r in objects.foreach_type(spdx.Relationship)}
    assert ("Qwen/Qwen2.5-VL-7B-Instruct", "ancestorOf") in relations
    assert ("acme-vl-8b", "hasVariant") in relations
    hashes = {f.name: f.verifiedUsing[0].hashValue for f in objects.foreach_type(spdx.software_File) if f.verifiedUsing}
    assert hashes == {f["path"]: f["sha256"] for f in report["subject"]["files"] if f["sha256"]}
    assert spdx_json(build_report()) == text


# --- escaping, for any text ------------------------------------------------------------------------------

from hypothesis import given, settings, strategies as st

from modelprov.report.markdown import md_code, md_text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_stays_in_its_table_cell(text):
    for cell in (md_text(text), md_code(text)):
        row = f"| a | {cell} | b |"
        outside_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", row)
        assert len(re.split(r"(?<!\\)\|", outside_code)) == 5
        assert "\n" not in cell
    assert "<" not in md_text(text) and ">" not in md_text(text)
