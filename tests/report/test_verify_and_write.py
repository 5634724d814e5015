"""`verify` re-hashes a real checkpoint against its report; `write_reports` and the CLI, all-or-nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from modelprov.cli.main import app
from modelprov.report import FILE_NAMES, load_report, to_json, verify_checkpoint, write_reports
from modelprov.report import writer

from .synthetic import build_report


@pytest.fixture()
def checkpoint(scanned_minilm, tmp_path) -> tuple[Path, dict]:
    """A fresh copy of the scanned MiniLM folder (tests tamper with it) and the report of the original."""
    folder, report = scanned_minilm
    copy = tmp_path / "moved" / "model"
    shutil.copytree(folder, copy)
    return copy, report


def test_report_hashes_are_real_sha256(scanned_minilm):
    folder, report = scanned_minilm
    weights = next(f for f in report["subject"]["files"] if f["path"].endswith("model.safetensors"))
    assert weights["sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_verify_accepts_the_same_files_even_after_a_move(checkpoint):
    folder, report = checkpoint
    result = verify_checkpoint(report, folder)
    assert result.ok and result.exit_code == 0
    assert result.counts()["match"] == len(report["subject"]["files"]) >= 5
    assert "model.safetensors" in {f.path for f in result.files}  # paths relative to the checkpoint


def test_verify_finds_a_changed_byte_a_missing_file_and_an_extra_file(checkpoint):
    folder, report = checkpoint
    with open(folder / "model.safetensors", "r+b") as handle:  # same size, one byte flipped in the last tensor
        handle.seek(-3, 2)
        last = handle.read(1)
        handle.seek(-3, 2)
        handle.write(bytes([last[0] ^ 0xFF]))
    (folder / "vocab.txt").unlink()
    (folder / "merges.txt").write_text("#version: 0.2\n")  # a tokenizer file the reader now counts
    result = verify_checkpoint(report, folder)
    status = {f.path: f.status for f in result.files}
    assert status["model.safetensors"] == "mismatch"
    assert status["vocab.txt"] == "missing"
    assert status["config.json"] == "match"
    assert not result.ok and result.exit_code == 1
    changed = next(f for f in result.files if f.path == "model.safetensors")
    assert changed.actual_size == changed.expected_size and changed.actual_sha256 != changed.expected_sha256


def test_verify_cli_exit_codes(cli, checkpoint, tmp_path):
    folder, report = checkpoint
    saved = tmp_path / "report.json"
    saved.write_text(to_json(report))
    ok = cli.invoke(app, ["report", "verify", str(saved), str(folder)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.stdout
    (folder / "config.json").write_text("{}")
    bad = cli.invoke(app, ["report", "verify", str(saved), str(folder), "--json"])
    assert bad.exit_code == 1
    data = json.loads(bad.stdout)
    assert data["ok"] is False and data["counts"]["mismatch"] == 1
    missing = cli.invoke(app, ["report", "verify", str(saved), str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "modelprov: error:" in missing.stderr and "no such checkpoint" in missing.stderr


def test_write_reports_writes_every_format(tmp_path, report):
    from modelprov.report.writer import spdx_available

    paths = write_reports(report, tmp_path / "out")
    expected = {name for fmt, name in FILE_NAMES.items() if fmt != "spdx" or spdx_available()}
    assert {p.name for p in (tmp_path / "out").iterdir()} == expected
    assert load_report(paths["json"]) == json.loads(to_json(report))
    assert {p.stat().st_mode & 0o777 for p in paths.values()} == {0o644}  # reports are for sharing
    no_code = write_reports(build_report(code=False), tmp_path / "no-code")
    assert no_code["sarif"] == tmp_path / "no-code" / "report.sarif"  # CI pipelines expect the file


def test_write_reports_is_all_or_nothing(tmp_path, report, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("previous run")
    broken = {**writer.RENDERERS, "md": lambda r: (_ for _ in ()).throw(RuntimeError("exporter crashed"))}
    monkeypatch.setattr(writer, "RENDERERS", broken)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        write_reports(report, out)
    assert [p.name for p in out.iterdir()] == ["report.json"]  # no new file, no temporary left behind
    assert (out / "report.json").read_text() == "previous run"


def test_write_reports_refuses_an_invalid_report(tmp_path, report):
    del report["findings"][0]["reference"]
    from modelprov.errors import ProvenanceError

    with pytest.raises(ProvenanceError, match="not a valid scan report"):
        write_reports(report, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt, check", [
    ("html", lambda t: t.startswith("<!DOCTYPE html>")),
    ("md", lambda t: t.startswith("# Provenance report")),
    ("cyclonedx", lambda t: json.loads(t)["bomFormat"] == "CycloneDX"),
    ("sarif", lambda t: json.loads(t)["version"] == "2.1.0"),
    ("json", lambda t: "subject" in json.loads(t)),
])
def test_render_cli_from_a_saved_report(cli, tmp_path, report, fmt, check):
    saved = tmp_path / "report.json"
    saved.write_text(to_json(report))
    to_stdout = cli.invoke(app, ["report", "render", str(saved), "--format", fmt])
    assert to_stdout.exit_code == 0, to_stdout.output
    assert check(to_stdout.stdout)
    out = tmp_path / f"out.{fmt}"
    to_file = cli.invoke(app, ["report", "render", str(saved), "--format", fmt, "-o", str(out)])
    assert to_file.exit_code == 0 and out.read_text() == to_stdout.stdout


def test_render_cli_errors_are_one_line(cli, tmp_path):
    (tmp_path / "bad.json").write_text("[]")
    result = cli.invoke(app, ["report", "render", str(tmp_path / "bad.json")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("modelprov: error: ")


def test_verify_a_single_file_checkpoint(smollm2_gguf, tmp_path):
    report = build_report(code=False, policy=False)
    sha = hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
    report["subject"].update(path=str(smollm2_gguf), format="gguf", files=[  # as the reader records a GGUF file
        {"path": str(smollm2_gguf), "size": smollm2_gguf.stat().st_size, "sha256": sha, "role": "weights"}])
    moved = tmp_path / "renamed.gguf"
    moved.symlink_to(smollm2_gguf)
    result = verify_checkpoint(report, moved)
    assert result.ok, result.to_dict()
    assert [f.path for f in result.files] == [smollm2_gguf.name]
    other = tmp_path / "other.gguf"
    other.write_bytes(smollm2_gguf.read_bytes()[:-1] + b"\0")
    assert verify_checkpoint(report, other).counts()["mismatch"] == 1


def test_a_real_scan_renders_in_every_format(scanned_minilm, tmp_path):
    _, report = scanned_minilm
    paths = write_reports(report, tmp_path / "out")
    sarif = json.loads(paths["sarif"].read_text())  # no code scan in this report: a run without results
    assert sarif["runs"][0]["results"] == [] and sarif["runs"][0]["tool"]["driver"]["name"] == "modelprov-code"
    finding = report["findings"][0]
    assert finding["verdict"] == "copied"  # MiniLM against an index that holds MiniLM
    html = paths["html"].read_text()
    assert html.count('<figure class="heatmap"') >= 1 and "no policy was applied" in html
    md = paths["md"].read_text()
    assert f"**{finding['verdict']}**" in md and finding["reference"]["name"] in md
    bom = json.loads(paths["cyclonedx"].read_text())
    ancestors = bom["metadata"]["component"]["pedigree"]["ancestors"]
    assert [a["name"] for a in ancestors] == [finding["reference"]["repo_id"] or finding["reference"]["name"]]
