"""Neuron matching of layer stacks that fixed-position sketches miss: permuted, rotated or pruned layers.

For one reference and one suspect layer stack: (1) find how the suspect's residual coordinates map
onto the reference's (`modelprov.weights.residual`: token-embedding anchors paired by token string or id;
or unchanged); (2) probe a few suspect layers, so an unrelated model costs three layers' reads;
(3) score every (suspect layer, reference layer) pair by the share of sampled reference neurons that
find a match, and align the stacks with the same monotone alignment as the sketch matcher (depth
up-scaling, dropped layers); (4) in aligned layers pair every reference tensor's sampled neurons
with the suspect's one-to-one (`modelprov.weights.neurons`), which yields a p-value and the arrangement
(in order, heads permuted, permuted, pruned).

Reference side this needs nothing beyond the index: a sketch's sampled rows of an input projection
(q, k, v, up, gate) *are* neuron vectors over the sampled residual coordinates, and a sketch of an
output projection (o, down) holds them as columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from modelprov.progress import NEURONS, ProgressFn, report
from modelprov.reader import Rounded, SuspectReader

from ..alignment import AlignmentCosts, StackMatch, align_layers
from ..evidence import Evidence, TensorMatch, WeightThresholds
from ..fingerprint import SKETCH_VERSION, WEAK_ROLES, ModelFingerprint, TensorFingerprint, sample_indices
from ..naming import role_family, roles_compatible
from ..neurons import NeuronMatch, hit_shares, match_neurons, rank_rows
from ..residual import ResidualMap, identity_map
from ..similarity import Similarity, z_from_log10_p
from ..storage import CopyCheck, copy_check, signed_columns, stored_sketch
from .base import MatchContext, ReferenceModel, SuspectModel

IN_ROLES = frozenset({"attn_q", "attn_k", "attn_v", "attn_qkv", "mlp_up", "mlp_gate", "mlp_gate_up"})
OUT_ROLES = frozenset({"attn_o", "mlp_down"})
LAYER_PROBE = 16  # reference neurons per tensor used to score layer pairs
_PROBE_LAYERS = 3
_PROBE_MIN_SHARE = 0.1  # an independent layer pair hits with probability ~α = 0.001 per neuron (best of several tries: measured ≤ 0.03)
_COVERED_SHARE = 0.9  # a stack whose strong tensors the sketch pass matched to this share needs no neuron matching


@dataclass
class RefNeurons:
    """One reference tensor's sampled neurons, as rank vectors over the sampled residual coordinates."""

    fp: TensorFingerprint
    ids: np.ndarray  # reference neuron index of each vector
    vectors: np.ndarray  # ranked (K × residual sample)
    count: int  # neurons of the tensor
    head_dim: int | None
    raw: Rounded | None = field(repr=False, default=None)  # the vectors' stored values (unranked) and their rounding


@dataclass
class NeuronEvidence:
    """A reference tensor found, by neuron matching, in a suspect tensor of an aligned layer."""

    suspect: str
    reference: TensorFingerprint
    match: NeuronMatch
    orientation: str  # "rows" or "columns": which axis of the suspect tensor holds the neurons
    suspect_layer: int | None
    arrangement: str
    parameters: int
    raw: Rounded | None = field(repr=False, default=None)  # the reference neurons' stored values and rounding
    copy: CopyCheck | None = None  # matched neurons against the reference within the suspect storage's rounding


