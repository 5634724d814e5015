"""Sketch matching: fixed-position sketches of the suspect against the reference's, by role and shape.

Layer stacks are scored layer × layer from the sketch pairs and aligned (`modelprov.weights.alignment`);
each reference tensor is then matched to the best suspect tensor within the aligned layers (anywhere,
for tensors outside layer stacks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._bank import Pair, ReferenceBank
from ..alignment import AlignmentCosts, StackMatch, align_layers
from ..evidence import Evidence, TensorMatch, WeightThresholds
from ..fingerprint import WEAK_ROLES, TensorFingerprint
from ..similarity import similarity
from .base import MatchContext, ReferenceModel, SuspectModel


class SketchMatcher:
    """Tensor matches from sketch similarity within the layer alignment the sketches give."""

    name = "sketch"

    def match(self, suspect: SuspectModel, reference: ReferenceModel, context: MatchContext) -> Evidence:
        bank, ri, pairs = context.session.bank, reference.index, context.pairs()
        stacks = stack_matches(suspect.tensors, bank, pairs, ri, context.costs)
        matches = tensor_matches(suspect.tensors, bank, pairs, ri, stacks, context.thresholds)
        return Evidence(matches, stacks, details={"weak_matches": weak_diagnostics(bank, pairs, ri, suspect.tensors)})


def stack_matches(
    suspects: list[TensorFingerprint], bank: ReferenceBank, pairs: list[Pair], ref_index: int,
    costs: AlignmentCosts = AlignmentCosts(),
) -> list[StackMatch]:
    """For one reference: block-similarity matrices of every (suspect stack, reference stack) and their alignment."""
    best: dict[tuple[int, int], float] = {}
    for p in pairs:
        rt = bank.tensors[p.ref_tensor]
        if rt.ref != ref_index or rt.fp.stack is None or rt.fp.role in WEAK_ROLES:
            continue
        s = suspects[p.suspect]
        if s.stack is None:
            continue
        key = (p.suspect, p.ref_tensor)
        best[key] = max(best.get(key, -1.0), p.centred)
    if not best:
        return []
    ref_stacks: dict[str, dict[int, list[int]]] = {}
    for ti, rt in enumerate(bank.tensors):
        if rt.ref == ref_index and rt.fp.stack is not None and rt.fp.role not in WEAK_ROLES:
            ref_stacks.setdefault(rt.fp.stack, {}).setdefault(rt.fp.layer, []).append(ti)
    sus_stacks: dict[str, dict[int, list[int]]] = {}
    for si, s in enumerate(suspects):
        if s.stack is not None and s.role not in WEAK_ROLES:
            sus_stacks.setdefault(s.stack, {}).setdefault(s.layer, []).append(si)
    out = []
    for sname, slayers in sus_stacks.items():
        options = []
        for rname, rlayers in ref_stacks.items():
            sl, rl = sorted(slayers), sorted(rlayers)
            mat = np.zeros((len(sl), len(rl)))
            touched = False
            for i, li in enumerate(sl):
                for j, lj in enumerate(rl):
                    vals = []
                    for ti in rlayers[lj]:
                        v = max((best.get((si, ti), 0.0) for si in slayers[li]), default=0.0)
                        touched |= v != 0.0
                        vals.append(max(v, 0.0))
                    mat[i, j] = float(np.mean(vals)) if vals else 0.0
            if not touched:
                continue
            mapping = align_layers(mat, costs)
            gain = sum(mat[i, j] - costs.threshold for i, j in enumerate(mapping) if j is not None)
            options.append((gain, StackMatch(sname, rname, sl, rl, mat, mapping)))
        if options:
            out.append(max(options, key=lambda o: o[0])[1])
    return out


def tensor_matches(
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


def weak_diagnostics(bank: ReferenceBank, pairs: list[Pair], ri: int,
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
    """A sketch pair as a match, Bonferroni-corrected for the `candidates` it was picked from."""
    s = suspects[p.suspect]
    sim = similarity(p.centred, p.raw_cosine, p.n, candidates=candidates)
    return TensorMatch(s.name, rt.name, rt.role, p.placement.describe(), sim, min(s.numel, rt.numel),
                       s.layer, rt.layer, weak=rt.role in WEAK_ROLES, significant=th.significant(sim),
                       located=p.placement)
