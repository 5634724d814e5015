"""What the human-readable reports show, computed once from the report dict for the HTML and Markdown templates.

Renderers stay dumb: this module decides order (summary verdict first, worst findings first), picks the
statistics a reviewer needs, and turns per-area `details` into tables, matrices and code sides. Shapes it
does not recognise are kept as generic key/value rows, so nothing a scanner records is silently dropped.
"""

from __future__ import annotations

import math
import shlex
import statistics
from dataclasses import dataclass, field
from typing import Any

from modelprov import DISTRIBUTION
from modelprov.code import describe_tags
from modelprov.weights.matchers import NEURON_PLACEMENT

from .plots import heatmap_svg, layer_evidence_svg
from .wording import (
    finding_statements, fmt, fmt_lines, fmt_p, fmt_share, fmt_similarity, key_statistics, statistic_label,
    statistic_value, verdict_phrase,
)

PROGRAM = "modelprov"  # the console script

OUTCOMES = ("PASS", "WARN", "REVIEW", "FAIL")
# How much a verdict says about reuse, for ordering findings worst-first.
VERDICT_WEIGHT = {"copied": 5, "identical": 5, "derived": 4, "extended": 3, "pruned": 3, "modified": 2,
                  "unrelated": 0, "independent": 0}
# Columns of the tokenizer comparison table (dotted keys reach into nested dicts).
TOKENIZER_COLUMNS = ("reference", "verdict", "jaccard", "shared_tokens", "suspect_tokens", "reference_tokens",
                     "suspect_in_reference", "reference_in_suspect", "id_agreement", "merges.rank_correlation",
                     "special_tokens.shared")
# Columns of a finding's per-layer table, in this order when present.
LAYER_COLUMNS = ("suspect_stack", "suspect_layer", "reference_stack", "reference_layer", "centred_similarity",
                 "raw_cosine", "n", "tensors", "z", "log10_p")
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
    statistics: list[tuple[str, str]]  # (label, value in its unit)
    rename_map: dict[str, str]
    regions: list[CodeRegion]
    reference_facts: str = ""  # family, organisation, country, licence of the nearest source
    origin: str = ""  # canonical origin (earliest author), when it differs from the nearest source
    anchor: str | None = None  # the id the page gives this match when a finding points at it


@dataclass
class Heatmap:
    title: str
    reference: str
    suspect_stack: str
    reference_stack: str
    max_value: float
    statistic: str = "centred similarity"  # or the share of neurons matched, for stacks neuron matching aligned
    matrix: list[list[float | None]] = field(repr=False, default_factory=list)
    path: list[tuple[int, int]] = field(default_factory=list)  # (row, column) cells the alignment chose
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
    """One (component, reference) weights finding as the page shows its evidence: plain statements, the
    per-layer chart over the null band, the alignment heatmaps of its stacks and the per-layer table."""

    finding: dict[str, Any]
    anchor: str
    statements: list[str]
    layers: list[dict[str, Any]]
    columns: list[tuple[str, str]]  # (key, label)
    heatmaps: list[Heatmap] = field(default_factory=list)
    curve_svg: str = ""
    neuron_layers: int = 0  # layers matched neuron by neuron: drawn without the analytic null band


@dataclass
class RuleLink:
    """A policy rule that judged a finding, and where its row is."""

    rule: str
    outcome: str
    anchor: str


@dataclass
class ReportView:
    title: str
    summary: Summary
    report: dict[str, Any]
    findings: list[dict[str, Any]]
    key_statistics: dict[str, list[tuple[str, str]]]
    evidence_anchor: dict[str, str]  # finding id -> id of the block that shows its evidence
    finding_rules: dict[str, list[RuleLink]]  # finding id -> the rules that did not pass because of it
    statements: dict[str, list[str]]  # finding id -> plain statements
    components: list[dict[str, Any]]
    independent: list[str]  # statements on the components that match no reference
    weight_findings: list[WeightFinding]
    heatmaps: list[Heatmap]  # aligned stacks that belong to no finding
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
        lines.append(f"{f['kind']}: {f['subject']} is {verdict_phrase(f['verdict'])} {f['reference']['name']}{share}")
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


def _finding_of(findings: list[dict[str, Any]], component: str, reference: str) -> dict[str, Any] | None:
    """The weights finding against `reference` that covers `component` (merged findings list theirs)."""
    for f in findings:
        if f["kind"] == "weights" and f["reference"]["name"] == reference and (
                component == f["subject"] or component in ((f.get("statistics") or {}).get("components") or [])):
            return f
    return None


