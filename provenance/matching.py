"""Match a suspect checkpoint's tensors against reference fingerprints without trusting names.

Candidates are chosen by role family and shape; each candidate is a `Placement` that says where the
reference tensor would sit inside the suspect tensor (as is, transposed, at a row offset of a fused
projection, in llama.cpp's q/k row order). New strategies (neuron permutations, vocabulary remapping,
expert matching) are new placement generators: `PLACEMENT_STRATEGIES`.

Layer stacks are aligned by a Viterbi path over the layer×layer block-similarity matrix that steps
forward, repeats or skips layers cheaply and restarts (jumps back) at a price, so depth up-scaling
and dropped layers are found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .fingerprint import (
    WEAK_ROLES, ModelFingerprint, SketchSpec, TensorFingerprint, describe_tensor, gguf_qk_permutation,
    is_fingerprintable, sketch_indices, view_shape,
)
from .findings import Reference
from .naming import roles_compatible
from .reader import Checkpoint, TensorInfo
from .reader.dtypes import DTYPE_SIZES
from .similarity import normalise_rows

_FUSED_ROLES = frozenset({"attn_qkv", "mlp_gate_up", "other", "token_embedding", "lm_head", "router"})
_MAX_OFFSETS = 16


@dataclass(frozen=True)
class Placement:
    """Where a reference tensor (2-D view a×b) sits in a suspect tensor."""

    transpose: bool = False  # suspect stores the reference transposed
    row_offset: int = 0  # rows of a fused suspect (in reference orientation) before the reference's block
    row_map: str | None = None  # "gguf_qk": suspect rows are in llama.cpp's rotary order
    heads: int | None = None

    def describe(self) -> str:
        parts = []
        if self.transpose:
            parts.append("transposed")
        if self.row_offset:
            parts.append(f"at row {self.row_offset} of a fused tensor")
        if self.row_map == "gguf_qk":
            parts.append("llama.cpp q/k row order")
        return ", ".join(parts) or "as is"

    def suspect_rows(self, ref_rows: np.ndarray) -> np.ndarray:
        """Suspect rows (in reference orientation) that hold reference rows `ref_rows`."""
        rows = ref_rows
        if self.row_map == "gguf_qk" and self.heads:
            rows = np.argsort(gguf_qk_permutation(self._rows, self.heads))[rows]
        return rows + self.row_offset

    _rows: int = 0  # reference row count, needed by row maps


PlacementStrategy = Callable[[TensorFingerprint, tuple[int, int], TensorFingerprint], Iterable[Placement]]


def _offsets(total: int, part: int) -> list[int]:
    if total == part:
        return [0]
    out = sorted({k * part for k in range(total // part)} | {total - part})
    return out[:_MAX_OFFSETS]


def direct_placements(suspect: TensorFingerprint, s2d: tuple[int, int], ref: TensorFingerprint) -> Iterator[Placement]:
    """As stored, or at a row offset inside a larger (fused, or vocabulary-grown) suspect tensor."""
    (m, w), (a, b) = s2d, ref.shape2d
    if w != b or m < a:
        return
    if len(suspect.shape) != len(ref.shape) and min(len(suspect.shape), len(ref.shape)) < 2:
        return
    if m > a and suspect.role not in _FUSED_ROLES:
        return
    for off in _offsets(m, a):
        yield Placement(row_offset=off, _rows=a)


def transposed_placements(suspect: TensorFingerprint, s2d: tuple[int, int], ref: TensorFingerprint) -> Iterator[Placement]:
    """Stored transposed (GPT-2 Conv1D, some exporters), possibly fused along the reference's rows."""
    (m, w), (a, b) = s2d, ref.shape2d
    if len(suspect.shape) != 2 or len(ref.shape) != 2 or m != b or w < a:
        return
    if w > a and suspect.role not in _FUSED_ROLES:
        return
    for off in _offsets(w, a):
        yield Placement(transpose=True, row_offset=off, _rows=a)


def gguf_qk_placements(suspect: TensorFingerprint, s2d: tuple[int, int], ref: TensorFingerprint) -> Iterator[Placement]:
    """q/k rows permuted by llama.cpp's converter (the reference is kept in Hugging Face order)."""
    (m, w), (a, b) = s2d, ref.shape2d
    if ref.role not in ("attn_q", "attn_k") or not ref.heads or w != b or m < a or a % (2 * ref.heads):
        return
    if m > a and suspect.role not in _FUSED_ROLES:
        return
    for off in _offsets(m, a):
        yield Placement(row_offset=off, row_map="gguf_qk", heads=ref.heads, _rows=a)


