"""Greedy string tiling on token id arrays."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modelprov.code.tiling import greedy_string_tiling


def test_finds_moved_blocks_longest_first():
    rng = np.random.default_rng(0)
    x, y, z = (rng.integers(0, 1000, n).astype(np.uint64) for n in (40, 25, 15))
    a = np.concatenate([x, y, z])
    b = np.concatenate([z, rng.integers(5000, 6000, 7).astype(np.uint64), y, x])  # reordered, with noise
    tiles = greedy_string_tiling(a, b, min_match=12)
    assert sorted(t.length for t in tiles) == [15, 25, 40]
    assert sum(t.length for t in tiles) == a.shape[0]


def test_short_common_runs_are_ignored():
    a = np.arange(30, dtype=np.uint64)
    b = np.concatenate([np.arange(10, dtype=np.uint64), np.arange(100, 130, dtype=np.uint64)])
    assert greedy_string_tiling(a, b, min_match=12) == []
    assert [t.length for t in greedy_string_tiling(a, b, min_match=10)] == [10]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=120), st.lists(st.integers(0, 3), max_size=120), st.integers(3, 12))
def test_tiles_are_true_disjoint_matches(a_list, b_list, m):
    a, b = np.array(a_list, dtype=np.uint64), np.array(b_list, dtype=np.uint64)
    tiles = greedy_string_tiling(a, b, min_match=m)
    used_a, used_b = np.zeros(a.shape[0], bool), np.zeros(b.shape[0], bool)
    for t in tiles:
        assert t.length >= m
        assert np.array_equal(a[t.a_start : t.a_start + t.length], b[t.b_start : t.b_start + t.length])
        assert not used_a[t.a_start : t.a_start + t.length].any() and not used_b[t.b_start : t.b_start + t.length].any()
        used_a[t.a_start : t.a_start + t.length] = used_b[t.b_start : t.b_start + t.length] = True
    if a.shape[0] >= m and np.array_equal(a, b):
        assert sum(t.length for t in tiles) == a.shape[0]
