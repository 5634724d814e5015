"""`modelprov scan CHECKPOINT`: which components come from which reference model, with statistics."""

from __future__ import annotations

import click
from rich.table import Table

from modelprov import atomic_write
from modelprov.code import describe_tags
from modelprov.findings import ScanReport
from modelprov.policy import apply_policy, load_declaration, load_policy
from modelprov.report import to_json, write_reports
from modelprov.scan import scan

from ._common import index_option, policy_options, print_policy_result, progress, stdout


@click.command(name="scan")
@click.argument("checkpoint")
@index_option()
@click.option("--json", "json_out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the scan report as JSON to this file (schema: docs/schema/report.schema.json).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, writable=True), default=None,
              help="Write every report format (JSON, HTML, Markdown, CycloneDX, SARIF, SPDX) into this folder.")
@policy_options(required=False)
@click.option("--no-hash", is_flag=True, help="Skip the sha256 of the checkpoint files.")
@click.option("--no-verify", is_flag=True, help="Do not read near-identical tensors in full to confirm exact copies.")
@click.pass_context
def command(ctx: click.Context, checkpoint: str, index_dir, json_out: str | None, report_dir: str | None,
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
    with progress("reading weights") as feed:
        report = scan(checkpoint, index_dir, progress=feed.items, verify_exact=not no_verify, hash_files=not no_hash)
    result = apply_policy(report, policy, declared, home_country=home_country) if policy else None
    if report_dir:
        write_reports(report, report_dir)
    if json_out:
        with atomic_write(json_out) as handle:
            handle.write(to_json(report))
    print_report(report)
    if result is not None:
        print_policy_result(result, stdout())
        ctx.exit(result.exit_code(fail_on))


def print_report(report: ScanReport) -> None:
    """The weights findings as a terminal table, one row per component and reference."""
    out = stdout()
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
    print_code(report)
    b = details.get("bytes")
    if b:
        out.print(f"read {b['read_for_sketches'] / b['checkpoint']:.1%} of {b['checkpoint']:,} checkpoint bytes for "
                  f"sketches; {b['read_total']:,} bytes in all, with full reads confirming exact copies and "
                  f"matching neurons", highlight=False)


def print_code(report: ScanReport) -> None:
    """Per scanned source file: the nearest source files (family, organisation, licence) and the unmet duties."""
    code = report.details.get("code") or {}
    out = stdout()
    for file in code.get("files", []):
        sources = file.get("sources") or []
        if not sources:
            continue
        out.print(f"[bold]code[/bold] {file['path']}: {file['coverage']:.0%} of {file['tokens']:,} tokens match "
                  "reference code; nearest sources:", highlight=False)
        for src in sources:
            out.print(f"  {src['reference']} {src['path']}{describe_tags(src.get('tags'))}: {src['functions']} "
                      f"functions, {src['share']:.0%} of the matched code", highlight=False)
        duties = sorted({o["obligation"] for m in file.get("matches", []) for o in m.get("license_obligations", [])
                         if o.get("met") is False})
        for duty in duties:
            out.print(f"  unmet: {duty}", highlight=False)