@dataclass
class StackEvidence:
    """What robust matching found for one suspect stack against one reference."""

    suspect_stack: str
    residual: ResidualMap
    probe_share: float
    stack: StackMatch | None = None
    evidence: list[NeuronEvidence] = field(default_factory=list)

    def notes(self) -> list[str]:
        """Plain words for the transformations found (residual map, neuron arrangements, pruning)."""
        out = []
        if self.residual.method != "identity":
            how = "rotated" if self.residual.method == "rotation" else "permuted"
            out.append(f"residual stream {how} (undone via {self.residual.heldout_rows * 2:,} shared-token "
                       f"embedding rows paired by {self.residual.pairing}, held-out r {self.residual.heldout_r:.3f})")
        kinds: dict[str, set[int]] = {}
        for e in self.evidence:
            if e.match.median_correlation < 0.5:  # arrangements are read off strong matches only
                continue
            family = "attention" if e.reference.role.startswith("attn") else "MLP"
            for part in e.arrangement.split(", "):
                what = {"permuted": f"{family} neurons permuted", "heads permuted": "attention heads permuted",
                        "heads kept": "attention heads pruned (whole heads kept)"}.get(part)
                if part.startswith("pruned"):
                    what = f"{family} width {part}"
                if what:
                    kinds.setdefault(what, set()).add(-1 if e.suspect_layer is None else e.suspect_layer)
        for what, layers in sorted(kinds.items()):
            out.append(f"{what}: found by neuron matching in {len(layers)} layers")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"suspect_stack": self.suspect_stack, "residual_map": self.residual.to_dict(),
                "probe_hit_share": round(self.probe_share, 4),
                "stack": self.stack.to_dict() if self.stack else None,
                "tensors": [{"suspect": e.suspect, "reference": e.reference.name, "orientation": e.orientation,
                             "arrangement": e.arrangement, **e.match.to_dict()} for e in self.evidence]}


def reference_width(fp: ModelFingerprint) -> int | None:
    """The reference's residual width: its token embedding's row length, else the commonest input width."""
    for t in fp.tensors:
        if t.role == "token_embedding" and len(t.shape) == 2:
            return t.shape[1]
    widths = [t.shape2d[1] for t in fp.tensors if t.role in IN_ROLES and len(t.shape) == 2]
    return max(set(widths), key=widths.count) if widths else None


def reference_neurons(fp: ModelFingerprint, width: int) -> list[RefNeurons]:
    """Neuron vectors of every input/output projection of the reference's layer stacks."""
    res = sample_indices(width, fp.spec.cols, SKETCH_VERSION)
    out = []
    for t in fp.tensors:
        if t.stack is None or len(t.shape) != 2:
            continue
        a, b = t.shape
        stored = stored_sketch(fp, t.name)
        if t.role in IN_ROLES and b == width:
            ids, count = sample_indices(a, fp.spec.rows, SKETCH_VERSION), a
        elif t.role in OUT_ROLES and a == width:
            ids, count, stored = sample_indices(b, fp.spec.cols, SKETCH_VERSION), b, stored.T
        else:
            continue
        vectors = stored.values
        if vectors.shape[1] != len(res):
            continue
        head_dim = count // t.heads if t.heads and t.role in ("attn_q", "attn_k") else None
        if head_dim is None and t.role in ("attn_v", "attn_o"):
            head_dim = _head_dim_from(fp, t)
        out.append(RefNeurons(t, ids, rank_rows(vectors), count, head_dim, stored))
    return out


def _head_dim_from(fp: ModelFingerprint, t: TensorFingerprint) -> int | None:
    for q in fp.tensors:
        if q.role == "attn_q" and q.heads and q.layer == t.layer and q.stack == t.stack:
            return q.shape[0] // q.heads
    return None


SuspectViews = dict[str, list[tuple[str, np.ndarray]]]  # suspect tensor → [(orientation, ranked vectors)]


def _suspect_views(reader: SuspectReader, tensors: list[TensorFingerprint], rmap: ResidualMap,
                   columns: np.ndarray) -> SuspectViews:
    """Ranked neuron vectors (in reference residual coordinates) of each 2-D projection of a suspect layer."""
    width = rmap.matrix.shape[0]
    out: SuspectViews = {}
    for s in tensors:
        if len(s.shape) != 2 or (s.role not in IN_ROLES | OUT_ROLES and s.role != "other"):
            continue
        a, b = s.shape
        if width not in (a, b):
            continue
        views = []
        if b == width:
            views.append(("rows", rank_rows(_row_neurons(reader, s, rmap, columns))))
        if a == width:
            views.append(("columns", rank_rows(_column_neurons(reader, s, rmap, columns))))
        out[s.name] = views
    return out


