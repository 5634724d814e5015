"""Greedy string tiling (Wise 1993, as in JPlag): maximal non-overlapping common token runs, longest first.

Seeds come from equal `min_match`-gram hashes on both sides (Karp-Rabin), are merged into maximal
diagonal runs, then accepted longest first; a run that overlaps accepted tiles is cut into its free parts.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from .fingerprint import kgram_hashes

MAX_SEED_REPEATS = 64  # bounds the seed pairs of pathological, highly repetitive token streams


@dataclass(frozen=True)
class Tile:
    """A common run: `a[a_start:a_start+length] == b[b_start:b_start+length]`."""

    a_start: int
    b_start: int
    length: int


def _seed_runs(a: np.ndarray, b: np.ndarray, m: int) -> list[tuple[int, int, int]]:
    ha, hb = kgram_hashes(a, m), kgram_hashes(b, m)
    if ha.shape[0] == 0 or hb.shape[0] == 0:
        return []
    order = np.argsort(hb, kind="stable")
    sorted_hb = hb[order]
    lo = np.searchsorted(sorted_hb, ha, "left")
    counts = np.searchsorted(sorted_hb, ha, "right") - lo
    counts[counts > MAX_SEED_REPEATS] = 0  # filler repeated many times (tables, padding) seeds nothing
    total = int(counts.sum())
    if total == 0:
        return []
    i = np.repeat(np.arange(ha.shape[0]), counts)
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    j = order[np.repeat(lo, counts) + within]
    diagonal = j - i
    by = np.lexsort((i, diagonal))
    i, diagonal = i[by], diagonal[by]
    starts = np.ones(i.shape[0], dtype=bool)
    starts[1:] = (diagonal[1:] != diagonal[:-1]) | (i[1:] != i[:-1] + 1)
    first = np.flatnonzero(starts)
    last = np.append(first[1:], i.shape[0]) - 1
    return [(int(i[f]), int(i[f] + diagonal[f]), int(i[l] - i[f] + m)) for f, l in zip(first, last)]


def greedy_string_tiling(a: np.ndarray, b: np.ndarray, min_match: int = 12) -> list[Tile]:
    """Tiles covering the tokens `a` and `b` share in runs of at least `min_match`, longest first."""
    if a.shape[0] < min_match or b.shape[0] < min_match:
        return []
    heap = [(-length, ai, bi) for ai, bi, length in _seed_runs(a, b, min_match)]
    heapq.heapify(heap)
    marked_a = np.zeros(a.shape[0], dtype=bool)
    marked_b = np.zeros(b.shape[0], dtype=bool)
    tiles: list[Tile] = []
    while heap:
        neg, ai, bi = heapq.heappop(heap)
        length = -neg
        free = ~(marked_a[ai : ai + length] | marked_b[bi : bi + length])
        if free.all():
            if not np.array_equal(a[ai : ai + length], b[bi : bi + length]):  # hash collision
                continue
            marked_a[ai : ai + length] = True
            marked_b[bi : bi + length] = True
            tiles.append(Tile(ai, bi, length))
            continue
        edges = np.diff(free.astype(np.int8), prepend=0, append=0)
        for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            if e - s >= min_match:
                heapq.heappush(heap, (-(int(e) - int(s)), ai + int(s), bi + int(s)))
    tiles.sort(key=lambda t: (t.a_start, t.b_start))
    return tiles
