"""What the terminal shows: one table per kind of evidence, a clear bytes line, tables that fit 80 columns,
names printed as text (never as markup)."""

from __future__ import annotations

import re

import pytest

from modelprov.cli.main import COMMANDS, app
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
    report["details"]["tokenizer"]["tokenizer"] = "[red]tokenizer.json"
    out = _printed(capsys, monkeypatch, report, 200)
    assert "[bold red]visual[/bold red]" in out and "[link=https://x]q[/link]" in out
    assert "tokenizer [red]tokenizer.json" in out  # table titles too


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


# --- progress ---------------------------------------------------------------------------------------------

_LINE = re.compile(r"^modelprov: (?P<stage>[a-z ]+?) +(?P<pct>\d+)% after (?P<secs>\d+\.\d) s(?P<rest>.*)$")


def _plain_feed(interval: float):
    import io

    from rich.console import Console

    from modelprov.cli._common import PlainFeed

    buffer = io.StringIO()
    return PlainFeed(Console(file=buffer, soft_wrap=True, width=80), "scan", "stages", None, interval), buffer


def test_plain_progress_prints_stage_percent_and_elapsed_not_every_call():
    feed, buffer = _plain_feed(interval=60)
    try:
        for done in range(0, 1001):
            feed.stages("weights sketches", done, 1000, f"blk.{done % 30}.attn_q.weight")
        for done in range(1, 6):
            feed.stages("confirming copies", done, 5, f"tensor {done}")
    finally:
        feed.close()
    lines = buffer.getvalue().splitlines()
    parsed = [_LINE.match(line) for line in lines]
    assert all(parsed), lines
    # a line when each stage starts and when it completes, none in between (the interval is 60 s)
    assert [(m["stage"], m["pct"], m["rest"]) for m in parsed] == [
        ("weights sketches", "0", ": blk.0.attn_q.weight"), ("weights sketches", "100", ": blk.10.attn_q.weight"),
        ("confirming copies", "20", ": tensor 1"), ("confirming copies", "100", ": tensor 5")]


def test_plain_progress_prints_periodically_and_while_the_library_is_quiet():
    import time

    feed, buffer = _plain_feed(interval=0.2)
    try:
        for layer in range(30):  # steady calls for 0.6 s: a line about every 0.2 s, with the current layer
            feed.stages("neuron matching", layer, 100, f"model.layers.{layer}")
            time.sleep(0.02)
        time.sleep(0.5)  # nothing from the library: the heartbeat says the scan is still working
    finally:
        feed.close()
    lines = buffer.getvalue().splitlines()
    busy = [_LINE.match(line) for line in lines if not line.endswith("(still working)")]
    assert 2 <= len(busy) <= 15, lines  # about one per 0.2 s, not one per call (30)
    assert [int(m["pct"]) for m in busy] == sorted(int(m["pct"]) for m in busy) and busy[-1]["rest"].startswith(
        ": model.layers.")
    quiet = [line for line in lines if line.endswith("(still working)")]
    assert quiet and _LINE.match(quiet[-1])["pct"] == "29" and float(_LINE.match(quiet[-1])["secs"]) >= 0.7


def test_byte_progress_in_plain_lines():
    import io

    from rich.console import Console

    from modelprov.cli._common import PlainFeed

    buffer = io.StringIO()
    feed = PlainFeed(Console(file=buffer, soft_wrap=True), "sha256", "bytes", 1000, interval=0)
    try:
        feed.bytes(250)
        feed.bytes(750)
    finally:
        feed.close()
    assert [line.split(" after ")[0] for line in buffer.getvalue().splitlines()[:2]] == [
        "modelprov: sha256  25%", "modelprov: sha256 100%"]


# --- start-up ---------------------------------------------------------------------------------------------

_HEAVY = ("numpy", "scipy.stats", "scipy.optimize", "torch", "matplotlib", "jinja2", "jsonschema")


def _modules_loaded_by(args: list[str]) -> list[str]:
    """The heavy modules a fresh `modelprov ARGS` process has imported when it exits (timing is left to
    benchmarks/cli_startup.py; this guards the lazy imports that make --help fast)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\nfrom modelprov.cli.main import app\ntry:\n    app(sys.argv[1:], prog_name='modelprov')\n"
            f"except SystemExit:\n    pass\nprint('LOADED:' + ','.join(m for m in {_HEAVY!r} if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    loaded = next(line for line in run.stdout.splitlines() if line.startswith("LOADED:"))
    return [m for m in loaded.removeprefix("LOADED:").split(",") if m]


def test_top_level_help_imports_nothing_heavy():
    assert _modules_loaded_by(["--help"]) == []


@pytest.mark.parametrize("command", [*COMMANDS, "index pull", "code scan", "policy check"])
def test_command_help_imports_nothing_heavy(command):
    """A command's --help needs click and rich only: its module loads the library inside the command."""
    assert _modules_loaded_by([*command.split(), "--help"]) == []