_BLOCK_ENTRIES = 1 << 22  # whole matrices are read in blocks of about this many entries (16 MB as float32)


def _row_neurons(reader: SuspectReader, s: TensorFingerprint, rmap: ResidualMap, columns: np.ndarray) -> np.ndarray:
    """Neurons stored as rows (residual along columns), mapped: read in row blocks, memory bounded."""
    return np.concatenate([rmap.apply(block, columns)
                           for _, block in reader.row_blocks(s.name, entries=_BLOCK_ENTRIES)])


def _column_neurons(reader: SuspectReader, s: TensorFingerprint, rmap: ResidualMap, columns: np.ndarray) -> np.ndarray:
    """Neurons stored as columns (residual along rows), mapped: a permutation reads only the rows it needs,
    a rotation accumulates blockwise."""
    g = rmap.gather(columns)
    if g is not None:
        src, sign = g
        return (reader.rows(s.name, src) * sign[:, None]).T
    q = rmap.matrix[:, columns]
    acc = np.zeros((s.shape[1], len(columns)), dtype=np.float64)
    for start, block in reader.row_blocks(s.name, entries=_BLOCK_ENTRIES):
        acc += block.T @ q[start:start + len(block)]
    return acc


def _compatible(ref: RefNeurons, s: TensorFingerprint) -> bool:
    return roles_compatible(s.role, ref.fp.role)


@dataclass
class _ProbeFamily:
    """One reference tensor per layer of a role family, their first probe neurons stacked for one product."""

    layers: list[int]
    refs: list[RefNeurons]
    vectors: np.ndarray  # (len(layers)·LAYER_PROBE) × residual sample


def _probe_families(rlayers: dict[int, list[RefNeurons]]) -> list[_ProbeFamily]:
    by_family: dict[str, dict[int, RefNeurons]] = {}
    for lj, refs in sorted(rlayers.items()):
        for r in refs:
            if len(r.ids) >= LAYER_PROBE:
                by_family.setdefault(role_family(r.fp.role), {}).setdefault(lj, r)
    out = []
    for fam in by_family.values():
        if len(fam) * 2 < len(rlayers):  # a family most layers lack would skew the mean
            continue
        layers = sorted(fam)
        out.append(_ProbeFamily(layers, [fam[lj] for lj in layers],
                                np.concatenate([fam[lj].vectors[:LAYER_PROBE] for lj in layers])))
    return out


