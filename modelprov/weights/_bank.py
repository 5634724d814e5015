"""The sketches of the references under verification, grouped by shape and pre-normalised, and the sketch
similarity of every compatible (suspect tensor, placement, reference tensor) pair, computed once per scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from modelprov.findings import Reference
from modelprov.progress import SKETCHES, ProgressFn, report
from modelprov.reader import SuspectReader

from .fingerprint import ModelFingerprint, SketchSpec, TensorFingerprint
from .placement import Placement, placements_for, prefix_sketch_rows, sketch_at
from .similarity import normalise_rows

@dataclass
class RefTensor:
    """One reference tensor in the bank."""

    ref: int  # index into ReferenceBank.references
    fp: TensorFingerprint


class ReferenceBank:
    """All reference sketches, grouped by 2-D shape and pre-normalised for fast correlation."""

    def __init__(self, references: list[tuple[Reference, ModelFingerprint]]) -> None:
        self.references = [r for r, _ in references]
        self.fingerprints = [f for _, f in references]
        self.tensors: list[RefTensor] = []
        groups: dict[tuple[tuple[int, int], tuple[int, int]], list[int]] = {}
        sketches: list[np.ndarray] = []
        for ri, fp in enumerate(self.fingerprints):
            for t in fp.tensors:
                groups.setdefault((t.shape2d, tuple(t.sketch_shape)), []).append(len(self.tensors))
                self.tensors.append(RefTensor(ri, t))
                sketches.append(fp.sketches[t.name].ravel())
        self.groups: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for (shape2d, _), idx in groups.items():
            mat = np.stack([sketches[i] for i in idx])
            self.groups[shape2d] = (np.asarray(idx), normalise_rows(mat, centre=True, dtype=np.float32),
                                    normalise_rows(mat, centre=False, dtype=np.float32))
        self.spec = self.fingerprints[0].spec if self.fingerprints else SketchSpec()

    def __bool__(self) -> bool:
        return bool(self.tensors)


# --- Pairwise sketch similarities ------------------------------------------------------------------------

@dataclass
class Pair:
    """Sketch similarity of one suspect tensor at one placement against one reference tensor."""

    suspect: int  # index into the suspect tensor list
    ref_tensor: int  # index into ReferenceBank.tensors
    placement: Placement
    centred: float
    raw_cosine: float
    n: int


def sketch_pairs(
    suspects: list[TensorFingerprint], reader: SuspectReader, bank: ReferenceBank,
    *, progress: ProgressFn | None = None,
) -> list[Pair]:
    """Every compatible (suspect tensor, placement, reference tensor) pair and its sketch similarity.

    Runs BLAS single-threaded: the products are small matrix-vector ones, where thread start-up costs
    more than it saves (25x slower on a busy 2-core machine).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _sketch_pairs(suspects, reader, bank, progress)


def _sketch_pairs(suspects: list[TensorFingerprint], reader: SuspectReader, bank: ReferenceBank,
                  progress: ProgressFn | None) -> list[Pair]:
    pairs: list[Pair] = []
    total = sum(s.numel for s in suspects)
    done = 0
    for si, s in enumerate(suspects):
        s2d = s.shape2d
        for shape2d, (idx, centred, raw) in bank.groups.items():
            # placements this reference shape admits, with the reference tensors each applies to
            wanted = placements_for(s, s2d, (bank.tensors[ti].fp for ti in idx))
            for p, rows in wanted.items():
                x = sketch_at(reader, s.name, shape2d, p, bank.spec).reshape(1, -1)
                xc = normalise_rows(x, centre=True)[0].astype(np.float32)
                xr = normalise_rows(x, centre=False)[0].astype(np.float32)
                keep = prefix_sketch_rows(shape2d, p, bank.spec)
                if keep is not None:  # a pre-sliced table: against the same rows of each reference sketch
                    if keep.sum() >= 2:
                        pairs += _prefix_pairs(si, [int(idx[row]) for row in rows], p, keep, xc, xr, bank)
                    continue
                sel = np.asarray(rows)
                rs = (centred @ xc)[sel] if len(sel) * 4 > len(idx) else centred[sel] @ xc
                cs = (raw @ xr)[sel] if len(sel) * 4 > len(idx) else raw[sel] @ xr
                for row, r, c in zip(sel, rs, cs):
                    pairs.append(Pair(si, int(idx[row]), p, float(r), float(c), int(x.size)))
        done += s.numel
        report(progress, SKETCHES, done, total, s.name)
    return pairs


def _prefix_pairs(si: int, ref_tensors: list[int], p: Placement, keep: np.ndarray, xc: np.ndarray, xr: np.ndarray,
                  bank: ReferenceBank) -> list[Pair]:
    """Pairs of a pre-sliced suspect table against the kept rows of each reference sketch (normalised here)."""
    out = []
    for ti in ref_tensors:
        rt = bank.tensors[ti]
        ref = bank.fingerprints[rt.ref].sketches[rt.fp.name].reshape(rt.fp.sketch_shape)[keep].reshape(1, -1)
        r = float(normalise_rows(ref, centre=True)[0].astype(np.float32) @ xc)
        c = float(normalise_rows(ref, centre=False)[0].astype(np.float32) @ xr)
        out.append(Pair(si, ti, p, r, c, int(xc.size)))
    return out
