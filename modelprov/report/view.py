"""What the human-readable reports show, computed once from the report dict for the HTML and Markdown templates.

Renderers stay dumb: this module decides order (summary verdict first, worst findings first), picks the
statistics a reviewer needs, and turns per-area `details` into tables, matrices and code sides. Shapes it
does not recognise are kept as generic key/value rows, so nothing a scanner records is silently dropped.
"""

from __future__ import annotations

import shlex
import statistics
from dataclasses import dataclass, field
from typing import Any

from modelprov import DISTRIBUTION
from modelprov.code import describe_tags

from .plots import heatmap_svg, layer_curve_svg

PROGRAM = "modelprov"  # the console script

OUTCOMES = ("PASS", "WARN", "REVIEW", "FAIL")
# How much a verdict says about reuse, for ordering findings worst-first.
VERDICT_WEIGHT = {"copied": 5, "identical": 5, "derived": 4, "extended": 3, "pruned": 3, "modified": 2,
                  "unrelated": 0, "independent": 0}
# Statistics shown in the findings table, in this order, when present.
KEY_STATISTICS = ("centred_similarity", "raw_cosine", "n", "z", "log10_p", "p_value", "layers_matched", "layers_total",
                  "exact_parameter_share", "jaccard", "shared_tokens", "suspect_tokens", "reference_tokens",
                  "id_agreement", "similarity", "subject_coverage", "matched_tokens", "lexical_identity")
# Columns of the tokenizer comparison table (dotted keys reach into nested dicts).
TOKENIZER_COLUMNS = ("reference", "verdict", "jaccard", "shared_tokens", "suspect_tokens", "reference_tokens",
                     "suspect_in_reference", "reference_in_suspect", "id_agreement", "merges.rank_correlation",
                     "merges.common_prefix", "special_tokens.shared")
MAX_HEATMAPS = 24


@dataclass
class Summary:
    outcome: str | None  # policy overall, or None when no policy was applied
    headline: str
    lines: list[str]


@dataclass
class CodeLine:
    number: int
    text: str


@dataclass
class CodeRegion:
    index: int
    tokens: int | None
    subject: list[CodeLine]
    reference: list[CodeLine]


@dataclass
class CodeMatch:
    subject: str  # path::qualname
    reference: str  # name@version
    reference_unit: str  # path::qualname of the nearest source
    verdict: str
    statistics: list[tuple[str, Any]]
    rename_map: dict[str, str]
    regions: list[CodeRegion]
    reference_facts: str = ""  # family, organisation, country, licence of the nearest source
    origin: str = ""  # canonical origin (earliest author), when it differs from the nearest source


@dataclass
class Heatmap:
    title: str
    reference: str
    suspect_stack: str
    reference_stack: str
    max_value: float
    svg: str = ""


@dataclass
class WeakMatches:
    """Norm weights and biases against one reference: raw cosine beside centred similarity, never evidence."""

    reference: str
    rows: list[dict[str, Any]]
    median_raw_cosine: float | None
    median_centred: float | None


@dataclass
class WeightFinding:
    finding: dict[str, Any]
    layers: list[dict[str, Any]]
    columns: list[str]
    curve_svg: str = ""


@dataclass
class ReportView:
    title: str
    summary: Summary
    report: dict[str, Any]
    findings: list[dict[str, Any]]
    key_statistics: dict[str, list[tuple[str, Any]]]
    components: list[dict[str, Any]]
    weight_findings: list[WeightFinding]
    heatmaps: list[Heatmap]
    heatmaps_omitted: int
    weak_matches: list[WeakMatches]
    weights_other: list[tuple[str, Any]]
    tokenizer_findings: list[dict[str, Any]]
    tokenizer_comparisons: list[dict[str, Any]]
    tokenizer_details: list[tuple[str, Any]]
    code_matches: list[CodeMatch]
    code_other: list[tuple[str, Any]]
    obligations: list[dict[str, Any]]
    policy_rules: list[dict[str, Any]]
    reproduce: list[str]
    extra_details: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)


def fmt(value: Any) -> str:
    """A number or value as a reviewer reads it: 4 significant digits, p-values in scientific notation."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 1e-3 or abs(value) >= 1e6:
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in sorted(value.items()))
    return str(value)


def fmt_lines(value: Any) -> str:
    """A line range `[first, last]` as `first–last` (a single line as itself)."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return str(value[0]) if value[0] == value[1] else f"{value[0]}–{value[1]}"
    return fmt(value)


