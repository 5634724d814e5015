"""`modelprov report`: render a saved report.json in another format, or verify a checkpoint against it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rich.text import Text

from modelprov import atomic_write
from modelprov.choices import FORMATS

from ._common import plain_table, stdout

if TYPE_CHECKING:  # annotations only
    from modelprov.report import VerifyResult


@click.group(name="report")
def command() -> None:
    """Render saved scan reports and verify checkpoints against them."""


@command.command(name="render")
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="html", show_default=True,
              help="Output format (cyclonedx: CycloneDX 1.6 ML-BOM; spdx: SPDX 3.0.1 AI; sarif: code findings).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (default: standard output).")
def render_command(report: Path, fmt: str, output: Path | None) -> None:
    """Render REPORT (a saved report.json) as html, md, json, cyclonedx, sarif or spdx."""
    from modelprov.report import load_report, render  # on use: --help stays fast
    text = render(load_report(report), fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    with atomic_write(output, "w") as handle:
        handle.write(text)
    click.echo(f"wrote {output}", err=True)


@command.command(name="verify")
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_command(report: Path, checkpoint: Path, as_json: bool) -> None:
    """Re-hash CHECKPOINT's files and say whether they are the ones REPORT describes.

    Exit status: 0 every file matches, 1 a file differs, is missing or was added, 2 error.
    """
    from modelprov.report import load_report, verify_checkpoint  # on use: --help stays fast
    result = verify_checkpoint(load_report(report), checkpoint)
    if as_json:
        click.echo(json.dumps(result.to_dict(), sort_keys=True, indent=2))
    else:
        _print_result(result)
    sys.exit(result.exit_code)


def _print_result(result: VerifyResult) -> None:
    console = stdout(wide=False)
    style = {"match": "green", "mismatch": "bold red", "missing": "bold red", "unhashed": "yellow"}
    table = plain_table("status", "file", "expected sha256", "actual sha256",
                        keep=("status", "expected sha256", "actual sha256"))
    for f in result.files:
        table.add_row(Text(f.status, style=style[f.status]), f.path, (f.expected_sha256 or "—")[:16],
                      (f.actual_sha256 or "—")[:16])
    for name in result.extra:
        table.add_row(Text("extra", style="bold red"), name, "—", "—")
    console.print(table)
    if result.note:
        console.print(Text(result.note, style="yellow"))
    counts = ", ".join(f"{n} {k}" for k, n in result.counts().items() if n)
    if result.ok:
        console.print(Text.assemble(("OK", "green"), f": the files at {result.checkpoint} are the ones the report "
                                                     f"describes ({counts})"))
    else:
        console.print(Text.assemble(("MISMATCH", "bold red"), f": the files at {result.checkpoint} are not the ones "
                                                              f"the report describes ({counts})"))
