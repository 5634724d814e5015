"""`scan_weights`: which components of a checkpoint come from which reference model, with statistics.

For each reference the matchers run in order (`modelprov.weights.matchers.DEFAULT_MATCHERS`) and their
evidence is merged in one place (`merge_evidence`); findings are then made per suspect component. Only
the suspect rows each sketch needs are read, plus full tensors a matcher must confirm or neuron-match.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

from modelprov.errors import NothingToScanError
from modelprov.findings import Finding, Reference
from modelprov.progress import ProgressFn
from modelprov.reader import Checkpoint, SuspectReader

from ._bank import ReferenceBank
from ._findings import (
    component_finding, layers_tested, merge_whole_model, output_aligned, reference_score, structure_notes,
)
from .alignment import AlignmentCosts
from .evidence import Evidence, TensorMatch, WeightThresholds, merge_evidence
from .fingerprint import WEAK_ROLES, ModelFingerprint, TensorFingerprint, suspect_fingerprints
from .matchers import DEFAULT_MATCHERS, Matcher, MatchContext, ScanSession, SuspectModel
from .matchers.base import TokensFn
from .calibration import Calibration, probability_statement, shipped_calibration
from .mixture import estimate_mixture
from .naming import VOCAB_ROLES
from .nonlearned import identical_nonlearned, reference_nonlearned, suspect_nonlearned


RetrieveFn = Callable[[SuspectReader, list[TensorFingerprint], TokensFn],
                      tuple[Sequence[tuple[Reference, ModelFingerprint]], dict[str, Any]]]


@dataclass
class WeightsScan:
    """Findings of the weights scan plus the details a reviewer needs to check them."""

    findings: list[Finding]
    details: dict[str, Any]
    parameters: dict[str, Any]


def scan_weights(
    ckpt: Checkpoint, references: Sequence[tuple[Reference, ModelFingerprint]], *,
    progress: ProgressFn | None = None, thresholds: WeightThresholds = WeightThresholds(),
    verify_exact: bool = True, costs: AlignmentCosts = AlignmentCosts(), tokens: TokensFn | None = None,
    matchers: Sequence[Matcher] = DEFAULT_MATCHERS, retrieve: RetrieveFn | None = None,
    calibration: Calibration | None = None,
) -> WeightsScan:
    """Compare a checkpoint with every reference given; findings per suspect component.

    `tokens` returns the checkpoint's regular vocabulary (token bytes → id), asked for only if an embedding
    must be aligned by token string; the tokenizer scan may share the read. `retrieve` (stage 1 against a
    large index) picks the references to verify from the suspect's learned tensors instead of `references`,
    and returns what the report shows of the choice; it reads through the scan's reader, so rows it reads are
    not read again.
    """
    every = suspect_fingerprints(ckpt)
    if not every:
        raise NothingToScanError(ckpt.path, "checkpoint holds no floating-point tensors")
    reader = SuspectReader(ckpt)
    buffers = suspect_nonlearned(reader, every)  # never matched, never evidence
    tensors = [t for t in every if t.name not in buffers]
    retrieval: dict[str, Any] | None = None
    if retrieve is not None:
        references, retrieval = retrieve(reader, tensors, tokens or (lambda: None))
    references = list(references)
    bank = ReferenceBank([(ref, _learned(fp)) for ref, fp in references])
    suspect = SuspectModel(ckpt, tensors, reader, tokens or (lambda: None))
    session = ScanSession(suspect, bank, thresholds=thresholds, costs=costs, verify_exact=verify_exact,
                          progress=progress)
    pairs = session.pairs
    sketch_bytes = suspect.reader.bytes_read
    comp_params: dict[str, int] = {}
    comp_layers: dict[str, set[tuple[str, int]]] = {}
    strong_comps: dict[str, int] = {}  # components with weights that can be evidence, and their parameters
    for s in every:
        comp_params[s.component] = comp_params.get(s.component, 0) + s.numel
        if s.stack is not None:
            comp_layers.setdefault(s.component, set()).add((s.stack, s.layer))
        if s.role not in WEAK_ROLES and s.name not in buffers:
            strong_comps[s.component] = strong_comps.get(s.component, 0) + s.numel
    total_params = sum(comp_params.values())
    weak_only: dict[str, dict[str, int]] = {}  # per reference: norm-only components and their matched parameters
    findings: list[Finding] = []
    per_reference: list[dict[str, Any]] = []
    stack_of = {t.name: t.stack for t in tensors}
    found_by_ref: dict[int, Evidence] = {}
    for ref in session.references():
        context = MatchContext(session, ref)
        for matcher in matchers:
            context.found = merge_evidence(context.found, matcher.match(suspect, ref, context))
        found = found_by_ref[ref.index] = context.found
        ref_pairs = session.pairs_of(ref.index)
        notes = {c: list(v) for c, v in found.notes.items()}
        for comp, extra in structure_notes(found.matches, tensors, bank, ref_pairs, ref.index, found.stacks,
                                           thresholds).items():
            notes.setdefault(comp, []).extend(extra)
        details = _reference_details(ref.reference.name, found, context, bank, ref_pairs, ref.index)
        details["identical_non_learned"] = identical_nonlearned(reader, buffers, every, references[ref.index][1],
                                                                ref.reference.name)
        per_reference.append(details)
        by_comp: dict[str, list[TensorMatch]] = {}
        for m in found.matches:
            by_comp.setdefault(suspect.component_of[m.suspect], []).append(m)
        weak_only[ref.reference.name] = {
            comp: sum(m.parameters for m in ms if m.similarity.centred >= thresholds.derived_similarity)
            for comp, ms in by_comp.items() if comp not in strong_comps}
        layer_evidence = any(m.is_evidence and stack_of[m.suspect] is not None for m in found.matches)
        for comp, ms in sorted(by_comp.items()):
            evidence = [m for m in ms if m.is_evidence]
            if not evidence:
                continue
            finding = component_finding(ref.reference, comp, ms, evidence, found.stacks, comp_params, comp_layers,
                                        total_params, thresholds, notes.get(comp, []))
            if not layer_evidence and finding.verdict != "copied" and all(m.role in VOCAB_ROLES for m in evidence):
                finding = output_aligned(finding, layers_tested(tensors, found, details), thresholds)
            findings.append(finding)
    findings = merge_whole_model(findings, strong_comps, total_params, weak_only)
    findings = _with_mixture(findings, reader, bank, found_by_ref)
    findings = _with_probability(findings, per_reference, calibration or shipped_calibration())
    closest = _closest_by_component(session)
    components = {
        comp: {"parameters": n, "share": n / total_params if total_params else 0.0,
               "weak_only": comp not in strong_comps,
               "verdicts": {f.reference.name: f.verdict for f in findings
                            if comp in f.statistics.get("components", [f.subject])},
               "closest": closest.get(comp)}
        for comp, n in comp_params.items()
    }
    total_bytes = sum(i.nbytes for i in ckpt.tensors())
    read = suspect.reader.bytes_read
    details = {
        "references": per_reference,
        "components": components,
        "bytes": {"checkpoint": total_bytes, "read_for_sketches": sketch_bytes, "read_total": read,
                  "fraction_read": read / total_bytes if total_bytes else 0.0},
        "pairs_compared": len(pairs),
        "non_learned": [b.to_dict() for b in buffers.values()],
    }
    if retrieval is not None:
        details["retrieval"] = retrieval
    parameters = {"sketch": bank.spec.to_dict(), "thresholds": thresholds.to_dict(),
                  "alignment": asdict(costs), "verify_exact": verify_exact,
                  "matchers": [m.name for m in matchers],
                  "null": {"model": "centred similarity of independent tensors ~ N(0, 1/sqrt(n))",
                           "statistic": "Fisher z = atanh(r)*sqrt(n-3), one-sided; Stouffer across layers; "
                                        "Bonferroni over candidates per tensor"}}
    return WeightsScan(findings, details, parameters)


def _with_mixture(findings: list[Finding], reader: SuspectReader, bank: ReferenceBank,
                  found: dict[int, Evidence]) -> list[Finding]:
    """The reuse findings with the merge their references' weights describe, if any ("merge of A (≈0.3) and B")."""
    index = {r.name: i for i, r in enumerate(bank.references)}
    reuse = [f for f in findings if f.verdict in ("copied", "derived") and f.reference.name in index]
    if not reuse or all(f.verdict == "copied" for f in reuse):
        return findings  # a copied tensor is one reference tensor within its storage's rounding, not a weighted sum
    mixture = estimate_mixture(reader, bank, found, sorted({index[f.reference.name] for f in reuse}))
    if mixture is None:
        return findings
    parents = {p["reference"] for p in mixture["parents"]}
    chosen = {id(f) for f in reuse if f.reference.name in parents}
    return [replace(f, statistics={**f.statistics, "merge": mixture}, summary=f"{f.summary}; {mixture['statement']}",
                    transformations=[*f.transformations, mixture["statement"]])
            if id(f) in chosen else f for f in findings]