def _layer_scores(views: SuspectViews, facts: dict[str, TensorFingerprint], families: list[_ProbeFamily],
                  ref_layers: list[int]) -> np.ndarray:
    """Quick score of one suspect layer against every reference layer: mean over role families of the
    share of probe neurons whose best match in a compatible suspect tensor beats τ."""
    total = np.zeros(len(ref_layers))
    count = np.zeros(len(ref_layers))
    pos = {lj: k for k, lj in enumerate(ref_layers)}
    for fam in families:
        best = np.zeros(len(fam.layers))
        for name, vs in views.items():
            if not _compatible(fam.refs[0], facts[name]):
                continue
            for _, v in vs:
                best = np.maximum(best, hit_shares(fam.vectors, len(fam.layers), v))
        idx = [pos[lj] for lj in fam.layers]
        total[idx] += best
        count[idx] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def robust_stack(
    reader: SuspectReader, suspects: list[TensorFingerprint], stack: str, fp: ModelFingerprint,
    refs: list[RefNeurons], maps: list[ResidualMap], costs: AlignmentCosts = AlignmentCosts(),
    progress: ProgressFn | None = None, probe_cache: dict[tuple, SuspectViews] | None = None,
) -> StackEvidence | None:
    """Neuron-match suspect stack `stack` against the reference's stacks (`refs`: its `reference_neurons`,
    ranked once per reference) under the best residual map.

    Each suspect layer is read once: its quick scores against every reference layer, and full one-to-one
    matches against the reference layers it plausibly holds; the alignment then keeps those on its path.
    `probe_cache` keeps the probe layers' views under the unchanged residual map, shared by every
    reference of the same width (an unrelated model then costs three layer reads per width, not per reference).
    """
    width = reference_width(fp)
    maps = [m for m in maps if m.matrix.shape[1] == width]
    by_layer: dict[int, list[TensorFingerprint]] = {}
    for s in suspects:
        if s.stack == stack and s.layer is not None:
            by_layer.setdefault(s.layer, []).append(s)
    if not refs or not maps or not by_layer:
        return None
    columns = sample_indices(width, fp.spec.cols, SKETCH_VERSION)
    layers = sorted(by_layer)
    ref_stacks: dict[str, dict[int, list[RefNeurons]]] = {}
    for r in refs:
        ref_stacks.setdefault(r.fp.stack, {}).setdefault(r.fp.layer, []).append(r)
    probes = {rname: (_probe_families(rlayers), sorted(rlayers)) for rname, rlayers in ref_stacks.items()}
    probe_layers = sorted({layers[round(q * (len(layers) - 1))] for q in np.linspace(0.25, 0.75, _PROBE_LAYERS)})
    best: tuple[float, int, str, dict[int, np.ndarray]] | None = None
    for mi, rmap in enumerate(maps):
        views = {}
        for li in probe_layers:
            key = (stack, li, width) if rmap.pairing == "none" and probe_cache is not None else None
            if key is not None and key in probe_cache:
                views[li] = probe_cache[key]
                continue
            views[li] = _suspect_views(reader, by_layer[li], rmap, columns)
            if key is not None:
                probe_cache[key] = views[li]
        for rname, (families, ref_ids) in probes.items():
            rows = {li: _layer_scores(views[li], _facts(by_layer[li]), families, ref_ids) for li in probe_layers}
            share = max(float(r.max(initial=0.0)) for r in rows.values())
            if best is None or share > best[0]:
                best = (share, mi, rname, rows)
    assert best is not None
    share, mi, rname, probe_rows = best
    rmap = maps[mi]
    result = StackEvidence(stack, rmap, share)
    if share < _PROBE_MIN_SHARE:
        return result
    rlayers = ref_stacks[rname]
    families, ref_ids = probes[rname]
    mat = np.zeros((len(layers), len(ref_ids)))
    candidates: dict[tuple[int, int], list[NeuronEvidence]] = {}
    for i, li in enumerate(layers):
        views = _suspect_views(reader, by_layer[li], rmap, columns)
        facts = _facts(by_layer[li])
        mat[i] = probe_rows[li] if li in probe_rows else _layer_scores(views, facts, families, ref_ids)
        for j, lj in enumerate(ref_ids):
            if mat[i, j] >= _PROBE_MIN_SHARE:
                candidates[(li, lj)] = _layer_evidence(rlayers[lj], views, facts, li)
        report(progress, NEURONS, i + 1, len(layers), f"{stack}.{li}")
    mapping = align_layers(mat, costs)
    result.stack = StackMatch(stack, rname, layers, ref_ids, mat, mapping)
    for i, j in enumerate(mapping):
        if j is not None:
            result.evidence.extend(candidates.get((layers[i], ref_ids[j]), []))
    return result


def layer_null_matches(reader: SuspectReader, layer: list[TensorFingerprint], refs: list[RefNeurons], rmap: ResidualMap,
                       columns: np.ndarray) -> tuple[float, list[NeuronMatch]]:
    """For measuring the null on independent models: one suspect layer's best quick score against every
    reference layer, and the one-to-one match of every compatible (reference tensor, suspect view) pair."""
    ref_layers: dict[int, list[RefNeurons]] = {}
    for r in refs:
        ref_layers.setdefault(r.fp.layer, []).append(r)
    views, facts = _suspect_views(reader, layer, rmap, columns), _facts(layer)
    probe = float(_layer_scores(views, facts, _probe_families(ref_layers), sorted(ref_layers)).max(initial=0.0))
    matches = [match_neurons(r.vectors, r.ids, r.count, v)
               for r in refs for name, vs in views.items() if _compatible(r, facts[name]) for _, v in vs]
    return probe, matches


