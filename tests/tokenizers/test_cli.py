"""`provenance tokenizer …` from the command line: verdicts, JSON, and one-line errors with exit status 2."""

from __future__ import annotations

import json

from modelprov.cli.main import app


def test_compare_bert_files_identical_json(cli, minilm_dir):
    result = cli.invoke(app, ["tokenizer", "compare", str(minilm_dir / "vocab.txt"), "ref:bert-base-uncased", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "identical" and doc["shared_tokens"] == 30517


def test_compare_deepseek_with_qwen_table(cli, deepseek_tokenizer_json):
    result = cli.invoke(app, ["tokenizer", "compare", str(deepseek_tokenizer_json), "qwen3"])
    assert result.exit_code == 0, result.output
    assert "verdict: unrelated" in result.stdout and "Spearman" in result.stdout


def test_inspect_lists_references(cli, minilm_dir):
    result = cli.invoke(app, ["tokenizer", "inspect", str(minilm_dir), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["fingerprint"]["model"] == "wordpiece"
    assert doc["references"][0]["reference"]["name"] == "bert-base-uncased"
    assert doc["references"][0]["verdict"] == "identical"
    assert {r["verdict"] for r in doc["references"][1:]} == {"unrelated"}


def test_references_listing(cli):
    result = cli.invoke(app, ["tokenizer", "references", "--json"])
    assert result.exit_code == 0
    assert {e["reference"]["name"] for e in json.loads(result.stdout)} >= {"qwen3", "deepseek-v3"}


def test_malformed_file_is_one_line_exit_2(cli, tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("this is not json")
    result = cli.invoke(app, ["tokenizer", "compare", str(bad), "ref:qwen3"])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"modelprov: error: {bad}: not valid JSON")


def test_missing_path_is_one_line_exit_2(cli, tmp_path):
    result = cli.invoke(app, ["tokenizer", "inspect", str(tmp_path / "absent"), "--no-references"])
    assert result.exit_code == 2
    assert "no such file or directory" in result.stderr and len(result.stderr.strip().splitlines()) == 1
