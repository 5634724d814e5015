"""Stable token hashes, k-gram hashes and winnowing (Schleimer, Wilkerson & Aiken 2003).

Every hash is derived from blake2b of the token text and fixed integer arithmetic, never Python's
`hash()`, so an index written today matches a scan run tomorrow under any PYTHONHASHSEED.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

_BASE = np.uint64(0x100000001B3)  # FNV-64 prime as the polynomial base
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64 finaliser constants
_MIX2 = np.uint64(0x94D049BB133111EB)
NO_HASH = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class FingerprintParams:
    """Winnowing parameters: k-gram length (noise threshold) and window; guarantee t = k + w - 1 tokens."""

    k: int = 17
    window: int = 10
    min_match: int = 12  # minimum tile length for greedy string tiling (JPlag's choice for Python/C++)
    scheme: str = "ts-abstract-v2"  # bump when tokenisation changes: old indexes then refuse to load

    @property
    def guarantee(self) -> int:
        return self.k + self.window - 1

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_PARAMS = FingerprintParams()


@lru_cache(maxsize=None)
def token_id(text: str) -> int:
    """A stable 64-bit id of one abstracted token (blake2b, independent of the interpreter)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def stream_digests(ids: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """A stable 64-bit digest of each consecutive run of `sizes` tokens (equal streams, equal digests)."""
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    ids = np.ascontiguousarray(ids, dtype=np.uint64)
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(ids[lo:hi].tobytes(), digest_size=8).digest(), "little")
            for lo, hi in zip(bounds[:-1], bounds[1:])
        ],
        dtype=np.uint64,
    )


def _mix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


def kgram_hashes(ids: np.ndarray, k: int) -> np.ndarray:
    """Hash of every run of `k` consecutive token ids (polynomial over uint64, then mixed)."""
    n = ids.shape[0] - k + 1
    if n <= 0:
        return np.empty(0, dtype=np.uint64)
    ids = ids.astype(np.uint64, copy=False)
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(k):
            h = h * _BASE + ids[offset : offset + n]
        return _mix(h)


def kgram_hashes_at(ids: np.ndarray, positions: np.ndarray, k: int, vocab: np.ndarray | None = None) -> np.ndarray:
    """The hash of the k-gram starting at each of `positions` (equal to `kgram_hashes(ids, k)[positions]`).

    A stored index keeps only where its fingerprints start; their hashes are recomputed from the tokens.
    With `vocab`, `ids` are indices into it (an index's small token codes).
    """
    positions = np.asarray(positions, dtype=np.int64)
    h = np.zeros(positions.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(k):
            step = ids[positions + offset]
            h = h * _BASE + (vocab[step] if vocab is not None else step.astype(np.uint64, copy=False))
        return _mix(h)


def winnow(hashes: np.ndarray, window: int) -> np.ndarray:
    """Positions chosen by winnowing: the rightmost minimum of every window, each position once.

    A sequence shorter than one window keeps its minimum, so short functions still get a fingerprint.
    """
    n = hashes.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if n <= window:
        return np.array([n - 1 - int(np.argmin(hashes[::-1]))], dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(hashes, window)
    rightmost = window - 1 - np.argmin(windows[:, ::-1], axis=1)
    return np.unique(np.arange(windows.shape[0]) + rightmost)


def unit_fingerprints(ids: np.ndarray, params: FingerprintParams = DEFAULT_PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """Winnowed (hashes, start positions) of one unit's abstracted tokens."""
    hashes = kgram_hashes(ids, params.k)
    positions = winnow(hashes, params.window)
    return hashes[positions], positions


def file_fingerprints(
    ids: np.ndarray, unit_of: np.ndarray, params: FingerprintParams = DEFAULT_PARAMS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Winnowed fingerprints of every unit of a file at once: (hashes, unit index, start position).

    Positions index the file's tokens grouped by unit (`argsort(unit_of, kind="stable")`), the order an
    index stores them in. k-grams never straddle two units; each unit also keeps its own minimum, so
    short functions count.
    """
    k = params.k
    order = np.argsort(unit_of, kind="stable")
    units = unit_of[order]
    grams = kgram_hashes(ids[order], k)
    if grams.shape[0] == 0:
        empty = np.empty(0, dtype=np.int64)
        return np.empty(0, dtype=np.uint64), empty, empty
    gram_unit = units[: grams.shape[0]]
    valid = gram_unit == units[k - 1 :]
    grams = np.where(valid, grams, NO_HASH)
    chosen = winnow(grams, params.window)
    valid_positions = np.flatnonzero(valid)
    if valid_positions.shape[0]:
        by_unit = valid_positions[np.lexsort((grams[valid_positions], gram_unit[valid_positions]))]
        firsts = by_unit[np.r_[True, gram_unit[by_unit][1:] != gram_unit[by_unit][:-1]]]
        chosen = np.union1d(chosen, firsts)
    chosen = chosen[valid[chosen]]
    return grams[chosen], gram_unit[chosen].astype(np.int64), chosen.astype(np.int64)
