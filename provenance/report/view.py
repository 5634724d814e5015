"""What the human-readable reports show, computed once from the report dict for the HTML and Markdown templates.

Renderers stay dumb: this module decides order (summary verdict first, worst findings first), picks the
statistics a reviewer needs, and turns per-area `details` into tables, matrices and code sides. Shapes it
does not recognise are kept as generic key/value rows, so nothing a scanner records is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

OUTCOMES = ("PASS", "WARN", "REVIEW", "FAIL")
# How much a verdict says about reuse, for ordering findings worst-first.
VERDICT_WEIGHT = {"copied": 5, "identical": 5, "derived": 4, "extended": 3, "pruned": 3, "modified": 2,
                  "unrelated": 0, "independent": 0}
# Statistics shown in the findings table, in this order, when present.
KEY_STATISTICS = ("centred_similarity", "centred", "pearson", "raw_cosine", "n", "z", "p_value", "combined_p_value",
                  "layers_matched", "jaccard", "shared_tokens", "added_tokens", "similarity", "matched_tokens")


@dataclass
class Summary:
    outcome: str | None  # policy overall, or None when no policy was applied
    headline: str
    lines: list[str]


@dataclass
class CodeLine:
    number: int
    text: str
    region: int | None  # index of the matched region this line belongs to


@dataclass
class CodeMatch:
    title: str
    subject_file: str
    reference_file: str
    reference: str
    verdict: str
    similarity: float | None
    regions: list[dict[str, Any]]
    subject_lines: list[CodeLine]
    reference_lines: list[CodeLine]


@dataclass
class WeightComponent:
    component: str
    reference: str
    verdict: str
    statistic: str
    layers: list[dict[str, Any]]
    columns: list[str]
    matrix: list[list[Any]] | None
    heatmap_svg: str = ""
    curve_svg: str = ""


@dataclass
class ReportView:
    title: str
    summary: Summary
    report: dict[str, Any]
    findings: list[dict[str, Any]]
    key_statistics: dict[str, list[tuple[str, Any]]]
    weights: list[WeightComponent]
    weights_other: list[tuple[str, Any]]
    tokenizer_findings: list[dict[str, Any]]
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
    shown = [(k, stats[k]) for k in KEY_STATISTICS if k in stats and not isinstance(stats[k], (list, dict))]
    return shown or [(k, v) for k, v in sorted(stats.items()) if not isinstance(v, (list, dict))][:6]


def _scalar_rows(data: dict[str, Any], skip: Iterable[str] = ()) -> list[tuple[str, Any]]:
    """Key/value rows for everything small and scalar (or a short list of scalars) in `data`."""
    rows = []
    for key in sorted(set(data) - set(skip)):
        value = data[key]
        if isinstance(value, (str, int, float, bool)) or value is None:
            rows.append((key, value))
        elif isinstance(value, list) and len(value) <= 50 and all(not isinstance(v, (list, dict)) for v in value):
            rows.append((key, value))
    return rows


def _is_matrix(value: Any) -> bool:
    return (isinstance(value, list) and len(value) >= 2 and all(isinstance(r, list) and r for r in value)
            and all(isinstance(x, (int, float)) or x is None for r in value for x in r))


def _matrix_of(entry: dict[str, Any]) -> list[list[Any]] | None:
    for key in ("layer_matrix", "matrix", "layer_by_layer", "similarity_matrix"):
        value = entry.get(key)
        if isinstance(value, dict):
            value = value.get("values")
        if _is_matrix(value):
            return value
    return None


def _weight_components(weights: dict[str, Any]) -> list[WeightComponent]:
    entries = weights.get("components", [])
    if isinstance(entries, dict):  # keyed by component name
        entries = [{"component": name, **entry} for name, entry in sorted(entries.items()) if isinstance(entry, dict)]
    out = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        layers = [row for row in entry.get("layers", []) if isinstance(row, dict)]
        columns: list[str] = []
        for row in layers:
            columns += [k for k, v in row.items() if k not in columns and not isinstance(v, (list, dict))]
        out.append(WeightComponent(
            component=str(entry.get("component") or entry.get("subject") or "?"),
            reference=str(entry.get("reference") or "?"), verdict=str(entry.get("verdict") or ""),
            statistic=str(entry.get("statistic") or "centred"), layers=layers, columns=columns,
            matrix=_matrix_of(entry),
        ))
    return out


def _code_side(text: str, first: int, regions: Sequence[Sequence[int] | None]) -> list[CodeLine]:
    lines = []
    for offset, line in enumerate(text.splitlines()):
        number = first + offset
        region = next((i for i, r in enumerate(regions) if r and r[0] <= number <= r[-1]), None)
        lines.append(CodeLine(number, line, region))
    return lines


def _code_matches(code: dict[str, Any]) -> list[CodeMatch]:
    out = []
    for m in code.get("matches", []) if isinstance(code.get("matches"), list) else []:
        if not isinstance(m, dict):
            continue
        regions = [r for r in m.get("regions", []) if isinstance(r, dict)]
        subject_ranges = [r.get("subject_lines") for r in regions]
        reference_ranges = [r.get("reference_lines") for r in regions]
        subject_file = str(m.get("subject_file", "?"))
        reference_file = str(m.get("reference_file", "?"))
        out.append(CodeMatch(
            title=f"{subject_file} ↔ {m.get('reference', '?')}:{reference_file}",
            subject_file=subject_file, reference_file=reference_file, reference=str(m.get("reference", "?")),
            verdict=str(m.get("verdict", "")), similarity=m.get("similarity"), regions=regions,
            subject_lines=_code_side(str(m.get("subject_text", "")), int(m.get("subject_first_line", 1)), subject_ranges),
            reference_lines=_code_side(str(m.get("reference_text", "")), int(m.get("reference_first_line", 1)),
                                       reference_ranges),
        ))
    return out


def reproduce_commands(report: dict[str, Any]) -> list[str]:
    """Shell commands that re-check this report: verify the files, then re-run the scan with its parameters."""
    path = report["subject"]["path"]
    params = report.get("parameters") or {}
    seed = params.get("seed", params.get("seeds"))
    scan = f"provenance scan {_shell_quote(path)}"
    if isinstance(seed, int):
        scan += f" --seed {seed}"
    return [f"pip install 'model-provenance=={report.get('tool_version', '')}'",
            f"provenance report verify report.json {_shell_quote(path)}",
            f"{scan} --report REPORT_DIR"]


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def build_view(report: dict[str, Any], *, with_plots: bool = True) -> ReportView:
    """Everything the HTML and Markdown templates show, in reading order."""
    findings = sorted(report.get("findings", []), key=_severity)
    details = report.get("details") or {}
    weights_details = details.get("weights") or {}
    tokenizer_details = details.get("tokenizer") or {}
    code_details = details.get("code") or {}
    weights = _weight_components(weights_details)
    if with_plots:
        from .plots import heatmap_svg, layer_curve_svg

        for w in weights:
            if w.matrix:
                w.heatmap_svg = heatmap_svg(w.matrix, title=f"{w.component} vs {w.reference}: {w.statistic} similarity",
                                            xlabel=f"{w.reference} layer", ylabel=f"{w.component} layer")
            curves = {k: [row.get(k) for row in w.layers] for k in ("centred", "raw_cosine") if k in w.columns}
            if curves and len(w.layers) >= 2:
                w.curve_svg = layer_curve_svg(curves, title=f"{w.component} vs {w.reference} per layer")
    obligations = [{"finding": f["id"], **o} for f in findings for o in f.get("license_obligations", [])]
    policy = report.get("policy") or {}
    rules = [dict(r, outcome=rule_outcome(r)) for r in policy.get("rules", []) if isinstance(r, dict)]
    extra = {name: _scalar_rows(value) for name, value in sorted(details.items())
             if name not in ("weights", "tokenizer", "code") and isinstance(value, dict)}
    return ReportView(
        title=f"Provenance report: {report['subject']['path']}",
        summary=_summary(report, findings), report=report, findings=findings,
        key_statistics={f["id"]: _key_statistics(f) for f in findings},
        weights=weights, weights_other=_scalar_rows(weights_details, skip=("components",)),
        tokenizer_findings=[f for f in findings if f["kind"] == "tokenizer"],
        tokenizer_details=_scalar_rows(tokenizer_details),
        code_matches=_code_matches(code_details), code_other=_scalar_rows(code_details, skip=("matches",)),
        obligations=obligations, policy_rules=rules, reproduce=reproduce_commands(report), extra_details=extra,
    )
