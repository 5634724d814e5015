"""Where a reference tensor may sit inside a suspect tensor, without trusting names: as stored, transposed,
at a row offset of a fused projection (or a grown vocabulary), in llama.cpp's q/k row order, or as the first
rows only of a position table an exporter pre-sliced (ONNX constant folding).

New ways a copy can be laid out are new placement strategies (`PLACEMENT_STRATEGIES`); reading the suspect
at a placement (`sketch_at`, `region_at`) is the same for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from modelprov.reader import Rounded, SuspectReader

from .fingerprint import WEAK_ROLES, SketchSpec, TensorFingerprint, gguf_qk_permutation, sketch_indices
from .naming import roles_compatible

_FUSED_ROLES = frozenset({"attn_qkv", "mlp_gate_up", "other", "token_embedding", "lm_head", "router"})
_PRESLICED_ROLES = frozenset({"position_embedding"})  # tables an exporter may cut to the sequence it traced
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
        if self.prefix_rows:
            parts.append(f"first {self.prefix_rows} of {self.ref_rows} rows only (pre-sliced)")
        return ", ".join(parts) or "as is"

    def rows_held(self, ref_rows: int) -> int:
        """Rows of the reference (of `ref_rows`) the suspect holds at this placement: all but a pre-sliced table's."""
        return self.prefix_rows or ref_rows

    def suspect_rows(self, ref_rows: np.ndarray) -> np.ndarray:
        """Suspect rows (in reference orientation) that hold reference rows `ref_rows`."""
        rows = ref_rows
        if self.row_map == "gguf_qk" and self.heads:
            rows = np.argsort(gguf_qk_permutation(self.ref_rows, self.heads))[rows]
        return rows + self.row_offset

    ref_rows: int = 0  # reference row count, needed by row maps
    prefix_rows: int = 0  # the suspect holds only the reference's first rows, this many (a pre-sliced table)


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
        yield Placement(row_offset=off, ref_rows=a)


def transposed_placements(suspect: TensorFingerprint, s2d: tuple[int, int], ref: TensorFingerprint) -> Iterator[Placement]:
    """Stored transposed (GPT-2 Conv1D, some exporters), possibly fused along the reference's rows."""
    (m, w), (a, b) = s2d, ref.shape2d
    if len(suspect.shape) != 2 or len(ref.shape) != 2 or m != b or w < a:
        return
    if w > a and suspect.role not in _FUSED_ROLES:
        return
    for off in _offsets(w, a):
        yield Placement(transpose=True, row_offset=off, ref_rows=a)


def gguf_qk_placements(suspect: TensorFingerprint, s2d: tuple[int, int], ref: TensorFingerprint) -> Iterator[Placement]:
    """q/k rows permuted by llama.cpp's converter (the reference is kept in Hugging Face order), stored as is
    or transposed (a GGUF's tensors re-exported in Conv1D layout)."""
    if ref.role not in ("attn_q", "attn_k") or not ref.heads or ref.shape2d[0] % (2 * ref.heads):
        return
    for p in (*direct_placements(suspect, s2d, ref), *transposed_placements(suspect, s2d, ref)):
        yield Placement(p.transpose, p.row_offset, "gguf_qk", ref.heads, p.ref_rows)


def prefix_placements(suspect: TensorFingerprint, s2d: tuple[int, int], ref: TensorFingerprint) -> Iterator[Placement]:
    """A position table cut to its first rows by the exporter ([1, 64, H] of a [512, H] table): compared row-wise
    against the reference's first rows only."""
    (m, w), (a, b) = s2d, ref.shape2d
    if ref.role not in _PRESLICED_ROLES or suspect.role not in (ref.role, "other") or len(suspect.shape) != 2 \
            or w != b or not 2 <= m < a:
        return
    yield Placement(prefix_rows=m, ref_rows=a)


PLACEMENT_STRATEGIES: list[PlacementStrategy] = [direct_placements, transposed_placements, gguf_qk_placements,
                                                 prefix_placements]