def fmt_share(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def fmt_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def rule_outcome(rule: dict[str, Any]) -> str:
    """A policy rule's PASS/WARN/REVIEW/FAIL, whichever key the policy engine used."""
    for key in ("outcome", "status", "verdict"):
        if isinstance(rule.get(key), str):
            return rule[key].upper()
    return "REVIEW"


def _severity(finding: dict[str, Any]) -> tuple:
    return (-VERDICT_WEIGHT.get(finding["verdict"], 1), -(finding.get("parameter_share") or 0.0), finding["id"])


def _summary(report: dict[str, Any], findings: list[dict[str, Any]]) -> Summary:
    policy = report.get("policy")
    reused = [f for f in findings if VERDICT_WEIGHT.get(f["verdict"], 1) > 0]
    lines = []
    for f in reused:
        share = f" ({fmt_share(f['parameter_share'])} of parameters)" if f.get("parameter_share") else ""
        lines.append(f"{f['kind']}: {f['subject']} is {f['verdict']} from {f['reference']['name']}{share}")
    if not findings:
        lines.append("No findings: nothing in the subject matched the reference index.")
    elif not reused:
        lines.append(f"All {len(findings)} findings are independent of their references.")
    if policy:
        outcome = str(policy.get("overall", "REVIEW")).upper()
        name = policy.get("name") or "policy"
        failing = [r for r in policy.get("rules", []) if rule_outcome(r) != "PASS"]
        headline = f"{outcome}: {name}"
        if failing:
            worst = max(failing, key=lambda r: OUTCOMES.index(rule_outcome(r)) if rule_outcome(r) in OUTCOMES else 0)
            reason = worst.get("reason") or worst.get("message") or worst.get("id") or ""
            headline += f" — {reason}" if reason else ""
        return Summary(outcome, headline, lines)
    headline = f"{len(reused)} of {len(findings)} findings show reuse; no policy was applied"
    return Summary(None, headline, lines)


def _key_statistics(finding: dict[str, Any]) -> list[tuple[str, Any]]:
    stats = finding.get("statistics") or {}
    keys = [k for k in KEY_STATISTICS if not (k == "p_value" and "log10_p" in stats)]
    shown = [(k, stats[k]) for k in keys if k in stats and not isinstance(stats[k], (list, dict))]
    return shown or [(k, v) for k, v in sorted(stats.items()) if not isinstance(v, (list, dict))][:6]


def _without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


def _is_matrix(value: Any) -> bool:
    return (isinstance(value, list) and len(value) >= 1 and all(isinstance(r, list) and r for r in value)
            and all(isinstance(x, (int, float)) or x is None for r in value for x in r))


def dotted(data: dict[str, Any], key: str) -> Any:
    """`data["a"]["b"]` for key "a.b"; None when any step is missing."""
    for part in key.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _components(weights: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-component rows: parameters, share, verdicts, closest reference and its best centred similarity."""
    comps = weights.get("components")
    if not isinstance(comps, dict):
        return []
    rows = []
    for name, c in comps.items():
        if not isinstance(c, dict):
            continue
        closest = c.get("closest") if isinstance(c.get("closest"), dict) else {}
        rows.append({"component": name, "parameters": c.get("parameters"), "share": c.get("share"),
                     "verdicts": c.get("verdicts") or {}, "closest": closest.get("reference"),
                     "max_centred_similarity": closest.get("max_centred_similarity")})
    return sorted(rows, key=lambda r: (-(r["parameters"] or 0), r["component"]))


def _heatmaps(weights: dict[str, Any]) -> list[Heatmap]:
    """One layer x layer matrix per (reference, suspect stack, reference stack), strongest first."""
    out = []
    for entry in weights.get("references", []) if isinstance(weights.get("references"), list) else []:
        if not isinstance(entry, dict):
            continue
        for st in entry.get("stacks", []):
            matrix = st.get("block_similarity") if isinstance(st, dict) else None
            if not _is_matrix(matrix):
                continue
            peak = max((x for row in matrix for x in row if x is not None), default=0.0)
            suspect, reference = str(st.get("suspect_stack", "?")), str(st.get("reference_stack", "?"))
            out.append(Heatmap(f"{suspect} vs {entry.get('reference', '?')} {reference}", str(entry.get("reference", "?")),
                               suspect, reference, float(peak)))
    return sorted(out, key=lambda h: (-h.max_value, h.title))


def _weak_matches(weights: dict[str, Any]) -> list[WeakMatches]:
    out = []
    for entry in weights.get("references", []) if isinstance(weights.get("references"), list) else []:
        rows = [r for r in entry.get("weak_matches", []) if isinstance(r, dict)] if isinstance(entry, dict) else []
        if not rows:
            continue
        raw = [r["raw_cosine"] for r in rows if isinstance(r.get("raw_cosine"), (int, float))]
        centred = [r["centred"] for r in rows if isinstance(r.get("centred"), (int, float))]
        out.append(WeakMatches(str(entry.get("reference", "?")), rows,
                               statistics.median(raw) if raw else None, statistics.median(centred) if centred else None))
    return out


def _layer_rows(finding: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    layers = [row for row in (finding.get("statistics") or {}).get("per_layer", []) if isinstance(row, dict)]
    columns: list[str] = []
    for row in layers:
        columns += [k for k, v in row.items() if k not in columns and not isinstance(v, (list, dict))]
    return layers, columns


def _tokenizer_comparisons(tokenizer: dict[str, Any]) -> list[dict[str, Any]]:
    rows = tokenizer.get("comparisons")
    if not isinstance(rows, list):
        return []
    return [{key: dotted(row, key) for key in TOKENIZER_COLUMNS} for row in rows if isinstance(row, dict)]


def flat_statistics(stats: dict[str, Any]) -> list[tuple[str, Any]]:
    """Statistics as rows, nested dicts flattened one level (`merges.common_prefix`), long lists left out."""
    rows = []
    for key, value in sorted(stats.items()):
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", v) for k, v in sorted(value.items()) if not isinstance(v, (dict, list)) or
                     (isinstance(v, list) and len(v) <= 20)]
        elif not isinstance(value, list) or len(value) <= 20 and all(not isinstance(v, (dict, list)) for v in value):
            rows.append((key, value))
    return rows


def _code_lines(text: Any, first: Any) -> list[CodeLine]:
    start = first if isinstance(first, int) else 1
    return [CodeLine(start + i, line) for i, line in enumerate(str(text or "").split("\n"))]


def _code_matches(code: dict[str, Any]) -> list[CodeMatch]:
    """Matched functions of the code scan, each region with both sides' verbatim lines."""
    out = []
    files = code.get("files") if isinstance(code.get("files"), list) else []
    for f in files:
        for m in f.get("matches", []) if isinstance(f, dict) else []:
            if not isinstance(m, dict):
                continue
            regions = []
            for i, g in enumerate(r for r in m.get("regions", []) if isinstance(r, dict)):
                s_lines, r_lines = g.get("subject_lines") or [1], g.get("reference_lines") or [1]
                regions.append(CodeRegion(i, g.get("tokens"), _code_lines(g.get("subject_text"), s_lines[0]),
                                          _code_lines(g.get("reference_text"), r_lines[0])))
            subject = m.get("subject") or f"{m.get('subject_path', f.get('path', '?'))}::{m.get('subject_qualname', '?')}"
            stats = [(k, m[k]) for k in ("similarity", "subject_coverage", "matched_tokens", "evidence_tokens",
                                         "lexical_identity", "subject_lines", "reference_lines") if k in m]
            out.append(CodeMatch(
                subject=str(subject), reference=str(m.get("reference", "?")),
                reference_unit=f"{m.get('reference_path', '?')}::{m.get('reference_qualname', '?')}",
                verdict=str(m.get("verdict", "")), statistics=stats,
                rename_map=m.get("rename_map") if isinstance(m.get("rename_map"), dict) else {}, regions=regions,
                reference_facts=describe_tags(m.get("reference_tags") if isinstance(m.get("reference_tags"), dict) else {}),
                origin=str(m["origin"]) + describe_tags(m.get("origin_tags") if isinstance(m.get("origin_tags"), dict) else {})
                if m.get("origin") and m.get("origin") != m.get("nearest") else "",
            ))
    return sorted(out, key=lambda c: (-VERDICT_WEIGHT.get(c.verdict, 1), c.subject))


def _obligations(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """License obligations across findings, one row per distinct duty, listing the findings that raise it."""
    rows: dict[tuple, dict[str, Any]] = {}
    for f in findings:
        for o in f.get("license_obligations", []):
            key = (o["license"], o["obligation"], o["met"], o.get("detail", ""))
            rows.setdefault(key, {**o, "findings": []})["findings"].append(f["id"])
    return sorted(rows.values(), key=lambda o: ({False: 0, None: 1, True: 2}[o["met"]], o["license"], o["obligation"]))


def reproduce_commands(report: dict[str, Any]) -> list[str]:
    """Shell commands that re-check this report: install the same tool, verify the files, then re-run the scan
    with the options it was run with (index, policy, declaration, home country, skipped checks)."""
    path = _shell_quote(report["subject"]["path"])
    options = (report.get("parameters") or {}).get("scan") or {}
    policy = report.get("policy") or {}
    scan = [f"{PROGRAM} scan {path}"]
    if options.get("index"):
        scan.append(f"--index {_shell_quote(options['index'])}")
    if policy.get("source"):
        scan.append(f"--policy {_shell_quote(policy['source'])}")
    if policy.get("declaration"):
        scan.append(f"--declaration {_shell_quote(policy['declaration'])}")
    if policy.get("home_country"):
        scan.append(f"--home-country {_shell_quote(policy['home_country'])}")
    if options.get("verify_exact") is False:
        scan.append("--no-verify")
    if options.get("hash_files") is False:
        scan.append("--no-hash")
    scan.append("--report REPORT_DIR")
    return [f"pip install torch==2.13.0 '{DISTRIBUTION}=={report.get('tool_version', '')}'  # the CPU build of torch first",
            f"{PROGRAM} report verify report.json {path}",
            " ".join(scan)]


def _shell_quote(text: str) -> str:
    return shlex.quote(text)


def build_view(report: dict[str, Any], *, with_plots: bool = True) -> ReportView:
    """Everything the HTML and Markdown templates show, in reading order."""
    findings = sorted(report.get("findings", []), key=_severity)
    details = report.get("details") or {}
    weights_details = details.get("weights") or {}
    tokenizer_details = details.get("tokenizer") or {}
    code_details = details.get("code") or {}
    weight_findings = [WeightFinding(f, *_layer_rows(f)) for f in findings if f["kind"] == "weights"]
    heatmaps = _heatmaps(weights_details)
    omitted = max(0, len(heatmaps) - MAX_HEATMAPS)
    heatmaps = heatmaps[:MAX_HEATMAPS]
    if with_plots:
        matrices = {(e.get("reference"), st.get("suspect_stack"), st.get("reference_stack")): st["block_similarity"]
                    for e in weights_details.get("references", []) for st in e.get("stacks", [])
                    if isinstance(st, dict) and _is_matrix(st.get("block_similarity"))}
        for h in heatmaps:
            h.svg = heatmap_svg(matrices[(h.reference, h.suspect_stack, h.reference_stack)],
                                title=f"{h.title}: centred similarity", xlabel=f"{h.reference} {h.reference_stack} layer",
                                ylabel=f"{h.suspect_stack} layer")
        for w in weight_findings:
            curves = {k: [row.get(k) for row in w.layers] for k in ("centred_similarity", "raw_cosine") if k in w.columns}
            if curves and len(w.layers) >= 2:
                w.curve_svg = layer_curve_svg(curves, title=f"{w.finding['subject']} vs {w.finding['reference']['name']}",
                                              xlabel="matched layer (in order)")
    policy = report.get("policy") or {}
    rules = [dict(r, outcome=rule_outcome(r)) for r in policy.get("rules", []) if isinstance(r, dict)]
    rules.sort(key=lambda r: -OUTCOMES.index(r["outcome"]) if r["outcome"] in OUTCOMES else 0)  # worst first, stable
    extra = {name: flat_statistics(value) for name, value in sorted(details.items())
             if name not in ("weights", "tokenizer", "code") and isinstance(value, dict)}
    return ReportView(
        title=f"Provenance report: {report['subject']['path']}",
        summary=_summary(report, findings), report=report, findings=findings,
        key_statistics={f["id"]: _key_statistics(f) for f in findings},
        components=_components(weights_details), weight_findings=weight_findings, heatmaps=heatmaps,
        heatmaps_omitted=omitted, weak_matches=_weak_matches(weights_details),
        weights_other=flat_statistics(_without(weights_details, "components", "references")),
        tokenizer_findings=[f for f in findings if f["kind"] == "tokenizer"],
        tokenizer_comparisons=_tokenizer_comparisons(tokenizer_details),
        tokenizer_details=flat_statistics(_without(tokenizer_details, "comparisons")),
        code_matches=_code_matches(code_details),
        code_other=flat_statistics(_without(code_details, "files", "findings", "references", "subject_licenses")),
        obligations=_obligations(findings), policy_rules=rules, reproduce=reproduce_commands(report),
        extra_details=extra,
    )
