"""Deterministic MinHash sketches of token sets: estimate Jaccard similarity without the full vocabularies."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

NUM_PERMUTATIONS = 256
SEED = 20260521
_PRIME = (1 << 31) - 1  # Mersenne prime: a*h + b stays below 2**63 for 31-bit a, h


def _token_hashes(tokens: Iterable[bytes]) -> np.ndarray:
    """31-bit blake2b hash of each token (stable across runs and machines, unlike `hash()`)."""
    values = [int.from_bytes(hashlib.blake2b(t, digest_size=8).digest(), "little") for t in tokens]
    return np.asarray(values, dtype=np.uint64) % np.uint64(_PRIME)


def _permutations(num_permutations: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    a = rng.integers(1, _PRIME, size=num_permutations, dtype=np.uint64)
    b = rng.integers(0, _PRIME, size=num_permutations, dtype=np.uint64)
    return a, b


def minhash(tokens: Iterable[bytes], num_permutations: int = NUM_PERMUTATIONS) -> list[int]:
    """MinHash signature of a set of byte strings: for each seeded permutation, the smallest hash value."""
    hashes = np.unique(_token_hashes(tokens))
    if hashes.size == 0:
        return [_PRIME] * num_permutations
    a, b = _permutations(num_permutations)
    signature = np.empty(num_permutations, dtype=np.uint64)
    step = 32  # permutations per block: bounds memory at len(tokens) * 32 * 8 bytes
    for start in range(0, num_permutations, step):
        block = (hashes[:, None] * a[None, start:start + step] + b[None, start:start + step]) % np.uint64(_PRIME)
        signature[start:start + step] = block.min(axis=0)
    return [int(v) for v in signature]


def estimate_jaccard(a: list[int], b: list[int]) -> float:
    """Share of permutations whose minima agree: an unbiased estimate of the Jaccard similarity."""
    if len(a) != len(b) or not a:
        raise ValueError("MinHash signatures differ in length")
    return float(np.mean(np.asarray(a, dtype=np.uint64) == np.asarray(b, dtype=np.uint64)))