def _with_probability(findings: list[Finding], per_reference: list[dict[str, Any]],
                      calibration: Calibration) -> list[Finding]:
    """Each finding with its calibrated probability of reuse, from its reference's combined evidence."""
    scores = {r["reference"]: -float(r["score"]["log10_p"]) for r in per_reference}
    return [replace(f, statistics={**f.statistics, "probability": probability_statement(
        f, scores.get(f.reference.name, 0.0), calibration)}) for f in findings]


def _learned(fp: ModelFingerprint) -> ModelFingerprint:
    """The reference without its non-learned tensors (buffers, constants), which carry no provenance."""
    drop = reference_nonlearned(fp)
    if not drop:
        return fp
    return replace(fp, tensors=[t for t in fp.tensors if t.name not in drop])


def _reference_details(name: str, found: Evidence, context: MatchContext, bank: ReferenceBank,
                       pairs: list, ri: int) -> dict[str, Any]:
    """What the report shows of one reference: alignments, norm diagnostics, robust-pass details and its score."""
    robust = {"ran_for": [], "stacks": [], "embeddings": [], **found.details.get("robust", {}),
              "residual_maps": {c: m.to_dict() for c, m in context.maps_fitted.items()}}
    return {"reference": name, "stacks": [s.to_dict() for s in found.stacks],
            "weak_matches": found.details.get("weak_matches", []), "robust": robust,
            "score": reference_score(found.matches, bank, pairs, ri)}


def _closest_by_component(session: ScanSession) -> dict[str, dict[str, Any]]:
    """The closest reference tensor per suspect component over every sketch pair, whatever the alignment says
    (a diagnostic; ties go to the earlier reference)."""
    bank, tensors = session.bank, session.suspect.tensors
    best: dict[str, tuple[float, int, Any]] = {}
    for p in session.pairs:
        rt = bank.tensors[p.ref_tensor]
        if rt.fp.role in WEAK_ROLES:
            continue
        comp = tensors[p.suspect].component
        prev = best.get(comp)
        if prev is None or p.centred > prev[0] or (p.centred == prev[0] and rt.ref < prev[1]):
            best[comp] = (p.centred, rt.ref, p)
    return {comp: {"reference": bank.references[ri].name, "max_centred_similarity": round(p.centred, 4),
                   "suspect": tensors[p.suspect].name, "reference_tensor": bank.tensors[p.ref_tensor].fp.name,
                   "n": p.n}
            for comp, (_, ri, p) in best.items()}
