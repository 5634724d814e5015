"""`provenance code …` commands: round trip of the index, scan formats, one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from modelprov.cli.main import app


@pytest.fixture()
def small_reference(tmp_path, transformers_models_dir):
    folder = tmp_path / "ref"
    folder.mkdir()
    shutil.copy(transformers_models_dir / "llama" / "modeling_llama.py", folder)
    return folder


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelprov: error: ")
    return lines[0]


def test_index_round_trip_and_scan(cli, tmp_path, small_reference, transformers_models_dir):
    index = tmp_path / "index"
    added = cli.invoke(app, ["code", "index", "add", str(small_reference), "--name", "llama-code", "--version", "1",
                             "--license", "Apache-2.0", "--org", "Meta", "--country", "us", "--family", "llama",
                             "--index", str(index)])
    assert added.exit_code == 0, added.stderr
    assert "llama-code@1" in added.stdout
    listed = cli.invoke(app, ["code", "index", "list", "--json", "--index", str(index)])
    assert [r["key"] for r in json.loads(listed.stdout)] == ["llama-code@1"]
    shown = json.loads(cli.invoke(app, ["code", "index", "show", "llama-code", "--index", str(index)]).stdout)
    assert shown["reference"]["license"] == "Apache-2.0" and shown["files"][0]["path"] == "modeling_llama.py"

    subject = transformers_models_dir / "mistral" / "modeling_mistral.py"
    out = tmp_path / "scan.sarif"
    scanned = cli.invoke(app, ["code", "scan", str(subject), "--index", str(index), "--format", "sarif", "-o", str(out)])
    assert scanned.exit_code == 0, scanned.stderr
    from modelprov.code.sarif import validate_sarif

    document = json.loads(out.read_text())
    validate_sarif(document)
    assert document["runs"][0]["results"]
    as_json = cli.invoke(app, ["code", "scan", str(subject), "--index", str(index), "--format", "json"])
    findings = json.loads(as_json.stdout)["findings"]
    assert findings and findings[0]["reference"]["country"] == "US" and findings[0]["reference"]["org"] == "Meta"
    text = cli.invoke(app, ["code", "scan", str(subject), "--index", str(index)])
    assert "copied" in text.stdout

    removed = cli.invoke(app, ["code", "index", "remove", "llama-code@1", "--index", str(index)])
    assert removed.exit_code == 0 and "removed llama-code@1" in removed.stdout
    assert json.loads(cli.invoke(app, ["code", "index", "list", "--json", "--index", str(index)]).stdout) == []
    _one_line_error(cli.invoke(app, ["code", "scan", str(subject), "--index", str(index)]))  # empty index


def test_missing_path(cli, tmp_path):
    assert "no such file or folder" in _one_line_error(cli.invoke(app, ["code", "scan", str(tmp_path / "nope.py")]))
    _one_line_error(cli.invoke(app, ["code", "index", "add", str(tmp_path / "nope"), "--name", "x", "--index", str(tmp_path)]))


def test_empty_folder(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no Python, C++ or CUDA source files" in _one_line_error(cli.invoke(app, ["code", "scan", str(empty)]))
    _one_line_error(cli.invoke(app, ["code", "index", "add", str(empty), "--name", "x", "--index", str(tmp_path / "i")]))


def test_malformed_index(cli, tmp_path, small_reference):
    index = tmp_path / "index"
    (index / "broken@1").mkdir(parents=True)
    (index / "broken@1" / "manifest.json").write_text("{not json")
    assert "malformed code index manifest" in _one_line_error(
        cli.invoke(app, ["code", "scan", str(small_reference), "--index", str(index)])
    )
    _one_line_error(cli.invoke(app, ["code", "index", "list", "--index", str(index)]))
    (index / "broken@1" / "manifest.json").write_text(json.dumps({"format_version": 99}))
    assert "unsupported code index format" in _one_line_error(
        cli.invoke(app, ["code", "scan", str(small_reference), "--index", str(index)])
    )


def test_truncated_index_data(cli, tmp_path, small_reference):
    index = tmp_path / "index"
    assert cli.invoke(app, ["code", "index", "add", str(small_reference), "--name", "l", "--index", str(index)]).exit_code == 0
    data = next(index.glob("l@*/arrays.npz"))
    whole = data.read_bytes()
    data.write_bytes(whole[:100])
    assert "malformed code index data" in _one_line_error(
        cli.invoke(app, ["code", "scan", str(small_reference), "--index", str(index)])
    )
    data.unlink()
    os.mkfifo(data)  # a FIFO would block a reader forever: refused without being opened
    assert "not a regular file" in _one_line_error(
        cli.invoke(app, ["code", "scan", str(small_reference), "--index", str(index)])
    )


def test_bad_license_and_duplicate(cli, tmp_path, small_reference):
    index = tmp_path / "index"
    args = ["code", "index", "add", str(small_reference), "--name", "l", "--version", "1", "--index", str(index)]
    assert "license" in _one_line_error(cli.invoke(app, args + ["--license", "Apache-2.0 AND ("]))
    assert "unknown SPDX" in _one_line_error(cli.invoke(app, args + ["--license", "Made-Up-License"]))
    assert cli.invoke(app, args + ["--license", "LicenseRef-deepseek"]).exit_code == 0
    assert "already in the code index" in _one_line_error(cli.invoke(app, args))
    _one_line_error(cli.invoke(app, ["code", "index", "remove", "nothing", "--index", str(index)]))