def placements_for(suspect: TensorFingerprint, s2d: tuple[int, int], refs: Iterable[TensorFingerprint]
                   ) -> dict[Placement, list[int]]:
    """Every placement of the suspect tensor admitted by some reference tensor of one shape, with the positions
    (in `refs`) of the reference tensors it applies to: roles must be compatible and a weak role (norms, biases)
    meets only a weak role."""
    wanted: dict[Placement, list[int]] = {}
    for pos, rt in enumerate(refs):
        if not roles_compatible(suspect.role, rt.role) or (
                suspect.role != "other" and (suspect.role in WEAK_ROLES) != (rt.role in WEAK_ROLES)):
            continue
        for strategy in PLACEMENT_STRATEGIES:
            for p in strategy(suspect, s2d, rt):
                wanted.setdefault(p, []).append(pos)
    return wanted


def prefix_sketch_rows(ref_shape2d: tuple[int, int], placement: Placement, spec: SketchSpec) -> np.ndarray | None:
    """For a pre-sliced placement: which rows of the reference sketch the suspect holds (None: all of them)."""
    if not placement.prefix_rows:
        return None
    return sketch_indices(ref_shape2d, spec)[0] < placement.prefix_rows


def _sketch_positions(ref_shape2d: tuple[int, int], placement: Placement, spec: SketchSpec
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The reference sketch rows and columns the suspect holds at this placement."""
    rows, cols = sketch_indices(ref_shape2d, spec)
    if placement.prefix_rows:  # only the sketch rows the pre-sliced table holds
        rows = rows[rows < placement.prefix_rows]
    return rows, cols


def sketch_at(reader: SuspectReader, name: str, ref_shape2d: tuple[int, int], placement: Placement,
              spec: SketchSpec) -> np.ndarray:
    """The suspect's entries at the reference sketch positions, in reference orientation."""
    rows, cols = _sketch_positions(ref_shape2d, placement, spec)
    if placement.transpose:  # suspect rows are reference columns
        return reader.cached_rows(name, cols)[:, placement.suspect_rows(rows)].T
    return reader.cached_rows(name, placement.suspect_rows(rows))[:, cols]


def rounded_sketch_at(reader: SuspectReader, name: str, ref_shape2d: tuple[int, int], placement: Placement,
                      spec: SketchSpec) -> Rounded | None:
    """`sketch_at` with each entry's rounding interval in the suspect's storage (None when unknown)."""
    rows, cols = _sketch_positions(ref_shape2d, placement, spec)
    if placement.transpose:
        block = reader.rounded_rows(name, cols)
        return None if block is None else block.select((slice(None), placement.suspect_rows(rows))).T
    block = reader.rounded_rows(name, placement.suspect_rows(rows))
    return None if block is None else block.select((slice(None), cols))


def region_at(reader: SuspectReader, name: str, ref_shape2d: tuple[int, int], placement: Placement
              ) -> Iterator[np.ndarray]:
    """The full block of the suspect that holds the reference, in reference layout, in row blocks."""
    a = placement.rows_held(ref_shape2d[0])
    if placement.transpose:
        yield reader.rows(name).T[placement.suspect_rows(np.arange(a))]
        return
    if placement.row_map:
        yield reader.rows(name, placement.suspect_rows(np.arange(a)))
        return
    for _, block in reader.row_blocks(name, placement.row_offset, placement.row_offset + a):
        yield block


def rounded_region_at(reader: SuspectReader, name: str, ref_shape2d: tuple[int, int], placement: Placement
                      ) -> Rounded | None:
    """`region_at` as one block with each entry's rounding in the suspect's storage (None when unknown)."""
    a = ref_shape2d[0]
    if placement.transpose:
        whole = reader.rounded_rows(name)
        return None if whole is None else whole.T.select(placement.suspect_rows(np.arange(a)))
    if placement.row_map:
        return reader.rounded_rows(name, placement.suspect_rows(np.arange(a)))
    return reader.rounded_rows(name, slice(placement.row_offset, placement.row_offset + a))
