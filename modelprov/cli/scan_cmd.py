"""`modelprov scan CHECKPOINT`: which components come from which reference model, with statistics."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Group, RenderableType
from rich.text import Text

from modelprov import atomic_write

from ._common import VERDICT_STYLES, follow_symlinks_option, index_option, plain_table, policy_options, print_policy_result, progress, stdout


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
@follow_symlinks_option()
@click.pass_context
def command(ctx: click.Context, checkpoint: str, index_dir, json_out: str | None, report_dir: str | None,
            policy_name: str | None, declaration: str | None, fail_on: str, home_country: str | None,
            no_hash: bool, no_verify: bool, no_follow_symlinks: bool) -> None:
    """Find which parts of CHECKPOINT come from which reference model, per component.

    Weights always; the tokenizer and shipped modelling code (*.py, *.cu, *.cpp) when present. With
    --policy (and --declaration) the findings are judged.

    Exit status: 0 pass (or no policy given), 1 policy failure (see --fail-on), 2 bad input,
    3 nothing scannable.
    """
    from modelprov.policy import apply_policy, load_declaration, load_policy  # on use: --help stays fast
    from modelprov.report import to_json, write_reports  # on use: --help stays fast
    from modelprov.scan import scan  # on use: --help stays fast
    # load the policy and declaration first: a malformed file fails before minutes of reading
    policy = load_policy(policy_name) if policy_name else None
    declared = load_declaration(declaration) if declaration else None
    with progress("scan") as feed:
        report = scan(checkpoint, index_dir, progress=feed.stages, verify_exact=not no_verify, hash_files=not no_hash,
                      follow_symlinks=not no_follow_symlinks)
    result = apply_policy(report, policy, declared, home_country=home_country) if policy else None
    if report_dir:
        write_reports(report, report_dir)
    if json_out:
        with atomic_write(json_out) as handle:
            handle.write(to_json(report))
    print_report(report.to_dict())
    if result is not None:
        print_policy_result(result, stdout())
        ctx.exit(result.exit_code(fail_on))


def print_report(data: dict[str, Any]) -> None:
    """What the scan found (`ScanReport.to_dict()`), one table per kind of evidence (weights, tokenizer, code),
    each with its verdicts, then what the weights scan read."""
    from modelprov.report import bytes_statement  # on use: --help stays fast
    out = stdout()
    subject, idx = data["subject"], data.get("index") or {}
    count = f" ({idx['references']} references)" if "references" in idx else ""
    out.print(Text(f"{subject['path']}: {subject['parameter_count']:,} parameters; "
                   f"index {idx.get('name')} v{idx.get('version')}{count}", style="bold"))
    details = data.get("details") or {}
    shortlist = (details.get("weights") or {}).get("retrieval")
    if shortlist is not None:
        names = shortlist.get("references", [])
        out.print(Text(f"shortlist: {len(names)} of {shortlist.get('indexed_references')} references retrieved by "
                       f"signature and verified" + (f" ({', '.join(names)})" if names else "")))
    for section in (weights_table(data), tokenizer_table(data), code_table(data)):
        out.print(section)
    for line in code_sources(data):
        out.print(Text(line))
    for f in data["findings"]:
        if f["kind"] == "weights" and f["transformations"]:
            out.print(Text(f"  {f['subject']} vs {f['reference']['name']}: {'; '.join(f['transformations'])}"))
    for line in probability_lines(data):
        out.print(Text(line))
    for line in claims_lines(data):
        out.print(Text(line))
    counts = (details.get("weights") or {}).get("bytes")
    if counts:
        out.print(Text(bytes_statement(counts)))


def probability_lines(data: dict[str, Any]) -> list[str]:
    """Per weights finding: its calibrated probability of reuse, band and calibration sample."""
    from modelprov.report import probability_words  # on use: --help stays fast
    out = []
    for f in data["findings"]:
        words = probability_words((f.get("statistics") or {}).get("probability")) if f["kind"] == "weights" else None
        if words:
            out.append(f"  {f['subject']} vs {f['reference']['name']}: {words}")
    return out


def claims_lines(data: dict[str, Any]) -> list[str]:
    """The model card's claims the weights contradict, an unreadable card, and the front matter to publish."""
    claims = (data.get("details") or {}).get("claims") or {}
    out = [f"model card: {claims['error']}"] if claims.get("error") else []
    out += [f"model card contradicted: {f['summary']}" for f in data["findings"] if f["kind"] == "claim"]
    text = claims.get("suggested_front_matter_text")
    if text:
        out.append("front matter the findings support (README.md):\n" + text.rstrip("\n"))
    return out


def _verdict(verdict: str) -> Text:
    return Text(verdict, style=VERDICT_STYLES.get(verdict, ""))


