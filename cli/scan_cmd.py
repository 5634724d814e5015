"""`provenance scan CHECKPOINT`: which components come from which reference model, with statistics."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from provenance.atomic import atomic_write
from provenance.findings import ScanReport
from provenance.scan import scan


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar on stderr (hidden when stderr is not a terminal) fed by `(done, total, item)` calls."""
    err = Console(stderr=True)
    bar = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[item]}"), console=err, transient=True,
                   disable=not err.is_terminal)
    with bar:
        task = bar.add_task(description, total=None, item="")

        def update(done: int, total: int, item: str) -> None:
            bar.update(task, completed=done, total=total, item=item[-48:])

        yield update


@click.command(name="scan")
@click.argument("checkpoint")
@click.option("--index", "index_dir", type=click.Path(file_okay=False), default=None,
              help="Reference index folder (default: $PROVENANCE_INDEX or the shipped reference_index/).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the full scan report as JSON to this file (schema: docs/weights.md).")
@click.option("--no-hash", is_flag=True, help="Skip the sha256 of the checkpoint files.")
@click.option("--no-verify", is_flag=True, help="Do not read near-identical tensors in full to confirm exact copies.")
def command(checkpoint: str, index_dir: str | None, json_out: str | None, no_hash: bool, no_verify: bool) -> None:
    """Find which parts of CHECKPOINT come from which reference model, per component.

    Exit status: 0 scanned (findings or not), 2 bad input, 3 nothing scannable.
    """
    with progress_bar("reading weights") as update:
        report = scan(checkpoint, index_dir, progress=update, verify_exact=not no_verify, hash_files=not no_hash)
    if json_out:
        with atomic_write(json_out) as handle:
            json.dump(report.to_dict(), handle, indent=1, default=str)
            handle.write("\n")
    print_report(report)


def print_report(report: ScanReport) -> None:
    """The weights findings as a terminal table, one row per component and reference."""
    out = Console(file=sys.stdout, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    idx = report.index
    out.print(f"[bold]{report.subject.path}[/bold]: {report.subject.parameter_count:,} parameters; "
              f"index {idx.get('name')} v{idx.get('version')} ({idx.get('references')} references)")
    weights = [f for f in report.findings if f.kind == "weights"]
    if not weights:
        out.print("no weights finding: no component matches any reference")
    else:
        table = Table("component", "verdict", "reference", "blocks", "tensors", "centred sim. (median)",
                      "raw cos.", "params share", "log10 p", title="weights", title_justify="left")
        for f in weights:
            s = f.statistics
            blocks = f"{s['layers_matched']}/{s['layers_total']}" if s.get("layers_total") else "-"
            table.add_row(f.subject, f.verdict, f.reference.name, blocks, str(s["tensors_matched"]),
                          f"{s['centred_similarity']:.4f}", f"{s['raw_cosine']:.4f}",
                          f"{(f.parameter_share or 0):.1%}", f"{s['log10_p']:.0f}")
        out.print(table)
        for f in weights:
            for t in f.transformations:
                out.print(f"  {f.subject}: {t}", highlight=False)
    details = report.details.get("weights", {})
    comps = details.get("components", {})
    independent = [c for c, v in comps.items() if not v.get("verdicts") and not v.get("weak_only")]
    if independent and weights:
        out.print("independent of every reference: " + ", ".join(sorted(independent)), highlight=False)
    b = details.get("bytes")
    if b:
        out.print(f"read {b['read_for_sketches'] / b['checkpoint']:.1%} of {b['checkpoint']:,} checkpoint bytes for "
                  f"sketches; {b['read_total']:,} bytes in all, with full reads confirming exact copies", highlight=False)