def _components(weights: dict[str, Any], findings: list[dict[str, Any]], anchors: dict[str, str]) -> list[dict[str, Any]]:
    """Per-component rows: parameters, share, verdicts (each linked to its finding's evidence), closest reference
    and its best centred similarity; a component of norm weights or biases only says why it has no closest."""
    comps = weights.get("components")
    if not isinstance(comps, dict):
        return []
    rows = []
    for name, c in comps.items():
        if not isinstance(c, dict):
            continue
        closest = c.get("closest") if isinstance(c.get("closest"), dict) else {}
        verdicts = []
        for ref, verdict in sorted((c.get("verdicts") or {}).items()):
            finding = _finding_of(findings, name, ref)
            verdicts.append({"reference": ref, "verdict": verdict,
                             "anchor": anchors.get(finding["id"]) if finding else None,
                             "within": finding["subject"] if finding and finding["subject"] != name else None})
        note = ("norm weights or biases only: no evidence on their own (they start near a constant), "
                "so no closest reference; a verdict here is that of the finding they belong to"
                if c.get("weak_only") else None)
        rows.append({"component": name, "parameters": c.get("parameters"), "share": c.get("share"),
                     "verdicts": verdicts, "closest": closest.get("reference"), "note": note,
                     "max_centred_similarity": closest.get("max_centred_similarity"), "n": closest.get("n")})
    return sorted(rows, key=lambda r: (-(r["parameters"] or 0), r["component"]))


def _independent(weights: dict[str, Any], findings: list[dict[str, Any]]) -> list[str]:
    """Plain statements on the components no reference explains: how close the closest reference tensor came,
    in null sd, and, for each reference without a finding, its strongest match corrected for every comparison."""
    comps = weights.get("components") if isinstance(weights.get("components"), dict) else {}
    out = []
    for name, c in sorted(comps.items()):
        if not isinstance(c, dict) or c.get("verdicts") or c.get("weak_only"):
            continue
        closest = c.get("closest") if isinstance(c.get("closest"), dict) else None
        if closest is None or not isinstance(closest.get("max_centred_similarity"), (int, float)):
            out.append(f"{name}: no finding; no reference tensor of its roles and shapes to compare with")
            continue
        value, n = closest["max_centred_similarity"], closest.get("n")
        in_sd = f", {value * n ** 0.5:.1f} null sd for n = {n:,}" if isinstance(n, int) and n > 0 else ""
        out.append(f"{name}: no finding; its closest reference tensor ({closest.get('reference_tensor', '?')} of "
                   f"{closest.get('reference', '?')}) has centred similarity {fmt_similarity(value)}{in_sd}, the "
                   "largest over every pair compared (the largest of many independent pairs lies a few sd out)")
    if not out:
        return out
    with_finding = {f["reference"]["name"] for f in findings if f["kind"] == "weights"}
    for entry in weights.get("references", []) if isinstance(weights.get("references"), list) else []:
        score = entry.get("score") if isinstance(entry, dict) else None
        if entry.get("reference") in with_finding or not isinstance(score, dict) or \
                not isinstance(score.get("log10_p"), (int, float)):
            continue
        if score["log10_p"] == 0 and score.get("comparisons") == 1:  # no pair was compared at all
            out.append(f"{entry.get('reference')}: no tensor of a compatible role and shape to compare")
        else:
            out.append(f"{entry.get('reference')}: strongest single tensor match p = {fmt_p(score['log10_p'])} "
                       f"after correcting for {fmt(score.get('comparisons'))} comparisons")
    return out


def _heatmaps(weights: dict[str, Any]) -> list[Heatmap]:
    """One layer x layer matrix per (reference, suspect stack, reference stack), with the cells the alignment
    chose, strongest first."""
    out = []
    for entry in weights.get("references", []) if isinstance(weights.get("references"), list) else []:
        if not isinstance(entry, dict):
            continue
        robust = (entry.get("robust") or {}).get("stacks") if isinstance(entry.get("robust"), dict) else None
        by_neurons = {(r["stack"].get("suspect_stack"), r["stack"].get("reference_stack")) for r in robust or []
                      if isinstance(r, dict) and isinstance(r.get("stack"), dict)}
        for st in entry.get("stacks", []):
            matrix = st.get("block_similarity") if isinstance(st, dict) else None
            if not _is_matrix(matrix):
                continue
            peak = max((x for row in matrix for x in row if x is not None), default=0.0)
            suspect, reference = str(st.get("suspect_stack", "?")), str(st.get("reference_stack", "?"))
            statistic = "share of neurons matched" if (st.get("suspect_stack"), st.get("reference_stack")) in by_neurons \
                else "centred similarity"
            out.append(Heatmap(f"{suspect} vs {entry.get('reference', '?')} {reference}", str(entry.get("reference", "?")),
                               suspect, reference, float(peak), statistic, matrix, _alignment_path(st)))
    return sorted(out, key=lambda h: (-h.max_value, h.title))