def _facts(tensors: list[TensorFingerprint]) -> dict[str, TensorFingerprint]:
    return {s.name: s for s in tensors}


def _layer_evidence(refs: list[RefNeurons], views: SuspectViews, facts: dict[str, TensorFingerprint],
                    layer: int) -> list[NeuronEvidence]:
    out = []
    for ref in refs:
        found = _best_view(ref, views, facts)
        if found is not None:
            name, orientation, match = found
            same_role = facts[name].role == ref.fp.role
            out.append(NeuronEvidence(name, ref.fp, match, orientation, layer,
                                      match.arrangement(ref.head_dim, same_role), min(facts[name].numel, ref.fp.numel),
                                      ref.raw))
    return out


def _best_view(ref: RefNeurons, views: SuspectViews, facts: dict[str, TensorFingerprint]
               ) -> tuple[str, str, NeuronMatch] | None:
    """The compatible suspect view with the most probe hits (a view of the same role first: neurons of one
    model resemble each other, so a reference k also hits the derived q a little), matched one-to-one."""
    probe = ref.vectors[:LAYER_PROBE * 2]
    cands = [(facts[name].role == ref.fp.role, float(hit_shares(probe, 1, v)[0]), name, orient, v)
             for name, vs in views.items() if _compatible(ref, facts[name]) for orient, v in vs]
    if not cands:
        return None
    same_role_hit = any(c[0] and c[1] > 0 for c in cands)
    _, _, name, orient, v = max(cands, key=lambda c: (c[0] and same_role_hit, c[1]))
    match = match_neurons(ref.vectors, ref.ids, ref.count, v)
    match.log10_p = min(0.0, match.log10_p + math.log10(len(cands)))  # Bonferroni: best of the views tried
    return name, orient, match


NEURON_PLACEMENT = "neurons matched one-to-one"


def neuron_tensor_match(e: NeuronEvidence, th: WeightThresholds) -> TensorMatch:
    """A neuron-matching result as a `TensorMatch`: r is the median Spearman r of hits, p the binomial one.

    Both similarity fields carry that rank correlation (there is no raw cosine of a neuron matching). It is
    evidence only when most of the reference's neurons are found (`neuron_hit_share`): r of hits is ≥ τ by
    selection, and a small binomial p also comes from the few features independent training converges on.
    """
    r = e.match.median_correlation
    sim = Similarity(r, r, e.match.hits * e.match.coordinates, z_from_log10_p(e.match.log10_p), e.match.log10_p)
    significant = th.significant(sim) and e.match.hit_share >= th.neuron_hit_share
    return TensorMatch(e.suspect, e.reference.name, e.reference.role, f"{NEURON_PLACEMENT} ({e.arrangement})", sim,
                       e.parameters, e.suspect_layer, e.reference.layer, significant=significant, copy=e.copy)


def neuron_copy(reader: SuspectReader, e: NeuronEvidence, rmap: ResidualMap, columns: np.ndarray, dtype: str
                ) -> CopyCheck | None:
    """Are the matched suspect neurons the reference's, up to the suspect storage's rounding, once the neuron
    pairing and a permuted residual stream are undone? None under a rotation (undone only approximately) or an
    unknown storage rounding."""
    g = rmap.gather(columns)
    hits = np.flatnonzero(e.match.confident_mask)  # as the arrangement is read
    if g is None or e.raw is None or not len(hits) or 2 * len(hits) < e.match.hits:
        return None
    src, sign = g
    neurons = e.match.suspect_ids[hits]
    if e.orientation == "rows":
        block = reader.rounded_rows(e.suspect, neurons)
        if block is None:
            return None
        vectors = signed_columns(block, src, sign)
    else:
        block = reader.rounded_rows(e.suspect, src)
        if block is None:
            return None
        vectors = signed_columns(block.select((slice(None), neurons)).T, np.arange(len(src)), sign)
    check = copy_check(vectors, dtype, e.raw.select(hits))
    dropped = e.match.reference_count - e.match.suspect_count
    if check.copy or dropped <= 0:
        return check
    # pruned: up to the dropped share of the sampled reference neurons has no true partner; every other pair
    # must still be a copy
    ok = np.array([copy_check(vectors.select(slice(i, i + 1)), dtype, e.raw.select(hits[i: i + 1])).copy
                   for i in range(len(hits))])
    if (~ok).sum() > len(e.match.reference_ids) * dropped / e.match.reference_count or not ok.any():
        return check
    kept = copy_check(vectors.select(np.flatnonzero(ok)), dtype, e.raw.select(hits[ok]))
    return replace(kept, storage=f"{kept.storage}; {int((~ok).sum())} paired neurons are ones the pruning dropped")


