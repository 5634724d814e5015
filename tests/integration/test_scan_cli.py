"""`provenance scan` end to end: weights, tokenizer, policy and every report format from one command."""

from __future__ import annotations

import json
import re
from pathlib import Path

from modelprov.cli.main import app
from modelprov.report import validate_report


def test_scan_judges_and_writes_every_report(cli, minilm_dir: Path, tmp_path: Path):
    out = tmp_path / "report"
    result = cli.invoke(app, ["scan", str(minilm_dir), "--no-hash", "--report", str(out),
                              "--policy", "sovereign-foundation-model", "--home-country", "KR"])
    # all-MiniLM-L6-v2 is a US model in the shipped index: copied whole, so the sovereign policy fails
    assert result.exit_code == 1, result.stderr
    assert "overall: FAIL" in result.stdout
    # one table per kind of evidence, each with its verdicts, then the bytes read
    assert re.search(r"^weights$.*\(whole model\)\s+copied\s+all-MiniLM-L6-v2", result.stdout, re.S | re.M)
    assert re.search(r"^tokenizer tokenizer\.json$.*bert-base-uncased\s+identical", result.stdout, re.S | re.M)
    assert "code: not scanned" in result.stdout and "checkpoint bytes (" in result.stdout
    # stderr is no terminal here: progress comes as plain lines, each stage from its start to 100%
    lines = [re.match(r"modelprov: ([a-z ]+?) +(\d+)% after \d+\.\d s", line) for line in result.stderr.splitlines()]
    assert all(lines), result.stderr
    stages = list(dict.fromkeys(m[1] for m in lines))
    assert stages == ["weights sketches", "confirming copies", "tokenizer"]  # --no-hash: no hashing stage
    assert {m[1] for m in lines if m[2] == "100"} == set(stages)
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.html", "report.md", "report.cdx.json",
                                               "report.sarif"}
    report = json.loads((out / "report.json").read_text())
    validate_report(report)
    kinds = {(f["kind"], f["verdict"], f["reference"]["name"]) for f in report["findings"]}
    assert ("weights", "copied", "all-MiniLM-L6-v2") in kinds
    assert ("tokenizer", "identical", "bert-base-uncased") in kinds
    assert report["policy"]["overall"] == "FAIL"
    assert "FAIL" in (out / "report.md").read_text()


def test_license_compliance_alone_does_not_judge_origin(cli, minilm_dir: Path, tmp_path: Path):
    result = cli.invoke(app, ["scan", str(minilm_dir), "--no-hash", "--json", str(tmp_path / "r.json"),
                              "--policy", "license-compliance"])
    report = json.loads((tmp_path / "r.json").read_text())
    rules = {r["id"] for r in report["policy"]["rules"]}
    assert "foreign-base-model" not in rules and "license-obligations" in rules
    assert result.exit_code == (1 if report["policy"]["overall"] == "FAIL" else 0)


def test_bad_declaration_fails_before_anything_is_written(cli, minilm_dir: Path, tmp_path: Path):
    declaration = tmp_path / "decl.toml"
    declaration.write_text("[[components]\nname = 1\n")
    out = tmp_path / "report"
    result = cli.invoke(app, ["scan", str(minilm_dir), "--report", str(out), "--json", str(tmp_path / "r.json"),
                              "--policy", "disclosure", "--declaration", str(declaration)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and str(declaration) in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_independent_weights_get_every_report(cli, minilm_independent_fresh: Path, tmp_path: Path):
    """The common case, no weights reuse, must render in every format (SPDX once failed on it)."""
    out = tmp_path / "report"
    result = cli.invoke(app, ["scan", str(minilm_independent_fresh), "--no-hash", "--report", str(out)])
    assert result.exit_code == 0, result.stderr  # no policy: scanned is success
    report = json.loads((out / "report.json").read_text())
    assert not [f for f in report["findings"] if f["kind"] == "weights"]
    # the fresh init keeps MiniLM's files beside its weights: the BERT tokenizer is still found
    assert [f["verdict"] for f in report["findings"] if f["kind"] == "tokenizer"] == ["identical"]
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.html", "report.md", "report.cdx.json",
                                               "report.spdx.json"}


def test_empty_path_is_an_error_not_the_working_folder(cli, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["scan", ""])
    assert result.exit_code == 2 and "empty" in result.stderr and "Traceback" not in result.stderr


def test_a_report_without_any_finding_renders_in_every_format(minilm_independent_fresh: Path, tmp_path: Path):
    from modelprov.report import write_reports
    from modelprov.scan import scan

    report = scan(minilm_independent_fresh, hash_files=False, tokenizer=False)
    assert report.findings == []
    paths = write_reports(report, tmp_path / "r", formats=("json", "html", "md", "cyclonedx", "spdx"))
    assert set(paths) == {"json", "html", "md", "cyclonedx", "spdx"}


def test_an_internal_error_exits_2_not_1(cli, minilm_dir: Path, monkeypatch):
    """Exit 1 means "policy failure" to CI; a crash must never look like a verdict."""
    import modelprov.scan

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(modelprov.scan, "scan_weights", broken)
    result = cli.invoke(app, ["scan", str(minilm_dir), "--no-hash"])
    assert result.exit_code == 2
    assert "internal error" in result.stderr and "ZeroDivisionError" in result.stderr


def _with_code_index(minilm_index_source: Path, transformers_models_dir: Path, root: Path) -> Path:
    """A copy of the shipped index plus a code index holding transformers' Qwen2 modelling code."""
    import shutil

    from modelprov.code import CodeIndex

    index = Path(shutil.copytree(minilm_index_source, root / "index"))
    CodeIndex(index / "code").add(transformers_models_dir / "qwen2", name="transformers-qwen2",
                                  version="test", license="Apache-2.0")
    return index


def test_scan_runs_the_code_scanner_on_modelling_code_in_the_checkpoint(
        minilm_dir: Path, transformers_models_dir: Path, tmp_path: Path):
    import shutil

    from modelprov.index import default_index_dir
    from modelprov.scan import scan

    index = _with_code_index(default_index_dir(), transformers_models_dir, tmp_path)
    ckpt = Path(shutil.copytree(minilm_dir, tmp_path / "ckpt"))
    shutil.copy(transformers_models_dir / "qwen2" / "modeling_qwen2.py", ckpt / "modeling_mine.py")
    report = scan(ckpt, index, hash_files=False)
    code = [f for f in report.findings if f.kind == "code"]
    assert code and all(f.subject.startswith("modeling_mine.py::") for f in code)
    assert report.details["code"]


def test_source_only_in_skipped_folders_does_not_fail_the_scan(
        minilm_dir: Path, transformers_models_dir: Path, tmp_path: Path):
    """The code scanner skips .git/, __pycache__/…; the scan must decide 'no code' with the same walk."""
    import shutil

    from modelprov.index import default_index_dir
    from modelprov.scan import scan

    index = _with_code_index(default_index_dir(), transformers_models_dir, tmp_path)
    ckpt = Path(shutil.copytree(minilm_dir, tmp_path / "ckpt"))
    (ckpt / ".git" / "hooks").mkdir(parents=True)
    (ckpt / ".git" / "hooks" / "hook.py").write_text("print('not modelling code')\n")
    report = scan(ckpt, index, hash_files=False)
    assert "code" not in report.details and not [f for f in report.findings if f.kind == "code"]