def _alignment_path(stack: dict[str, Any]) -> list[tuple[int, int]]:
    """The (row, column) matrix cells of the stack's layer map (suspect layer -> reference layer)."""
    rows = {str(layer): i for i, layer in enumerate(stack.get("suspect_layers") or [])}
    cols = {layer: j for j, layer in enumerate(stack.get("reference_layers") or [])}
    layer_map = stack.get("layer_map") if isinstance(stack.get("layer_map"), dict) else {}
    return [(rows[s], cols[r]) for s, r in layer_map.items() if s in rows and r in cols]


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


def _weight_finding(finding: dict[str, Any], anchor: str) -> WeightFinding:
    """A weights finding's evidence block (plots are drawn later, only for HTML)."""
    layers = [row for row in (finding.get("statistics") or {}).get("per_layer", []) if isinstance(row, dict)]
    present = {k for row in layers for k, v in row.items() if not isinstance(v, (list, dict))}
    keys = [k for k in LAYER_COLUMNS if k in present] + sorted(present - set(LAYER_COLUMNS))
    columns = [(k, statistic_label(k, "weights")) for k in keys]
    rows = [{k: statistic_value(k, row.get(k), "weights") for k in keys} for row in layers]
    neuron = _neuron_layers(finding)
    return WeightFinding(finding, anchor, finding_statements(finding), rows, columns,
                         neuron_layers=sum((r.get("suspect_stack"), r.get("suspect_layer")) in neuron for r in layers))


def _neuron_layers(finding: dict[str, Any]) -> set[tuple[str, int]]:
    """(suspect stack, layer) of the layers whose evidence is neuron matching: their statistic is the median
    correlation of the neurons paired, whose null is measured (docs/weights.md), not N(0, 1/sqrt(n))."""
    stats = finding.get("statistics") or {}
    stacks = {r.get("suspect_stack") for r in stats.get("per_layer", []) if isinstance(r, dict)}
    out = set()
    for m in stats.get("matched_tensors", []):
        if isinstance(m, dict) and str(m.get("placement", "")).startswith(NEURON_PLACEMENT):
            out.update((s, m.get("suspect_layer")) for s in stacks if str(m.get("suspect", "")).startswith(f"{s}."))
    return out


def _layer_curve(finding: dict[str, Any]) -> str:
    """The per-layer chart of a weights finding: centred similarity over the null band, raw cosine lighter."""
    layers = [row for row in (finding.get("statistics") or {}).get("per_layer", []) if isinstance(row, dict)]
    if len(layers) < 2 or not all(isinstance(r.get("centred_similarity"), (int, float)) for r in layers):
        return ""
    # null sd of one tensor's centred similarity: 1/sqrt(entries per tensor) (a layer's n sums its tensors);
    # none for neuron-matched layers, whose statistic has another (measured) null
    neuron = _neuron_layers(finding)
    sd = [math.nan if (r.get("suspect_stack"), r.get("suspect_layer")) in neuron else
          (max(r.get("tensors") or 1, 1) / r["n"]) ** 0.5 if isinstance(r.get("n"), int) and r["n"] > 0 else 0.0
          for r in layers]
    raw = [r.get("raw_cosine") for r in layers] if any("raw_cosine" in r for r in layers) else None
    stacks = {r.get("suspect_stack") for r in layers}
    labels = [str(r.get("suspect_layer", "?")) if len(stacks) == 1 else f"{r.get('suspect_stack')}.{r.get('suspect_layer')}"
              for r in layers]
    return layer_evidence_svg([r["centred_similarity"] for r in layers], raw, sd, labels=labels,
                              title=f"{finding['subject']} vs {finding['reference']['name']}: per layer",
                              xlabel=f"subject layer ({', '.join(sorted(map(str, stacks)))})" if len(stacks) == 1
                              else "subject layer")


def _finding_heatmaps(finding: dict[str, Any], heatmaps: list[Heatmap]) -> list[Heatmap]:
    """The aligned stacks a weights finding rests on: same reference, stacks named in its per-layer rows."""
    stacks = {(r.get("suspect_stack"), r.get("reference_stack"))
              for r in (finding.get("statistics") or {}).get("per_layer", []) if isinstance(r, dict)}
    return [h for h in heatmaps if h.reference == finding["reference"]["name"]
            and (h.suspect_stack, h.reference_stack) in stacks]


