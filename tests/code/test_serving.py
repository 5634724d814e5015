"""Serving code in the field: vLLM's GLM-4.5 model file disguised in a fake bidder repository, scanned with
no flags against the shipped code index; with a declaration of the reuse, the sovereign policy's code rule
passes. The file comes from the pinned vLLM wheel (read as a zip, never imported or installed)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import tree_sitter
from safetensors.numpy import save_file

from modelprov.cli.main import app
from modelprov.code.tokenize import parser_for
from modelprov.policy import apply_policy, load_declaration
from modelprov.scan import scan

from .mutate import rename_all, reorder_definitions

VLLM_GLM = "vllm/model_executor/models/glm4_moe.py"


def _strip_comments(source: str) -> str:
    """Every comment (licence header included) removed, as a copier hiding the origin would."""
    data = source.encode()
    spans = []

    def visit(node: tree_sitter.Node) -> None:
        if node.type == "comment":
            spans.append((node.start_byte, node.end_byte))
        for child in node.children:
            visit(child)

    visit(parser_for("python").parse(data).root_node)
    for start, end in sorted(spans, reverse=True):
        data = data[:start] + data[end:]
    return data.decode()


def _rewrite_one_function(source: str) -> tuple[str, str]:
    """The longest method's body replaced by independent code; returns (source, its qualified name)."""
    data = source.encode()
    found: list[tuple[tree_sitter.Node, str]] = []

    def visit(node: tree_sitter.Node, owner: str) -> None:
        for child in node.children:
            definition = child.child_by_field_name("definition") if child.type == "decorated_definition" else child
            if definition is not None and definition.type in ("class_definition", "function_definition"):
                name = definition.child_by_field_name("name").text.decode()
                if definition.type == "function_definition" and owner:
                    found.append((definition, f"{owner}.{name}"))
                visit(definition.child_by_field_name("body"), name if definition.type == "class_definition" else "")

    visit(parser_for("python").parse(data).root_node, "")
    longest, qualname = max(found, key=lambda item: item[0].end_byte - item[0].start_byte)
    body = longest.child_by_field_name("body")
    pad = " " * body.start_point[1]
    new = f"total = 0\n{pad}for item in range(3):\n{pad}    total += item * item\n{pad}return total".encode()
    return (data[: body.start_byte] + new + data[body.end_byte :]).decode(), qualname


@pytest.fixture(scope="module")
def bidder(pinned_wheel, tmp_path_factory):
    """A fake bidder repository: its own small random checkpoint and a disguised copy of vLLM's GLM-4.5 file."""
    with zipfile.ZipFile(pinned_wheel("vllm")) as archive:
        original = archive.read(VLLM_GLM).decode()
    rewritten, name = _rewrite_one_function(_strip_comments(original))
    disguised, mapping = rename_all(reorder_definitions(rewritten))
    root = tmp_path_factory.mktemp("bidder")
    (root / "serving").mkdir()
    (root / "serving" / "hanul_moe.py").write_text(disguised, encoding="utf-8")
    rng = np.random.default_rng(7)
    save_file({f"model.layers.{i}.mlp.up_proj.weight": rng.normal(0, 0.02, (64, 32)).astype(np.float16) for i in range(2)},
              str(root / "model.safetensors"))
    return root, mapping, name


def test_scan_with_no_flags_names_vllms_glm_file_family_organisation_licence_and_duties(bidder, cli):
    root, _, _ = bidder
    result = cli.invoke(app, ["scan", str(root), "--no-hash"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert f"vllm@0.34.0 {VLLM_GLM} (GLM-4.5, Zhipu AI (Z.ai), CN, Apache-2.0)" in out
    assert "unmet: Apache-2.0 §4(a)" in out and "unmet: Apache-2.0 §4(c)" in out


@pytest.fixture(scope="module")
def report(bidder):
    return scan(bidder[0], hash_files=False)


def test_the_disguised_file_is_attributed_to_vllms_glm_implementation(report, bidder):
    _, mapping, rewritten = bidder
    (file,) = report.details["code"]["files"]
    top = file["sources"][0]
    assert (top["reference"], top["path"]) == ("vllm@0.34.0", VLLM_GLM) and top["share"] > 0.5
    code = [f for f in report.findings if f.kind == "code"]
    named = [f for f in code if f.statistics["nearest_source"].startswith(f"vllm@0.34.0:{VLLM_GLM}::")]
    assert len(named) >= 0.8 * len(code) and len(named) >= 10
    finding = named[0]
    assert (finding.reference.name, finding.reference.family, finding.reference.org, finding.reference.license) == (
        "vllm", "GLM-4.5", "Zhipu AI (Z.ai)", "Apache-2.0")
    assert "canonical_origin" in finding.statistics and "nearest source vllm" in finding.summary
    duties = {o.obligation.split(":")[0]: o.met for o in finding.license_obligations}
    assert duties["Apache-2.0 §4(a)"] is False and duties["Apache-2.0 §4(c)"] is False
    disguised = ".".join(mapping[part] for part in rewritten.split("."))
    assert disguised not in {f.subject.split("::")[1] for f in code}  # the rewritten function is not claimed
    renamed = [m for m in file["matches"] if m["rename_map"]]
    assert renamed and all(m["rename_consistency"] > 0.9 for m in renamed)  # verbatim text regenerated from the wheel


def test_declared_reuse_passes_the_sovereign_code_rule(report, tmp_path):
    undeclared = apply_policy(report, "sovereign-foundation-model", None, home_country="KR")
    code_ids = {f.id for f in report.findings if f.kind == "code"}

    def code_issues(result):
        rule = next(r for r in result.rules if r.id == "undeclared-reuse")
        return [i for i in rule.issues if i.finding in code_ids]

    assert code_issues(undeclared) and all(i.status.value != "PASS" for i in code_issues(undeclared))
    declaration = tmp_path / "declaration.toml"
    declaration.write_text('[[code]]\nsource = "vllm"\nlicense = "Apache-2.0"\npaths = ["serving/*.py"]\n'
                           'notes = "GLM-4.5 serving code adapted from vLLM 0.34.0"\n', encoding="utf-8")
    declared = apply_policy(report, "sovereign-foundation-model", load_declaration(declaration), home_country="KR")
    issues = code_issues(declared)
    assert issues and all(i.status.value == "PASS" for i in issues), [i for i in issues if i.status.value != "PASS"]


def test_reports_and_sarif_show_the_nearest_source_and_the_canonical_origin(report):
    from modelprov.report import render

    markdown, html = render(report, "md"), render(report, "html")
    sarif = json.loads(render(report, "sarif"))
    assert f"nearest source vllm@0.34.0 `{VLLM_GLM}::" in markdown and "(GLM-4.5, Zhipu AI (Z.ai), CN, Apache-2.0)" in markdown
    assert "nearest source vllm@0.34.0" in html
    results = sarif["runs"][0]["results"]
    assert results and all(r["properties"]["nearestSource"].startswith("vllm@0.34.0:") for r in results)
    assert all(r["properties"]["canonicalOrigin"] for r in results)
    assert "nearest source vllm@0.34.0" in results[0]["message"]["text"]
