"""`provenance scan CHECKPOINT`: which components come from which reference model, with statistics."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from provenance.atomic import atomic_write
from provenance.findings import ScanReport
from provenance.policy import apply_policy, load_declaration, load_policy
from provenance.report import to_json, write_reports
from provenance.scan import scan

from .policy_cmd import policy_options, print_result


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
              help="Write the scan report as JSON to this file (schema: docs/schema/report.schema.json).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, writable=True), default=None,
              help="Write every report format (JSON, HTML, Markdown, CycloneDX, SARIF, SPDX) into this folder.")
@policy_options(required=False)
@click.option("--no-hash", is_flag=True, help="Skip the sha256 of the checkpoint files.")
@click.option("--no-verify", is_flag=True, help="Do not read near-identical tensors in full to confirm exact copies.")
@click.pass_context
def command(ctx: click.Context, checkpoint: str, index_dir: str | None, json_out: str | None, report_dir: str | None,
            policy_name: str | None, declaration: str | None, fail_on: str, home_country: str | None,
            no_hash: bool, no_verify: bool) -> None:
    """Find which parts of CHECKPOINT come from which reference model, per component.

    Weights always; the tokenizer and shipped modelling code (*.py, *.cu, *.cpp) when present. With
    --policy (and --declaration) the findings are judged.

    Exit status: 0 pass (or no policy given), 1 policy failure (see --fail-on), 2 bad input,
    3 nothing scannable.
    """
    # load the policy and declaration first: a malformed file fails before minutes of reading
    policy = load_policy(policy_name) if policy_name else None
    declared = load_declaration(declaration) if declaration else None
    with progress_bar("reading weights") as update:
        report = scan(checkpoint, index_dir, progress=update, verify_exact=not no_verify, hash_files=not no_hash)
    result = apply_policy(report, policy, declared, home_country=home_country) if policy else None
    if report_dir:
        write_reports(report, report_dir)
    if json_out:
        with atomic_write(json_out) as handle:
            handle.write(to_json(report))
    print_report(report)
    if result is not None:
        print_result(result, _stdout())
        ctx.exit(result.exit_code(fail_on))


def _stdout() -> Console:
    return Console(file=sys.stdout, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def print_report(report: ScanReport) -> None:
    """The weights findings as a terminal table, one row per component and reference."""
    out = _stdout()
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
                  f"sketches; {b['read_total']:,} bytes in all, with full reads confirming exact copies and "
                  f"matching neurons", highlight=False)