PLACEMENT_STRATEGIES: list[PlacementStrategy] = [direct_placements, transposed_placements, gguf_qk_placements]


# --- Reading suspect sketches ------------------------------------------------------------------------

class SuspectReader:
    """Reads suspect sketches for placements, only the rows needed, and counts the bytes it read."""

    def __init__(self, ckpt: Checkpoint, spec: SketchSpec) -> None:
        self.ckpt = ckpt
        self.spec = spec
        self.bytes_read = 0
        self._infos = {i.name: i for i in ckpt.tensors()}
        self._last: tuple[str, bytes, np.ndarray] | None = None  # placements of one tensor often share rows

    def _entry_bytes(self, info: TensorInfo) -> float:
        size = DTYPE_SIZES.get(info.dtype)
        return float(size) if size else info.nbytes / max(info.numel, 1)

    def _rows(self, info: TensorInfo, rows: np.ndarray | slice | None) -> np.ndarray:
        width = view_shape(info.shape)[1]
        if len(info.shape) < 2:  # a vector is one row here (the reader views it as a column)
            out = self.ckpt.read_rows(info.name).reshape(1, width)
            if rows is not None and not isinstance(rows, slice):
                out = out[np.asarray(rows)]
        else:
            out = self.ckpt.read_rows(info.name, rows).reshape(-1, width)
        self.bytes_read += int(out.shape[0] * width * self._entry_bytes(info))
        return out

    def sketch(self, name: str, ref_shape2d: tuple[int, int], placement: Placement) -> np.ndarray:
        """The suspect's entries at the reference sketch positions, in reference orientation."""
        info = self._infos[name]
        rows, cols = sketch_indices(ref_shape2d, self.spec)
        if placement.transpose:  # suspect rows are reference columns
            return self._cached_rows(info, cols)[:, placement.suspect_rows(rows)].T
        return self._cached_rows(info, placement.suspect_rows(rows))[:, cols]

    def _cached_rows(self, info: TensorInfo, rows: np.ndarray) -> np.ndarray:
        key = np.asarray(rows, dtype=np.int64).tobytes()
        if self._last is not None and self._last[0] == info.name and self._last[1] == key:
            return self._last[2]
        block = self._rows(info, rows)
        self._last = (info.name, key, block)
        return block

    def rows(self, name: str, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Rows (any order; all when None) of tensor `name`'s 2-D view, counted in `bytes_read`."""
        return self._rows(self._infos[name], rows)

    def row_blocks(self, name: str, start: int = 0, stop: int | None = None, *, entries: int = 1 << 24
                   ) -> Iterator[tuple[int, np.ndarray]]:
        """Rows `start`..`stop` of tensor `name` in blocks of about `entries` entries (bounded memory)."""
        info = self._infos[name]
        n_rows, width = view_shape(info.shape)
        stop = n_rows if stop is None else stop
        step = max(1, entries // max(width, 1))
        for lo in range(start, stop, step):
            yield lo, self._rows(info, slice(lo, min(stop, lo + step)))

    def region(self, name: str, ref_shape2d: tuple[int, int], placement: Placement) -> Iterator[np.ndarray]:
        """The full block of the suspect that holds the reference, in reference layout, in row blocks."""
        a = ref_shape2d[0]
        if placement.transpose:
            full = self.rows(name).T
            yield full[placement.row_offset: placement.row_offset + a]
            return
        if placement.row_map:
            yield self.rows(name, placement.suspect_rows(np.arange(a)))
            return
        for _, block in self.row_blocks(name, placement.row_offset, placement.row_offset + a):
            yield block


# --- The bank of reference sketches ---------------------------------------------------------------------

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
    *, progress: Callable[[int, int, str], None] | None = None,
) -> list[Pair]:
    """Every compatible (suspect tensor, placement, reference tensor) pair and its sketch similarity.

    Runs BLAS single-threaded: the products are small matrix-vector ones, where thread start-up costs
    more than it saves (25x slower on a busy 2-core machine).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _sketch_pairs(suspects, reader, bank, progress)


def _sketch_pairs(suspects: list[TensorFingerprint], reader: SuspectReader, bank: ReferenceBank,
                  progress: Callable[[int, int, str], None] | None) -> list[Pair]:
    pairs: list[Pair] = []
    total = sum(s.numel for s in suspects)
    done = 0
    for si, s in enumerate(suspects):
        s2d = s.shape2d
        for shape2d, (idx, centred, raw) in bank.groups.items():
            # placements this reference shape admits, with the reference tensors each applies to
            wanted: dict[Placement, list[int]] = {}
            for row, ti in enumerate(idx):
                rt = bank.tensors[ti].fp
                if not roles_compatible(s.role, rt.role) or (
                        s.role != "other" and (s.role in WEAK_ROLES) != (rt.role in WEAK_ROLES)):
                    continue
                for strategy in PLACEMENT_STRATEGIES:
                    for p in strategy(s, s2d, rt):
                        wanted.setdefault(p, []).append(row)
            for p, rows in wanted.items():
                x = reader.sketch(s.name, shape2d, p).reshape(1, -1)
                xc = normalise_rows(x, centre=True)[0].astype(np.float32)
                xr = normalise_rows(x, centre=False)[0].astype(np.float32)
                sel = np.asarray(rows)
                rs = (centred @ xc)[sel] if len(sel) * 4 > len(idx) else centred[sel] @ xc
                cs = (raw @ xr)[sel] if len(sel) * 4 > len(idx) else raw[sel] @ xr
                for row, r, c in zip(sel, rs, cs):
                    pairs.append(Pair(si, int(idx[row]), p, float(r), float(c), int(x.size)))
        done += s.numel
        if progress:
            progress(done, total, s.name)
    return pairs


def suspect_fingerprints(ckpt: Checkpoint) -> list[TensorFingerprint]:
    """Name-derived facts (role, layer, component) of every float tensor of the suspect, without reading."""
    return [describe_tensor(i) for i in ckpt.tensors() if is_fingerprintable(i)]


# --- Layer alignment ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlignmentCosts:
    """Per-layer costs of the Viterbi alignment (similarity units)."""

    threshold: float = 0.1  # a layer pays this to be matched: below it, leaving the layer unmatched wins
    repeat: float = 0.05
    skip: float = 0.05
    restart: float = 0.3


def align_layers(m: np.ndarray, costs: AlignmentCosts = AlignmentCosts()) -> list[int | None]:
    """Map each suspect layer (row of `m`) to a reference layer (column) or None, maximising total similarity.

    Steps j→j+1 are free; repeats and skips cost a little (depth up-scaling, dropped layers); going
    back costs more (a restart, as in stacked copies); unmatched layers score zero.
    """
    n_s, n_r = m.shape
    if n_s == 0 or n_r == 0:
        return [None] * n_s
    gap = n_r
    emit = np.concatenate([m - costs.threshold, np.zeros((n_s, 1))], axis=1)
    j = np.arange(n_r)
    trans = np.full((n_r + 1, n_r + 1), 0.0)
    diff = j[None, :] - j[:, None]  # to − from
    trans[:n_r, :n_r] = np.where(diff == 1, 0.0, np.where(diff == 0, -costs.repeat,
                                 np.where(diff > 1, -costs.skip, -costs.restart)))
    score = emit[0].copy()
    back = np.zeros((n_s, n_r + 1), dtype=np.int64)
    for i in range(1, n_s):
        cand = score[:, None] + trans
        back[i] = np.argmax(cand, axis=0)
        score = cand[back[i], np.arange(n_r + 1)] + emit[i]
    path = [int(np.argmax(score))]
    for i in range(n_s - 1, 0, -1):
        path.append(int(back[i][path[-1]]))
    path.reverse()
    return [None if p == gap else p for p in path]


def describe_alignment(mapping: list[int | None]) -> list[str]:
    """Plain words for what an alignment shows: repeated, skipped or restarted reference layers."""
    notes = []
    seq = [(i, j) for i, j in enumerate(mapping) if j is not None]
    for (i0, j0), (i1, j1) in zip(seq, seq[1:]):
        if j1 == j0:
            notes.append(f"reference layer {j0} repeated (suspect layers {i0}, {i1})")
        elif j1 < j0:
            notes.append(f"reference layers restart at {j1} after {j0} (suspect layer {i1}): stacked copy")
        elif j1 > j0 + 1:
            notes.append(f"reference layer {j0 + 1} skipped" if j1 == j0 + 2 else f"reference layers {j0 + 1}-{j1 - 1} skipped")
    return notes


@dataclass
class StackMatch:
    """Alignment of one suspect layer stack with one reference layer stack."""

    suspect_stack: str
    reference_stack: str
    suspect_layers: list[int]
    reference_layers: list[int]
    block_similarity: np.ndarray  # suspect layers × reference layers
    mapping: list[int | None]  # per suspect layer: index into reference_layers, or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "suspect_stack": self.suspect_stack,
            "reference_stack": self.reference_stack,
            "suspect_layers": self.suspect_layers,
            "reference_layers": self.reference_layers,
            "layer_map": {str(self.suspect_layers[i]): (None if j is None else self.reference_layers[j])
                          for i, j in enumerate(self.mapping)},
            "block_similarity": np.round(self.block_similarity, 4).tolist(),
        }


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
