"""`scan`: which parts of a checkpoint come from which reference model, per component, with statistics.

The weights part reads only the suspect rows each reference sketch needs (plus full tensors whose
sketch says "identical", to confirm the copy by digest). Tokenizer and code scanners, the policy
engine and report writers add their parts to the same `ScanReport`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np

from . import __version__
from .errors import NothingToScanError
from .findings import Finding, Reference, ScanReport, Subject
from .fingerprint import WEAK_ROLES, TensorFingerprint, ValueDigests, digests_match
from .tensor_match import TensorMatch, WeightThresholds
from .matching import (
    AlignmentCosts, Pair, ReferenceBank, StackMatch, SuspectReader, describe_alignment, sketch_pairs,
    stack_matches, suspect_fingerprints,
)
from .naming import role_family
from .reader import Checkpoint, open_checkpoint
from .refindex import ReferenceIndex
from .residual import identity_map
from .robust import (
    NEURON_PLACEMENT, VOCAB_ROLES, RobustResult, anchor_tensor_match, reference_neurons, reference_width,
    residual_maps, robust_stack,
)
from .similarity import null_sd, similarity, stouffer
from .tokenizers import CheckpointTokenizer, scan_tokenizers

ProgressFn = Callable[[int, int, str], None]


@dataclass
class WeightsScan:
    """Findings of the weights scan plus the details a reviewer needs to check them."""

    findings: list[Finding]
    details: dict[str, Any]
    parameters: dict[str, Any]


def scan_weights(
    ckpt: Checkpoint, index: ReferenceIndex, *, progress: ProgressFn | None = None,
    thresholds: WeightThresholds = WeightThresholds(), verify_exact: bool = True,
    costs: AlignmentCosts = AlignmentCosts(), tokenizer: CheckpointTokenizer | None = None,
) -> WeightsScan:
    """Compare a checkpoint with every weights reference of the index; findings per suspect component.

    `tokenizer` (read only if an embedding must be aligned by token string) may be shared with the tokenizer scan.
    """
    suspects = suspect_fingerprints(ckpt)
    if not suspects:
        raise NothingToScanError(ckpt.path, "checkpoint holds no floating-point tensors")
    bank = ReferenceBank(index.weight_references())
    reader = SuspectReader(ckpt, bank.spec)
    total_bytes = sum(i.nbytes for i in ckpt.tensors())
    pairs = sketch_pairs(suspects, reader, bank, progress=progress) if bank else []
    sketch_bytes = reader.bytes_read
    comp_params: dict[str, int] = {}
    comp_layers: dict[str, set[tuple[str, int]]] = {}
    for s in suspects:
        comp_params[s.component] = comp_params.get(s.component, 0) + s.numel
        if s.stack is not None:
            comp_layers.setdefault(s.component, set()).add((s.stack, s.layer))
    total_params = sum(comp_params.values())
    strong_comps: dict[str, int] = {}  # components with weights that can be evidence, and their parameters
    for s in suspects:
        if s.role not in WEAK_ROLES:
            strong_comps[s.component] = strong_comps.get(s.component, 0) + s.numel
    weak_only: dict[int, dict[str, int]] = {}  # per reference: norm-only components and their matched parameters
    findings: list[Finding] = []
    per_reference: list[dict[str, Any]] = []
    best_by_component: dict[str, dict[str, Any]] = {}
    comp_of = {s.name: s.component for s in suspects}
    tokenizer = tokenizer or CheckpointTokenizer.of(ckpt)
    probe_cache: dict[tuple, Any] = {}  # probe-layer neuron views under the unchanged residual map, by width
    for ri, ref in enumerate(bank.references):
        stacks = stack_matches(suspects, bank, pairs, ri, costs)
        matches = _tensor_matches(suspects, bank, pairs, ri, stacks, thresholds)
        if verify_exact:
            _verify_exact(matches, suspects, bank, ri, reader, pairs, thresholds)
        robust = _robust_pass(reader, suspects, bank, ri, matches, tokenizer, thresholds, costs, probe_cache)
        for p in pairs:  # closest reference per component, whatever the alignment says (a diagnostic)
            if bank.tensors[p.ref_tensor].ref != ri or bank.tensors[p.ref_tensor].fp.role in WEAK_ROLES:
                continue
            comp = suspects[p.suspect].component
            prev = best_by_component.get(comp)
            if prev is None or p.centred > prev["max_centred_similarity"]:
                best_by_component[comp] = {"reference": ref.name, "max_centred_similarity": round(p.centred, 4),
                                           "suspect": suspects[p.suspect].name,
                                           "reference_tensor": bank.tensors[p.ref_tensor].fp.name, "n": p.n}
        matches, stacks = robust.merge(matches, stacks, thresholds)
        notes = robust.notes(comp_of)
        for comp, extra in _structure_notes(matches, suspects, bank, pairs, ri, stacks, thresholds).items():
            notes.setdefault(comp, []).extend(extra)
        by_comp: dict[str, list[TensorMatch]] = {}
        for m in matches:
            by_comp.setdefault(comp_of[m.suspect], []).append(m)
        per_reference.append({"reference": ref.name, "stacks": [s.to_dict() for s in stacks],
                              "weak_matches": _weak_diagnostics(bank, pairs, ri, suspects),
                              "robust": robust.to_dict(),
                              "score": _reference_score(matches, bank, pairs, ri)})
        weak_only[ri] = {comp: sum(m.parameters for m in ms if m.similarity.centred >= thresholds.derived_similarity)
                         for comp, ms in by_comp.items() if comp not in strong_comps}
        for comp, ms in sorted(by_comp.items()):
            evidence = [m for m in ms if m.significant and not m.weak]
            if not evidence:
                continue
            findings.append(_component_finding(ref, comp, ms, evidence, stacks, comp_params, comp_layers,
                                               total_params, thresholds, notes.get(comp, [])))
    findings = _merge_whole_model(findings, strong_comps, total_params,
                                  {bank.references[ri].name: w for ri, w in weak_only.items()})
    components = {
        comp: {"parameters": n, "share": n / total_params if total_params else 0.0,
               "weak_only": comp not in strong_comps,
               "verdicts": {f.reference.name: f.verdict for f in findings if comp in f.statistics.get("components", [f.subject])},
               "closest": best_by_component.get(comp)}
        for comp, n in comp_params.items()
    }
    details = {
        "references": per_reference,
        "components": components,
        "bytes": {"checkpoint": total_bytes, "read_for_sketches": sketch_bytes,
                  "read_total": reader.bytes_read,
                  "fraction_read": reader.bytes_read / total_bytes if total_bytes else 0.0},
        "pairs_compared": len(pairs),
    }
    parameters = {"sketch": bank.spec.to_dict(), "thresholds": thresholds.to_dict(),
                  "alignment": asdict(costs), "verify_exact": verify_exact,
                  "null": {"model": "centred similarity of independent tensors ~ N(0, 1/sqrt(n))",
                           "statistic": "Fisher z = atanh(r)*sqrt(n-3), one-sided; Stouffer across layers; "
                                        "Bonferroni over candidates per tensor"}}
    return WeightsScan(findings, details, parameters)


def _tensor_matches(
    suspects: list[TensorFingerprint], bank: ReferenceBank, pairs: list[Pair], ri: int,
    stacks: list[StackMatch], th: WeightThresholds,
) -> list[TensorMatch]:
    """Best suspect tensor for each reference tensor: within aligned layers for stacks, anywhere otherwise."""
    by_ref: dict[int, list[Pair]] = {}
    for p in pairs:
        if bank.tensors[p.ref_tensor].ref == ri:
            by_ref.setdefault(p.ref_tensor, []).append(p)
    allowed: dict[tuple[str, int], set[tuple[str, int]]] = {}  # (ref stack, ref layer) -> suspect layers
    for st in stacks:
        for i, j in enumerate(st.mapping):
            if j is not None:
                allowed.setdefault((st.reference_stack, st.reference_layers[j]), set()).add(
                    (st.suspect_stack, st.suspect_layers[i]))
    out: list[TensorMatch] = []
    for ti, cands in by_ref.items():
        rt = bank.tensors[ti].fp
        if rt.stack is not None:
            layers = allowed.get((rt.stack, rt.layer))
            if not layers:
                continue
            # one match per suspect layer mapped onto this reference layer (repeats are separate copies)
            for key in sorted(layers):
                inside = [p for p in cands if (suspects[p.suspect].stack, suspects[p.suspect].layer) == key]
                if inside:
                    out.append(_as_match(max(inside, key=lambda p: p.centred), len(inside), suspects, rt, th))
        else:
            outside = [p for p in cands if suspects[p.suspect].stack is None] or cands
            out.append(_as_match(max(outside, key=lambda p: p.centred), len(outside), suspects, rt, th))
    return out


_COVERED_SHARE = 0.9  # a stack whose strong tensors the sketch pass matched to this share needs no neuron matching


def _robust_pass(reader: SuspectReader, suspects: list[TensorFingerprint], bank: ReferenceBank, ri: int,
                 matches: list[TensorMatch], tokenizer: CheckpointTokenizer, th: WeightThresholds, costs: AlignmentCosts,
                 probe_cache: dict[tuple, Any]) -> RobustResult:
    """Neuron-match the suspect stacks (and anchor-match the embeddings) the sketch pass left unmatched."""
    fp = bank.fingerprints[ri]
    width = reference_width(fp)
    result = RobustResult()
    if width is None:
        return result
    covered = {m.suspect for m in matches if m.significant and not m.weak}
    ref_families = {role_family(t.role) for t in fp.tensors if t.stack is not None and t.role not in WEAK_ROLES}
    for stack in sorted({s.stack for s in suspects if s.stack is not None}):
        # units: (layer, role family) the reference also has; MoE experts of one family count once
        units: dict[tuple[int, str], bool] = {}
        for s in suspects:
            fam = role_family(s.role)
            if s.stack == stack and s.role not in WEAK_ROLES and len(s.shape) == 2 and fam in ref_families | {"other"}:
                units[(s.layer, fam)] = units.get((s.layer, fam), False) or s.name in covered
        if units and sum(units.values()) < _COVERED_SHARE * len(units):
            result.ran_for.append(stack)
    loose_embeddings = [s for s in suspects if s.role in VOCAB_ROLES and len(s.shape) == 2 and s.name not in covered]
    if not result.ran_for and not loose_embeddings:
        return result
    result.maps = residual_maps(reader, suspects, fp, tokenizer.tokens()) if fp.anchors else {}
    refs = reference_neurons(fp, width) if result.ran_for else []
    for stack in result.ran_for:
        maps = list(result.maps.values())
        if any(width in s.shape for s in suspects if s.stack == stack):
            maps.append(identity_map(width))
        found = robust_stack(reader, suspects, stack, fp, refs, maps, costs, probe_cache=probe_cache)
        if found is not None:
            result.stacks.append(found)
    stacks_found = any(e.match.hits for st in result.stacks for e in st.evidence)
    anchor_tensor = next((t for t in fp.tensors if t.name in fp.anchors), None)
    for s in loose_embeddings:
        rmap = result.maps.get(s.name)
        # a fitted map is no evidence by itself (independently trained embeddings share geometry); the
        # identity map involves no fit, and with matched layers the embedding belongs to the derived model
        if rmap is not None and anchor_tensor is not None and (rmap.method == "identity" or stacks_found):
            result.embeddings.append(anchor_tensor_match(s, anchor_tensor, rmap, th))
    return result


def _reference_score(matches: list[TensorMatch], bank: ReferenceBank, pairs: list[Pair], ri: int) -> dict[str, Any]:
    """The strongest single piece of evidence for this reference, corrected for every comparison made.

    Present for every reference (with or without a finding), so detection can be scored as a ranking.
    """
    ref_pairs = [p for p in pairs if bank.tensors[p.ref_tensor].ref == ri and bank.tensors[p.ref_tensor].fp.role not in WEAK_ROLES]
    tries = max(len(ref_pairs) + len(matches), 1)
    best = min([similarity(p.centred, p.raw_cosine, p.n).log10_p for p in ref_pairs]
               + [m.similarity.log10_p for m in matches if not m.weak], default=0.0)
    return {"log10_p": min(0.0, best + math.log10(tries)), "comparisons": tries,
            "statistic": "min over compared tensor pairs of the one-sided p, Bonferroni over all comparisons"}


def _structure_notes(matches: list[TensorMatch], suspects: list[TensorFingerprint], bank: ReferenceBank,
                     pairs: list[Pair], ri: int, stacks: list[StackMatch], th: WeightThresholds) -> dict[str, list[str]]:
    """Vocabulary growth or shrinkage, quantised storage and MoE upcycling, in words, by suspect component."""
    facts = {s.name: s for s in suspects}
    ref_facts = {t.fp.name: t.fp for t in bank.tensors if t.ref == ri}
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


def _weak_diagnostics(bank: ReferenceBank, pairs: list[Pair], ri: int,
                      suspects: list[TensorFingerprint]) -> list[dict[str, Any]]:
    """For each norm weight or bias of the reference: its closest suspect vector, centred and raw.

    Shown so a reviewer sees why raw cosine is no evidence: it is high for any two norm vectors.
    """
    best: dict[int, Pair] = {}
    for p in pairs:
        rt = bank.tensors[p.ref_tensor]
        if rt.ref == ri and rt.fp.role in WEAK_ROLES and (p.ref_tensor not in best or p.centred > best[p.ref_tensor].centred):
            best[p.ref_tensor] = p
    return [{"reference": bank.tensors[ti].fp.name, "suspect": suspects[p.suspect].name,
             "centred": round(p.centred, 6), "raw_cosine": round(p.raw_cosine, 6), "n": p.n}
            for ti, p in sorted(best.items())]


def _as_match(p: Pair, candidates: int, suspects: list[TensorFingerprint], rt: TensorFingerprint,
              th: WeightThresholds) -> TensorMatch:
    s = suspects[p.suspect]
    sim = similarity(p.centred, p.raw_cosine, p.n, candidates=candidates)
    m = TensorMatch(s.name, rt.name, rt.role, p.placement.describe(), sim, min(s.numel, rt.numel),
                    s.layer, rt.layer, weak=rt.role in WEAK_ROLES)
    m._significant = sim.centred >= th.derived_similarity and sim.log10_p <= th.max_log10_p
    m._pair = p  # type: ignore[attr-defined]
    return m


def _verify_exact(matches: list[TensorMatch], suspects: list[TensorFingerprint], bank: ReferenceBank, ri: int,
                  reader: SuspectReader, pairs: list[Pair], th: WeightThresholds) -> None:
    """Read in full the suspect blocks whose sketch is (nearly) identical and compare value digests."""
    by_name = {t.fp.name: t.fp for t in bank.tensors if t.ref == ri}
    for m in matches:
        if m.similarity.centred < th.exact_candidate and not (m.weak and m.similarity.raw_cosine >= th.exact_candidate):
            continue
        p: Pair | None = getattr(m, "_pair", None)
        if p is None:  # neuron or anchor matches: no fixed placement to read back
            continue
        rt = by_name[m.reference_tensor]
        d = ValueDigests()
        for block in reader.region(m.suspect, rt.shape2d, p.placement):
            d.update(block)
        m.exact = digests_match(d.hexdigests(), rt.digests)


def _component_finding(
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
    verdict = "copied" if evidence_params and exact_params / evidence_params >= th.copied_share else "derived"
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
        f"{comp} {verdict} from {ref.name}: "
        + (f"{len(matched_layers)}/{layers_total} blocks, " if layers_total else "")
        + f"{len(evidence)} tensors, median centred similarity {median_c:.4f} "
        f"(raw cosine {float(np.median(raw)):.4f}), {100 * share:.1f}% of all parameters"
        + (f", {exact_params / evidence_params:.0%} of matched parameters bit-identical" if exact_params else "")
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
        "matched_tensors": [m.to_dict() for m in sorted(ms, key=lambda m: m.suspect)],
        "components": [comp],
    }
    return Finding("weights", verdict, ref, comp, summary, stats, n_params, share, [], transformations)


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


def _merge_whole_model(findings: list[Finding], strong_comps: dict[str, int], total: int,
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
        verdict = "copied" if all(f.verdict == "copied" for f in fs) else "derived"
        evidence = [m for f in fs for m in f.statistics["matched_tensors"] if m["significant"] and not m["weak_evidence"]]
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
            "matched_tensors": [m for f in fs for m in f.statistics["matched_tensors"]],
            "components": sorted(set(comps) | set(extra)),
            "component_verdicts": {f.subject: f.verdict for f in fs},
        })
        share = params / total if total else 0.0
        per_comp = ", ".join(f"{f.subject} {f.verdict}" for f in sorted(fs, key=lambda f: f.subject))
        summary = (f"{subject} {verdict} from {ref_name} ({per_comp}): "
                   f"{merged_stats['layers_matched']}/{merged_stats['layers_total']} blocks, {len(evidence)} tensors, "
                   f"median centred similarity {merged_stats['centred_similarity']:.4f} "
                   f"(raw cosine {merged_stats['raw_cosine']:.4f}), {100 * share:.1f}% of all parameters")
        transformations = combine_counted(t for f in fs for t in f.transformations)
        out.append(Finding("weights", verdict, first.reference, subject, summary, merged_stats, params, share,
                           [], transformations))
    return out


def scan(path: str | os.PathLike[str] | Checkpoint, index: ReferenceIndex | str | os.PathLike[str] | None = None,
         *, progress: ProgressFn | None = None, verify_exact: bool = True, hash_files: bool = True,
         tokenizer: bool = True, code: bool = True) -> ScanReport:
    """Scan a checkpoint against a reference index (default: the shipped one) and return the report.

    Weights always; the tokenizer when the checkpoint carries one; inference code when the checkpoint
    folder holds source files and the index has code references. Judge the result with
    `provenance.policy.apply_policy` and write it with `provenance.report.write_reports`.
    """
    from .report import report_timestamp

    idx = index if isinstance(index, ReferenceIndex) else ReferenceIndex.load(index)
    owned = not isinstance(path, Checkpoint)
    ckpt = open_checkpoint(path) if owned else path
    try:
        subject = _subject(ckpt, hash_files)
        shipped = CheckpointTokenizer.of(ckpt)  # read at most once, by whichever part needs it first
        weights = scan_weights(ckpt, idx, progress=progress, verify_exact=verify_exact, tokenizer=shipped)
        findings = list(weights.findings)
        details: dict[str, Any] = {"weights": weights.details}
        if tokenizer and ckpt.path.exists():  # a Hub checkpoint's tokenizer is not fetched
            tok_findings, details["tokenizer"] = scan_tokenizers(str(ckpt.path), idx.root, tokenizer=shipped)
            findings.extend(tok_findings)
        code_result = _scan_checkpoint_code(ckpt, idx) if code else None
        if code_result is not None:
            findings.extend(code_result.findings)
            details["code"] = code_result.to_dict()
    finally:
        if owned:
            ckpt.close()
    return ScanReport(
        subject=subject, index=index_summary(idx), parameters={"weights": weights.parameters},
        findings=findings, details=details, tool_version=__version__, timestamp=report_timestamp(),
    )


def _scan_checkpoint_code(ckpt: Checkpoint, idx: ReferenceIndex):
    """Scan the source files of a local checkpoint folder (modelling code shipped with weights), if any."""
    from .code import CodeIndex, scan_code, source_files

    if not ckpt.path.exists():  # a Hub checkpoint: its code is not fetched
        return None
    code_index = idx.root / "code"
    if not CodeIndex(code_index).has_references():
        return None
    folder = ckpt.path if ckpt.path.is_dir() else ckpt.path.parent
    if not source_files(folder):  # the code scanner's own walk: same files it would scan
        return None
    return scan_code(folder, code_index)


def index_summary(idx: ReferenceIndex) -> dict[str, Any]:
    """The index's name, version and digest, and whether its files still match the digest."""
    from .errors import ReferenceIndexError

    out = idx.summary()
    try:
        idx.verify()
        out["verified"] = True
    except ReferenceIndexError as err:  # reported, not fatal: the report says the index was modified
        out["verified"] = False
        out["verification_problem"] = err.one_line()
    return out


def _subject(ckpt: Checkpoint, hash_files: bool) -> Subject:
    from .inspect import inspect_checkpoint

    return inspect_checkpoint(ckpt, hash_files=hash_files).subject()