class NeuronMatcher:
    """Neuron-matches the suspect stacks the sketch pass left (partly) unmatched."""

    name = "neurons"

    def match(self, suspect: SuspectModel, reference: ReferenceModel, context: MatchContext) -> Evidence:
        fp = reference.fingerprint
        width = reference_width(fp)
        if width is None:
            return Evidence()
        ran_for = _uncovered_stacks(suspect.tensors, fp, context.found.covered())
        details: dict[str, Any] = {"ran_for": ran_for, "stacks": []}
        if not ran_for:
            return Evidence(details={"robust": details})
        fitted = context.residual_maps()
        refs = reference_neurons(fp, width)
        found: list[StackEvidence] = []
        for stack in ran_for:
            maps = list(fitted.values())
            if any(width in s.shape for s in suspect.tensors if s.stack == stack):
                maps.append(identity_map(width))
            ev = robust_stack(suspect.reader, suspect.tensors, stack, fp, refs, maps, context.costs,
                              progress=context.session.progress, probe_cache=context.session.probe_cache)
            if ev is not None:
                found.append(ev)
        context.neuron_hits = any(e.match.hits for st in found for e in st.evidence)
        if context.session.verify_exact:
            dtype = {s.name: s.dtype for s in suspect.tensors}
            columns = sample_indices(width, fp.spec.cols, SKETCH_VERSION)
            for ev in found:
                for e in ev.evidence:
                    if e.match.median_correlation >= context.thresholds.copy_candidate:
                        e.copy = neuron_copy(suspect.reader, e, ev.residual, columns, dtype[e.suspect])
        details["stacks"] = [ev.to_dict() for ev in found]
        out = Evidence(details={"robust": details})
        for ev in found:
            matches = [neuron_tensor_match(e, context.thresholds) for e in ev.evidence]
            if ev.evidence and any(e.match.hits for e in ev.evidence):
                comp = suspect.component_of.get(ev.evidence[0].suspect, "")
                out.notes.setdefault(comp, []).extend(ev.notes())
            if ev.stack is None or not any(m.significant for m in matches):
                continue
            out.matches += matches
            out.stacks.append(ev.stack)
        return out


def _uncovered_stacks(suspects: list[TensorFingerprint], fp: ModelFingerprint, covered: set[str]) -> list[str]:
    """Suspect stacks whose (layer, role family) units the reference also has are below `_COVERED_SHARE` matched;
    MoE experts of one family count once."""
    ref_families = {role_family(t.role) for t in fp.tensors if t.stack is not None and t.role not in WEAK_ROLES}
    out = []
    for stack in sorted({s.stack for s in suspects if s.stack is not None}):
        units: dict[tuple[int, str], bool] = {}
        for s in suspects:
            fam = role_family(s.role)
            if s.stack == stack and s.role not in WEAK_ROLES and len(s.shape) == 2 and fam in ref_families | {"other"}:
                units[(s.layer, fam)] = units.get((s.layer, fam), False) or s.name in covered
        if units and sum(units.values()) < _COVERED_SHARE * len(units):
            out.append(stack)
    return out
