"""Findings from evidence: one finding per (suspect component, reference), merged per reference when several
components match, with per-layer statistics and the transformations seen, in words."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any, Iterable

import numpy as np

from modelprov.findings import Finding, Reference

from ._bank import Pair, ReferenceBank
from .alignment import StackMatch, describe_alignment
from .evidence import Evidence, TensorMatch, WeightThresholds
from .fingerprint import WEAK_ROLES, ModelFingerprint, TensorFingerprint
from .matchers import NEURON_PLACEMENT
from .naming import VOCAB_ROLES
from .similarity import null_sd, similarity, stouffer


def reference_score(matches: list[TensorMatch], bank: ReferenceBank, pairs: list[Pair], ri: int) -> dict[str, Any]:
    """The strongest single piece of evidence for this reference, corrected for every comparison made.

    Present for every reference (with or without a finding), so detection can be scored as a ranking.
    """
    ref_pairs = [p for p in pairs if bank.tensors[p.ref_tensor].ref == ri and bank.tensors[p.ref_tensor].fp.role not in WEAK_ROLES]
    tries = max(len(ref_pairs) + len(matches), 1)
    best = min([similarity(p.centred, p.raw_cosine, p.n).log10_p for p in ref_pairs]
               + [m.similarity.log10_p for m in matches if not m.weak], default=0.0)
    return {"log10_p": min(0.0, best + math.log10(tries)), "comparisons": tries,
            "statistic": "min over compared tensor pairs of the one-sided p, Bonferroni over all comparisons"}


def structure_notes(matches: list[TensorMatch], suspects: list[TensorFingerprint], bank: ReferenceBank,
                    pairs: list[Pair], ri: int, stacks: list[StackMatch], th: WeightThresholds) -> dict[str, list[str]]:
    """Vocabulary growth or shrinkage, quantised storage and MoE upcycling, in words, by suspect component."""
    facts = {s.name: s for s in suspects}
    ref_facts = {t.name: t for t in bank.fingerprints[ri].tensors}
    out: dict[str, list[str]] = {}
    for m in matches:
        if not m.significant or m.role not in VOCAB_ROLES:
            continue
        s, r = facts[m.suspect], ref_facts[m.reference_tensor]
        grown = s.shape[0] - r.shape[0]
        if grown and len(s.shape) == 2 and len(r.shape) == 2:
            what = f"vocabulary {'extended' if grown > 0 else 'reduced'} by {abs(grown):,} tokens ({m.suspect}: {s.shape[0]:,} rows, reference {r.shape[0]:,})"
            out.setdefault(s.component, []).append(what)
    stored: dict[str, dict[str, int]] = {}
    for m in matches:
        dtype = facts[m.suspect].dtype
        if m.significant and dtype not in ("F64", "F32", "F16", "BF16"):
            per = stored.setdefault(facts[m.suspect].component, {})
            per[dtype] = per.get(dtype, 0) + 1
    for comp, dtypes in stored.items():
        out.setdefault(comp, []).extend(f"stored quantised as {d} ({n} tensors)"
                                        for d, n in sorted(dtypes.items(), key=lambda kv: -kv[1]))
    on_path = {(st.suspect_stack, st.suspect_layers[i], st.reference_layers[j])
               for st in stacks for i, j in enumerate(st.mapping) if j is not None}
    experts: dict[tuple[str, int], set[int]] = {}
    for p in pairs:
        rt, s = bank.tensors[p.ref_tensor], suspects[p.suspect]
        if rt.ref != ri or s.expert is None or not rt.fp.role.startswith("mlp") or rt.fp.expert is not None:
            continue
        if (s.stack, s.layer, rt.fp.layer) in on_path and similarity(p.centred, p.raw_cosine, p.n).log10_p <= th.max_log10_p \
                and p.centred >= th.derived_similarity:
            experts.setdefault((s.component, s.layer), set()).add(s.expert)
    by_comp: dict[str, list[int]] = {}
    for (comp, _), found in experts.items():
        by_comp.setdefault(comp, []).append(len(found))
    for comp, counts in by_comp.items():
        if max(counts) >= 2:
            out.setdefault(comp, []).append(
                f"MoE upcycling: the reference's dense MLP found in up to {max(counts)} experts per layer "
                f"({len(counts)} layers)")
    return out


def component_finding(
    ref: Reference, comp: str, ms: list[TensorMatch], evidence: list[TensorMatch], stacks: list[StackMatch],
    comp_params: dict[str, int], comp_layers: dict[str, set[tuple[str, int]]], total_params: int,
    th: WeightThresholds, notes: list[str] = (),
) -> Finding:
    """One finding: suspect component `comp` against reference `ref`, with per-layer statistics."""
    sus_names = {m.suspect for m in ms}
    matched_params: dict[str, int] = {}
    for m in ms:
        if m.significant or (m.weak and m.suspect_layer is not None and m.similarity.centred >= th.derived_similarity):
            matched_params[m.suspect] = matched_params.get(m.suspect, 0) + m.parameters
    n_params = sum(matched_params.values())
    evidence_params = sum(m.parameters for m in evidence)
    exact_params = sum(m.parameters for m in evidence if m.exact)
    copy_params = sum(m.parameters for m in evidence if m.is_copy)
    verdict = "copied" if evidence_params and copy_params / evidence_params >= th.copied_share else "derived"
    storage = _storages([m.storage for m in evidence if m.is_copy]) if verdict == "copied" else []
    # per-layer statistics from the alignment
    per_layer = []
    matched_layers: set[tuple[str, int]] = set()
    for st in stacks:
        for i, j in enumerate(st.mapping):
            if j is None:
                continue
            li, lj = st.suspect_layers[i], st.reference_layers[j]
            layer_ms = [m for m in evidence if m.suspect_layer == li and m.reference_layer == lj
                        and m.suspect in sus_names and _stack_of(m.suspect, st.suspect_stack)]
            if not layer_ms:
                continue
            matched_layers.add((st.suspect_stack, li))
            z, log_p = stouffer(m.similarity.z for m in layer_ms)
            per_layer.append({
                "suspect_stack": st.suspect_stack, "suspect_layer": li,
                "reference_stack": st.reference_stack, "reference_layer": lj,
                "centred_similarity": float(np.median([m.similarity.centred for m in layer_ms])),
                "raw_cosine": float(np.median([m.similarity.raw_cosine for m in layer_ms])),
                "n": int(sum(m.similarity.n for m in layer_ms)),
                "tensors": len(layer_ms), "z": z, "log10_p": log_p,
            })
    loose = [m for m in evidence if m.reference_layer is None]
    zs = [row["z"] for row in per_layer] + [m.similarity.z for m in loose]
    z, log_p = stouffer(zs)
    centred = [m.similarity.centred for m in evidence]
    raw = [m.similarity.raw_cosine for m in evidence]
    n_total = int(sum(m.similarity.n for m in evidence))
    layers_total = len(comp_layers.get(comp, set()))
    transformations = list(dict.fromkeys([*_transformations(evidence, stacks), *notes]))
    share = n_params / total_params if total_params else 0.0
    median_c = float(np.median(centred))
    summary = (
        f"{comp} {_verdict_words(verdict, storage)} {ref.name}: "
        + (f"{len(matched_layers)}/{layers_total} blocks, " if layers_total else "")
        + f"{len(evidence)} tensors, median centred similarity {median_c:.4f} "
        f"(raw cosine {float(np.median(raw)):.4f}), {100 * share:.1f}% of all parameters"
        + (f", {exact_params / evidence_params:.0%} of matched parameters bit-identical" if exact_params else "")
        + (f", {(copy_params - exact_params) / evidence_params:.0%} equal within their storage's rounding"
           if copy_params > exact_params else "")
    )
    stats = {
        "centred_similarity": median_c,
        "centred_similarity_min": float(np.min(centred)),
        "raw_cosine": float(np.median(raw)),
        "per_layer": per_layer,
        "n": n_total,
        "null_sd": null_sd(int(np.median([m.similarity.n for m in evidence]))),
        "z": z,
        "log10_p": log_p,
        "p_value": 10.0 ** log_p,
        "layers_matched": len(matched_layers),
        "layers_total": layers_total,
        "tensors_matched": len(evidence),
        "exact_tensors": sum(1 for m in evidence if m.exact),
        "exact_parameter_share": exact_params / evidence_params if evidence_params else 0.0,
        "copy_parameter_share": copy_params / evidence_params if evidence_params else 0.0,
        "storage": storage,
        "matched_tensors": [m.to_dict() for m in sorted(ms, key=lambda m: m.suspect)],
        "components": [comp],
    }
    return Finding("weights", verdict, ref, comp, summary, stats, n_params, share, [], transformations)


def _storages(labels: Iterable[str | None]) -> list[str]:
    """The storages copies were confirmed under, most frequent first ("bf16", "quantised as Q4_1"; exact: none)."""
    counts: dict[str, int] = {}
    for label in labels:
        if label:
            counts[label] = counts.get(label, 0) + 1
    return sorted(counts, key=lambda k: -counts[k])


def _verdict_words(verdict: str, storage: list[str]) -> str:
    """ "copied (stored as fp16) from" names the commonest rounding a copy was allowed; "output-aligned with"."""
    if verdict == "output-aligned":
        return "output-aligned with"
    return f"{verdict} ({storage[0]}) from" if verdict == "copied" and storage else f"{verdict} from"


def dict_storage(m: dict) -> str | None:
    """`TensorMatch.storage` of a match already written out with `to_dict`."""
    if m.get("exact"):
        return None if m["exact"] == "f32" else m["exact"]
    copy = m.get("copy") or {}
    return copy.get("storage") if dict_is_copy(m) else None


def dict_is_copy(m: dict) -> bool:
    """`TensorMatch.is_copy` of a match already written out with `to_dict`."""
    copy = m.get("copy") or {}
    return bool(m.get("exact")) or (copy.get("entries", 0) > 0 and copy.get("outside_rounding", 1) == 0)


def _stack_of(name: str, stack: str) -> bool:
    return name.startswith(stack + ".")


def _transformations(evidence: list[TensorMatch], stacks: list[StackMatch]) -> list[str]:
    out = []
    renamed = sum(1 for m in evidence if m.suspect != m.reference_tensor and not m.suspect.endswith("." + m.reference_tensor))
    if renamed:
        out.append(f"tensor names differ from the reference ({renamed}/{len(evidence)} tensors)")
    for kind in sorted({m.placement for m in evidence if not m.placement.startswith(NEURON_PLACEMENT)} - {"as is"}):
        out.append(f"{kind} ({sum(1 for m in evidence if m.placement == kind)} tensors)")
    casts = sorted({m.exact for m in evidence if m.exact and m.exact != "f32"})
    for c in casts:
        out.append(f"identical at {c} precision (dtype cast)")
    rounded = [m for m in evidence if m.exact is None and m.is_copy]
    for label in _storages(m.storage for m in rounded):
        same = [m for m in rounded if m.storage == label]
        out.append(f"{label}: every sampled entry within its rounding of the reference ({len(same)} tensors)")
    for st in stacks:
        out.extend(describe_alignment(st.mapping))
    return list(dict.fromkeys(out))


_COUNTED = re.compile(r"^(?P<text>.*) \((?P<n>\d+)(?:/(?P<of>\d+))? tensors\)$")


def combine_counted(lines: Iterable[str]) -> list[str]:
    """Merge lines that differ only in their "(n tensors)" / "(n/m tensors)" count by adding the counts."""
    out: dict[str, list[int] | None] = {}
    for line in lines:
        m = _COUNTED.match(line)
        if not m:
            out.setdefault(line, None)
            continue
        key = m["text"] + ("/" if m["of"] else "")
        prev = out.setdefault(key, [0, 0])
        if prev is not None:
            prev[0] += int(m["n"])
            prev[1] += int(m["of"] or 0)
    return [k if v is None else f"{k.rstrip('/')} ({v[0]}/{v[1]} tensors)" if k.endswith("/")
            else f"{k} ({v[0]} tensors)" for k, v in out.items()]


def merge_whole_model(findings: list[Finding], strong_comps: dict[str, int], total: int,
                       weak_only: dict[str, dict[str, int]]) -> list[Finding]:
    """All components that match the same reference become one finding per reference.

    The verdict is "copied" only when every component is; per-component verdicts stay in the
    statistics. Components holding only norm weights or biases (e.g. a final norm) never make a
    finding on their own; when every other component matches, their matched parameters join in.
    """
    by_ref: dict[str, list[Finding]] = {}
    for f in findings:
        by_ref.setdefault(f.reference.name, []).append(f)
    out: list[Finding] = []
    for ref_name, fs in by_ref.items():
        if len(fs) < 2:
            out.extend(fs)
            continue
        comps = sorted(f.subject for f in fs)
        verdicts = {f.verdict for f in fs}
        verdict = verdicts.pop() if len(verdicts) == 1 else "derived"  # copied or output-aligned only when all are
        evidence = [m for f in fs for m in f.statistics["matched_tensors"] if m["significant"] and not m["weak_evidence"]]
        storage = _storages(dict_storage(m) for m in evidence if dict_is_copy(m)) if verdict == "copied" else []
        first = fs[0]
        merged_stats = dict(max(fs, key=lambda f: f.parameter_count or 0).statistics)
        centred = [m["centred"] for m in evidence]
        zs = [r["z"] for f in fs for r in f.statistics["per_layer"]] + [
            m["z"] for m in evidence if m["reference_layer"] is None]
        z, log_p = stouffer(zs)
        uncovered = sum(strong_comps[c] for c in set(strong_comps) - set(comps))
        all_comps = uncovered <= 0.01 * total  # what is left is too small to be a component of its own
        extra = {c: n for c, n in weak_only.get(ref_name, {}).items() if n} if all_comps else {}
        params = sum(f.parameter_count or 0 for f in fs) + sum(extra.values())
        subject = "(whole model)" if all_comps else " + ".join(comps)
        exact_params = sum(m["parameters"] for m in evidence if m["exact"])
        copy_params = sum(m["parameters"] for m in evidence if dict_is_copy(m))
        evidence_params = sum(m["parameters"] for m in evidence)
        merged_stats.update({
            "centred_similarity": float(np.median(centred)),
            "centred_similarity_min": float(np.min(centred)),
            "raw_cosine": float(np.median([m["raw_cosine"] for m in evidence])),
            "per_layer": [r for f in fs for r in f.statistics["per_layer"]],
            "n": int(sum(m["n"] for m in evidence)),
            "z": z, "log10_p": log_p, "p_value": 10.0 ** log_p,
            "layers_matched": sum(f.statistics["layers_matched"] for f in fs),
            "layers_total": sum(f.statistics["layers_total"] for f in fs),
            "tensors_matched": len(evidence),
            "exact_tensors": sum(f.statistics["exact_tensors"] for f in fs),
            "exact_parameter_share": exact_params / evidence_params if evidence_params else 0.0,
            "copy_parameter_share": copy_params / evidence_params if evidence_params else 0.0,
            "storage": storage,
            "matched_tensors": [m for f in fs for m in f.statistics["matched_tensors"]],
            "components": sorted(set(comps) | set(extra)),
            "component_verdicts": {f.subject: f.verdict for f in fs},
        })
        share = params / total if total else 0.0
        per_comp = ", ".join(f"{f.subject} {f.verdict}" for f in sorted(fs, key=lambda f: f.subject))
        summary = (f"{subject} {_verdict_words(verdict, storage)} {ref_name} ({per_comp}): "
                   f"{merged_stats['layers_matched']}/{merged_stats['layers_total']} blocks, {len(evidence)} tensors, "
                   f"median centred similarity {merged_stats['centred_similarity']:.4f} "
                   f"(raw cosine {merged_stats['raw_cosine']:.4f}), {100 * share:.1f}% of all parameters")
        transformations = combine_counted(t for f in fs for t in f.transformations)
        out.append(Finding("weights", verdict, first.reference, subject, summary, merged_stats, params, share,
                           [], transformations))
    return out


def layers_tested(tensors: list[TensorFingerprint], found: Evidence, details: dict[str, Any]) -> list[dict[str, Any]]:
    """Per suspect layer stack, how it was compared with the reference: its layers, the best sketch block
    similarity of any layer pair, and the neuron-matching probe's best hit share."""
    layers: dict[str, set[int]] = {}
    for t in tensors:
        if t.stack is not None and t.layer is not None:
            layers.setdefault(t.stack, set()).add(t.layer)
    sketch = {st.suspect_stack: float(np.max(st.block_similarity, initial=0.0)) for st in found.stacks}
    probe = {st["suspect_stack"]: st.get("probe_hit_share") for st in details.get("robust", {}).get("stacks", [])}
    return [{"suspect_stack": name, "layers": len(ls), "best_block_similarity": round(sketch.get(name, 0.0), 4),
             "neuron_probe_hit_share": probe.get(name)} for name, ls in sorted(layers.items())]


def output_aligned(finding: Finding, tested: list[dict[str, Any]], th: WeightThresholds) -> Finding:
    """Evidence only in the token embedding or output head while no layer matrix matches: the residual basis is
    aligned with the reference's, as training to match its outputs (distillation) leaves it; no weights reused."""
    stats = dict(finding.statistics)
    layers = sum(t["layers"] for t in tested)
    stats.update({"relation": "output-aligned", "layers_tested": tested,
                  "relation_note": "evidence only in the embedding/unembedding basis; no layer matrix matches "
                                   "(sketch and neuron tests negative): consistent with distillation from the "
                                   "reference, no weights reused"})
    summary = (f"{finding.subject} output-aligned with {finding.reference.name} (consistent with distillation from "
               f"{finding.reference.name}; no weights reused): embedding centred similarity "
               f"{stats['centred_similarity']:.4f} (null sd {stats['null_sd']:.4f}, n = {stats['n']:,}); no layer "
               f"matrix matches ({layers} layers tested by sketches and neuron probes)")
    return replace(finding, verdict="output-aligned", summary=summary, statistics=stats)