def weights_table(data: dict[str, Any]) -> RenderableType:
    """Weights: a row per finding, and per component no reference explains (with its closest reference)."""
    from modelprov.report import fmt_p, fmt_share, fmt_similarity  # on use: --help stays fast
    table = plain_table("component", "verdict", "reference", "layers", "centred", "p-value", "params",
                        title="weights", numbers=("layers", "centred", "p-value", "params"), keep=("verdict",))
    covered: set[str] = set()
    for f in (f for f in data["findings"] if f["kind"] == "weights"):
        s = f["statistics"]
        covered.update(s.get("components") or [f["subject"]])
        layers = f"{s['layers_matched']}/{s['layers_total']}" if s.get("layers_total") else "-"
        table.add_row(f["subject"], _verdict(f["verdict"]), f["reference"]["name"], layers,
                      fmt_similarity(s.get("centred_similarity")), fmt_p(s.get("log10_p"), say_floor=False),
                      fmt_share(f["parameter_share"]))
    components = ((data.get("details") or {}).get("weights") or {}).get("components") or {}
    independent = [(name, c) for name, c in sorted(components.items()) if name not in covered and not c.get("weak_only")]
    for name, c in independent:
        closest = c.get("closest") or {}
        best = closest.get("max_centred_similarity")
        table.add_row(name, _verdict("independent"), closest.get("reference", "-"), "-",
                      "-" if best is None else f"max {fmt_similarity(best)}", "-", fmt_share(c.get("share")))
    if not table.rows:
        return Text("weights: nothing to compare")
    if not independent:
        return table
    note = Text("independent: no reference explains the component; its row shows the closest reference and the "
                "largest centred similarity over every tensor pair compared", style="dim")
    return Group(table, note)


def tokenizer_table(data: dict[str, Any]) -> RenderableType:
    """Tokenizer: a row per reference tokenizer compared, with its verdict."""
    from modelprov.report import fmt_share, fmt_similarity  # on use: --help stays fast
    details = (data.get("details") or {}).get("tokenizer")
    if details is None:
        return Text("tokenizer: not scanned")
    rows = details.get("comparisons") or []
    if not rows:
        return Text(f"tokenizer: {details.get('reason') or 'no reference tokenizer to compare with'}")
    table = plain_table("reference", "verdict", "Jaccard", "subj. in ref.", "ref. in subj.", "same id",
                        title=f"tokenizer {details.get('tokenizer')}", keep=("verdict",),
                        numbers=("Jaccard", "subj. in ref.", "ref. in subj.", "same id"))
    for row in rows:
        table.add_row(str(row.get("reference")), _verdict(str(row.get("verdict"))),
                      fmt_similarity(row.get("jaccard")), fmt_share(row.get("suspect_in_reference")),
                      fmt_share(row.get("reference_in_suspect")), fmt_share(row.get("id_agreement")))
    return table


def code_table(data: dict[str, Any]) -> RenderableType:
    """Code: a row per function found in reference code, with its verdict and unmet licence duties."""
    from modelprov.report import fmt_share  # on use: --help stays fast
    details = (data.get("details") or {}).get("code")
    if details is None:
        return Text("code: not scanned (no source files beside the weights, or no code references in the index)")
    findings = [f for f in data["findings"] if f["kind"] == "code"]
    if not findings:
        return Text(f"code: {len(details.get('files') or [])} files scanned; no function matches reference code")
    table = plain_table("function", "verdict", "reference", "matched", "unmet obligations", title="code",
                        numbers=("matched",), keep=("verdict",))
    for f in findings:
        unmet = [o["obligation"] for o in f.get("license_obligations") or [] if o.get("met") is False]
        table.add_row(f["subject"], _verdict(f["verdict"]), f["reference"]["name"],
                      fmt_share((f.get("statistics") or {}).get("similarity")), "; ".join(unmet) or "-")
    return table


def code_sources(data: dict[str, Any]) -> list[str]:
    """Per scanned source file: the reference files it was most likely copied from (family, organisation,
    licence), then the licence duties its matches leave unmet."""
    from modelprov.code import describe_tags  # on use: --help stays fast
    lines = []
    for file in ((data.get("details") or {}).get("code") or {}).get("files", []):
        sources = file.get("sources") or []
        if not sources:
            continue
        lines.append(f"code {file['path']}: {file['coverage']:.0%} of {file['tokens']:,} tokens match reference "
                     "code; nearest sources:")
        lines += [f"  {src['reference']} {src['path']}{describe_tags(src.get('tags'))}: {src['functions']} functions, "
                  f"{src['share']:.0%} of the matched code" for src in sources]
        duties = sorted({o["obligation"] for m in file.get("matches", []) for o in m.get("license_obligations", [])
                         if o.get("met") is False})
        lines += [f"  unmet: {duty}" for duty in duties]
    return lines
