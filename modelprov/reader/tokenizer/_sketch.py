"""Deterministic MinHash sketches of token sets: estimate Jaccard similarity without the full vocabularies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

NUM_PERMUTATIONS = 256
SEED = 20260521
SCHEME = f"blake2b64-multiply-shift-{NUM_PERMUTATIONS}-seed{SEED}"  # stored with sketches; a change invalidates them


def _token_hashes(tokens: Iterable[bytes]) -> np.ndarray:
    """64-bit blake2b hash of each token (stable across runs and machines, unlike `hash()`)."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(t, digest_size=8).digest(), "little") for t in tokens),
                       dtype=np.uint64)


def _permutations(num_permutations: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    a = rng.integers(0, 2**63, size=num_permutations, dtype=np.uint64) * np.uint64(2) + np.uint64(1)  # odd
    b = rng.integers(0, 2**63, size=num_permutations, dtype=np.uint64)
    return a, b


def minhash(tokens: Iterable[bytes], num_permutations: int = NUM_PERMUTATIONS) -> list[int]:
    """MinHash signature of a set of byte strings: per seeded hash function, the smallest value over the set.

    Hash function k is multiply-shift, (a_k * h + b_k) mod 2**64 keeping the top 32 bits: universal, and
    free of the modulo that a prime-field permutation needs.
    """
    hashes = np.unique(_token_hashes(tokens))
    if hashes.size == 0:
        return [2**32] * num_permutations
    a, b = _permutations(num_permutations)
    signature = np.empty(num_permutations, dtype=np.uint64)
    step = 32  # hash functions per block: bounds memory at len(tokens) * 32 * 8 bytes
    with np.errstate(over="ignore"):
        for start in range(0, num_permutations, step):
            block = (hashes[:, None] * a[None, start:start + step] + b[None, start:start + step]) >> np.uint64(32)
            signature[start:start + step] = block.min(axis=0)
    return [int(v) for v in signature]


def estimate_jaccard(a: list[int], b: list[int]) -> float:
    """Share of permutations whose minima agree: an unbiased estimate of the Jaccard similarity."""
    if len(a) != len(b) or not a:
        raise ValueError("MinHash signatures differ in length")
    return float(np.mean(np.asarray(a, dtype=np.uint64) == np.asarray(b, dtype=np.uint64)))