def _rule_links(rules: list[dict[str, Any]], anchors: dict[str, str]) -> dict[str, list[RuleLink]]:
    """For each finding, the rules that did not pass because of it (from the rule's issues, else its list)."""
    out: dict[str, list[RuleLink]] = {}
    for rule in rules:
        rid = str(rule.get("id") or rule.get("rule") or rule.get("name") or "")
        issues = [i for i in rule.get("issues", []) if isinstance(i, dict)]
        pairs = [(i.get("finding"), str(i.get("status") or rule["outcome"]).upper()) for i in issues] if issues else \
            [(fid, rule["outcome"]) for fid in rule.get("findings") or []]
        for fid, outcome in pairs:
            links = out.setdefault(str(fid), []) if fid is not None and outcome != "PASS" else None
            if links is not None and all(link.rule != rid for link in links):
                links.append(RuleLink(rid, outcome, anchors[rid]))
    return out


def _tokenizer_comparisons(tokenizer: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per reference tokenizer compared, values in their units (shares as percentages)."""
    rows = tokenizer.get("comparisons")
    if not isinstance(rows, list):
        return []
    return [{key: (str(dotted(row, key)) if key in ("reference", "verdict")
                   else statistic_value(key, dotted(row, key), "tokenizer")) for key in TOKENIZER_COLUMNS}
            for row in rows if isinstance(row, dict)]


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
            stats = [(statistic_label(k, "code"), fmt_lines(m[k]) if k.endswith("_lines") else statistic_value(k, m[k], "code"))
                     for k in ("similarity", "subject_coverage", "matched_tokens", "evidence_tokens",
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
    anchors = {f["id"]: f"evidence-{i}" for i, f in enumerate(findings, 1)}
    details = report.get("details") or {}
    weights_details = details.get("weights") or {}
    tokenizer_details = details.get("tokenizer") or {}
    code_details = details.get("code") or {}
    weight_findings = [_weight_finding(f, anchors[f["id"]]) for f in findings if f["kind"] == "weights"]
    heatmaps = _heatmaps(weights_details)  # strongest first: at most MAX_HEATMAPS are drawn
    omitted, heatmaps = max(0, len(heatmaps) - MAX_HEATMAPS), heatmaps[:MAX_HEATMAPS]
    for w in weight_findings:
        w.heatmaps = _finding_heatmaps(w.finding, heatmaps)
    claimed = {id(h) for w in weight_findings for h in w.heatmaps}
    others = [h for h in heatmaps if id(h) not in claimed]
    if with_plots:
        for h in heatmaps:
            h.svg = _heatmap(h)
        for w in weight_findings:
            w.curve_svg = _layer_curve(w.finding)
    code_matches = _code_matches(code_details)
    for f in findings:
        match = next((m for m in code_matches if f["kind"] == "code" and m.anchor is None and m.subject == f["subject"]
                      and m.reference == f["reference"]["name"]), None)
        if match is not None:
            match.anchor = anchors[f["id"]]
    policy = report.get("policy") or {}
    rules = [dict(r, outcome=rule_outcome(r)) for r in policy.get("rules", []) if isinstance(r, dict)]
    rules.sort(key=lambda r: -OUTCOMES.index(r["outcome"]) if r["outcome"] in OUTCOMES else 0)  # worst first, stable
    for i, rule in enumerate(rules, 1):
        rule["anchor"] = f"rule-{i}"
    rule_anchors = {str(r.get("id") or r.get("rule") or r.get("name") or ""): r["anchor"] for r in rules}
    extra = {name: flat_statistics(value) for name, value in sorted(details.items())
             if name not in ("weights", "tokenizer", "code") and isinstance(value, dict)}
    return ReportView(
        title=f"Provenance report: {report['subject']['path']}",
        summary=_summary(report, findings), report=report, findings=findings,
        key_statistics={f["id"]: key_statistics(f) for f in findings}, evidence_anchor=anchors,
        finding_rules=_rule_links(rules, rule_anchors), statements={f["id"]: finding_statements(f) for f in findings},
        components=_components(weights_details, findings, anchors), independent=_independent(weights_details, findings),
        weight_findings=weight_findings, heatmaps=others, heatmaps_omitted=omitted,
        weak_matches=_weak_matches(weights_details),
        weights_other=flat_statistics(_without(weights_details, "components", "references")),
        tokenizer_findings=[f for f in findings if f["kind"] == "tokenizer"],
        tokenizer_comparisons=_tokenizer_comparisons(tokenizer_details),
        tokenizer_details=flat_statistics(_without(tokenizer_details, "comparisons")),
        code_matches=code_matches,
        code_other=flat_statistics(_without(code_details, "files", "findings", "references", "subject_licenses")),
        obligations=_obligations(findings), policy_rules=rules, reproduce=reproduce_commands(report),
        extra_details=extra,
    )


def _heatmap(h: Heatmap) -> str:
    return heatmap_svg(h.matrix, title=f"{h.statistic}: {h.title}", xlabel=f"{h.reference} {h.reference_stack} layer",
                       ylabel=f"{h.suspect_stack} layer", path=h.path)
