"""What the terminal shows: one table per kind of evidence, a clear bytes line, tables that fit 80 columns,
names printed as text (never as markup)."""

from __future__ import annotations

import re

import pytest

from modelprov.cli.main import app
from modelprov.cli.scan_cmd import print_report
from tests.report.synthetic import build_report


def _printed(capsys, monkeypatch, report: dict, columns: int) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    print_report(report)
    return capsys.readouterr().out


def _table_lines(text: str) -> list[str]:
    """Lines of rich tables (rows start with the box's edge; titles and plain lines start with a letter)."""
    return [line for line in text.splitlines() if line[:1] in (" ", "┃", "│", "┏", "┡", "└")]


def test_scan_prints_one_table_per_kind_of_evidence(capsys, monkeypatch):
    out = _printed(capsys, monkeypatch, build_report(), 200)
    weights = out[out.index("weights\n"):out.index("tokenizer tokenizer.json\n")]
    assert re.search(r"visual\s+copied\s+qwen2\.5-vl-7b\s+32/32\s+0\.9950\s+≤ 1e-300\s+8\.2%", weights)
    assert re.search(r"model\s+independent\s+qwen2\.5-7b\s+-\s+max 0\.0311", weights)  # the closest, said as such
    tokenizer = out[out.index("tokenizer tokenizer.json\n"):out.index("code\n")]
    assert re.search(r"qwen2\.5\s+extended\s+0\.9783\s+97\.8%\s+100\.0%\s+100\.0%", tokenizer)
    code = out[out.index("code\n"):]
    assert re.search(r"acme/modeling_acme\.py::AcmeRMSNorm\s+copied\s+glm-4\.5@4\.56\.0\s+94\.4%\s+MIT: include", code)


def test_each_kind_says_when_it_has_nothing(capsys, monkeypatch):
    report = build_report(code=False)
    del report["details"]["tokenizer"]
    out = _printed(capsys, monkeypatch, report, 200)
    assert "tokenizer: not scanned" in out and "code: not scanned" in out
    report["details"]["tokenizer"] = {"tokenizer": None, "reason": "no tokenizer file found"}
    assert "tokenizer: no tokenizer file found" in _printed(capsys, monkeypatch, report, 200)


def test_bytes_line_separates_sketch_reads_from_full_reads(capsys, monkeypatch):
    out = _printed(capsys, monkeypatch, build_report(), 200)
    line = next(line for line in out.splitlines() if line.startswith("read "))
    # 402,653,184 of 16,584,333,312 bytes for sketches; 1,755,463,680 read in all
    assert line.startswith("read 402,653,184 of 16,584,333,312 checkpoint bytes (2.4%) for sketches, "
                           "plus 1,352,810,496 bytes of full-tensor reads to confirm copies")


def test_tables_fold_at_80_columns_and_cut_nothing(capsys, monkeypatch):
    out = _printed(capsys, monkeypatch, build_report(), 80)
    tables = _table_lines(out)
    assert tables and max(len(line) for line in tables) <= 80
    assert "…" not in out
    for number in ("32/32", "0.9950", "8.2%", "0.9783", "94.4%"):
        assert number in out  # numbers keep their width; only names fold


def test_names_from_files_are_printed_as_text_not_markup(capsys, monkeypatch):
    report = build_report()
    report["findings"][0]["subject"] = "[bold red]visual[/bold red]"
    report["details"]["tokenizer"]["comparisons"][0]["reference"] = "[link=https://x]q[/link]"
    out = _printed(capsys, monkeypatch, report, 200)
    assert "[bold red]visual[/bold red]" in out and "[link=https://x]q[/link]" in out


def test_index_list_fits_80_columns(cli):
    result = cli.invoke(app, ["index", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    tables = _table_lines(result.stdout)
    assert max(len(line) for line in tables) <= 80
    assert "…" not in result.stdout and "134,515,008" in result.stdout and "22,713,216" in result.stdout


@pytest.mark.parametrize("args", [["policy", "list"], ["policy", "show", "sovereign-foundation-model"],
                                  ["tokenizer", "references"]])
def test_other_tables_fit_80_columns(cli, args):
    result = cli.invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    assert max(len(line) for line in _table_lines(result.stdout)) <= 80 and "…" not in result.stdout
