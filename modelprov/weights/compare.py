"""`compare A B`: exact pairwise comparison of two checkpoints (full read), per tensor and layer × layer.

A tensor of A is a copy of B's when it is identical, or when every entry lies within the rounding of A's
storage (a cast, a quantisation) of B's value: the same rule as the scan's copy confirmation.

B plays the reference: it is fingerprinted in memory (full read, digests), A is matched against it with
the scan's matcher, and every matched pair is then compared exactly on the full tensors (centred
similarity, raw cosine, max |difference|). The layer × layer matrix is the sketch estimate the
alignment uses (±0.01 of exact on large tensors; docs/weights.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from modelprov._atomic import atomic_write
from modelprov.findings import Reference
from modelprov.progress import ProgressFn
from modelprov.reader import SuspectReader, open_checkpoint

from ._bank import ReferenceBank, sketch_pairs
from .alignment import AlignmentCosts, describe_alignment
from .fingerprint import (
    WEAK_ROLES, SketchSpec, fingerprint_checkpoint, gguf_qk_permutation, suspect_fingerprints,
)
from .matchers.sketch import stack_matches
from .placement import region_at, rounded_region_at
from .similarity import compare_arrays
from .storage import copy_check, exact_reference


@dataclass
class TensorComparison:
    """One tensor of A against its best match in B, computed on the full tensors."""

    a: str
    b: str
    role: str
    placement: str
    centred: float
    raw_cosine: float
    n: int
    z: float
    log10_p: float
    max_abs_difference: float
    identical: bool
    copy: str | None = None  # the storage whose rounding explains every difference ("bf16", "quantised as Q4_1")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Comparison:
    """Everything `compare` found: per-tensor exact similarities and layer × layer matrices."""

    a: str
    b: str
    tensors: list[TensorComparison]
    stacks: list[dict[str, Any]]
    unmatched_a: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        centred = [t.centred for t in self.tensors if t.role not in WEAK_ROLES]
        return {
            "a": self.a, "b": self.b,
            "summary": {
                "tensors_compared": len(self.tensors),
                "identical": sum(t.identical for t in self.tensors),
                "copies_within_storage_rounding": sum(t.copy is not None for t in self.tensors),
                "median_centred_similarity": float(np.median(centred)) if centred else None,
                "unmatched_a": len(self.unmatched_a),
            },
            "tensors": [t.to_dict() for t in self.tensors],
            "stacks": self.stacks,
            "unmatched_a": self.unmatched_a,
        }


def compare(a: str | os.PathLike[str], b: str | os.PathLike[str], *, progress: ProgressFn | None = None,
            spec: SketchSpec | None = None, costs: AlignmentCosts = AlignmentCosts()) -> Comparison:
    """Compare checkpoint A with checkpoint B exactly (both read in full)."""
    spec = spec or SketchSpec()
    with open_checkpoint(b) as cb:
        fp_b = fingerprint_checkpoint(cb, spec, progress=progress)
    bank = ReferenceBank([(Reference(name=Path(b).name or str(b)), fp_b)])
    with open_checkpoint(a) as ca, open_checkpoint(b) as cb:
        suspects = suspect_fingerprints(ca)
        reader = SuspectReader(ca)
        pairs = sketch_pairs(suspects, reader, bank, progress=progress)
        stacks = stack_matches(suspects, bank, pairs, 0, costs)
        by_suspect: dict[int, list[Any]] = {}
        for p in pairs:
            by_suspect.setdefault(p.suspect, []).append(p)

        def exact(p: Any) -> TensorComparison:
            """The pair compared on the full tensors."""
            rt = bank.tensors[p.ref_tensor].fp
            block_a = np.concatenate(list(region_at(reader, suspects[p.suspect].name, rt.shape2d, p.placement)), axis=0)
            full_b = cb.read_rows(rt.name).reshape(rt.shape2d)[: p.placement.prefix_rows or None]
            if fp_b.source.get("gguf_qk_permutation_undone") and rt.heads:
                full_b = full_b[np.argsort(gguf_qk_permutation(rt.shape2d[0], rt.heads))]
            sim = compare_arrays(block_a, full_b)
            identical = bool(np.array_equal(block_a, full_b))
            name = suspects[p.suspect].name
            rounded = None if identical else rounded_region_at(reader, name, rt.shape2d, p.placement)
            check = None if rounded is None else copy_check(rounded, suspects[p.suspect].dtype, exact_reference(full_b))
            largest = 0.0 if identical or not block_a.size else float(np.max(np.abs(block_a - full_b)))
            return TensorComparison(
                name, rt.name, rt.role, p.placement.describe(), sim.centred, sim.raw_cosine, sim.n,
                sim.z, sim.log10_p, largest,
                identical, "exact" if identical else (check.storage if check is not None and check.copy else None),
            )

        out = [_pair(candidates, suspects[si].name, bank, exact) for si, candidates in sorted(by_suspect.items())]
        unmatched = [s.name for i, s in enumerate(suspects) if i not in by_suspect]
    stack_dicts = []
    for st in stacks:
        d = st.to_dict()
        d["notes"] = describe_alignment(st.mapping)
        stack_dicts.append(d)
    return Comparison(str(a), str(b), out, stack_dicts, unmatched)


def _pair(candidates: list[Any], name: str, bank: ReferenceBank,
          exact: Callable[[Any], TensorComparison]) -> TensorComparison:
    """B's tensor a tensor of A is compared with: the one of the same name when their content is identical (so
    `compare A A` pairs every tensor with itself, even where two tensors' sketches tie), else the best sketch
    similarity."""
    best = max(candidates, key=lambda p: p.centred)
    same_name = [p for p in candidates if bank.tensors[p.ref_tensor].fp.name == name and p.placement.describe() == "as is"]
    if same_name and same_name[0] is not best:
        result = exact(same_name[0])
        if result.identical:
            return result
    return exact(best)


def write_heatmaps(comparison: Comparison, path: str | os.PathLike[str]) -> None:
    """One heatmap per aligned layer stack (A layers × B layers, sketch centred similarity) as a PNG."""
    import matplotlib  # deferred: matplotlib takes ~0.5 s to import and only --heatmap needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stacks = comparison.stacks or []
    n = max(1, len(stacks))
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4.5), squeeze=False)
    for ax, st in zip(axes[0], stacks):
        m = np.asarray(st["block_similarity"], dtype=float)
        im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis", origin="upper", aspect="auto")
        ax.set_xlabel(f"B: {st['reference_stack']} layer")
        ax.set_ylabel(f"A: {st['suspect_stack']} layer")
        ax.set_xticks(range(len(st["reference_layers"])), st["reference_layers"], fontsize=6)
        ax.set_yticks(range(len(st["suspect_layers"])), st["suspect_layers"], fontsize=6)
        for i, (_, j) in enumerate(sorted(st["layer_map"].items(), key=lambda kv: int(kv[0]))):
            if j is not None:
                ax.plot(st["reference_layers"].index(j), i, "r.", markersize=4)
        fig.colorbar(im, ax=ax, label="centred similarity")
    if not stacks:
        axes[0][0].text(0.5, 0.5, "no layer stacks matched", ha="center", va="center")
        axes[0][0].axis("off")
    fig.suptitle("layer × layer centred similarity (red: alignment)")
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
