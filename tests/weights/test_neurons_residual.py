"""Unit tests of the robust-matching statistics on small synthetic tensors: residual maps and neuron matching."""

from __future__ import annotations

import numpy as np
import pytest

from modelprov.weights.neurons import (
    ALPHA, binomial_log10_p, hit_shares, hit_threshold, increasing_share, match_neurons, rank_rows,
)
from modelprov.weights.residual import fit_residual_map


def _anchors(n: int = 600, d: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def _orthogonal(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("method", ["identity", "permutation", "rotation"])
def test_residual_map_recovers_the_transformation_and_scores_it_held_out(method: str) -> None:
    ref = _anchors()
    d = ref.shape[1]
    rng = np.random.default_rng(1)
    if method == "identity":
        q = np.eye(d)
    elif method == "permutation":
        q = np.eye(d)[rng.permutation(d)] * rng.choice([-1.0, 1.0], size=d)
    else:
        q = _orthogonal(d, 2)
    suspect = ref @ q.T + 0.05 * rng.standard_normal(ref.shape)  # suspect = reference in rotated coordinates
    fitted = fit_residual_map(suspect, ref)
    assert fitted.method == method
    assert fitted.heldout_r > 0.99 and fitted.log10_p < -50
    np.testing.assert_allclose(suspect @ fitted.matrix, ref, atol=0.3)


def test_residual_map_of_independent_embeddings_is_no_evidence() -> None:
    fitted = fit_residual_map(_anchors(seed=3), _anchors(seed=4))
    assert abs(fitted.heldout_r) < 0.05
    assert fitted.log10_p > -3


def test_residual_map_apply_gathers_permutations_like_the_matrix_product() -> None:
    ref = _anchors(d=16)
    perm = np.random.default_rng(5).permutation(16)
    fitted = fit_residual_map(ref[:, perm], ref)
    cols = np.array([0, 3, 7, 15])
    v = np.random.default_rng(6).standard_normal((5, 16))
    np.testing.assert_allclose(fitted.apply(v, cols), v @ fitted.matrix[:, cols], atol=1e-6)


def _neurons(n: int, c: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, c))


def test_neuron_matching_finds_a_permutation_and_names_it() -> None:
    ref_full = _neurons(512)
    perm = np.random.default_rng(1).permutation(512)
    suspect = ref_full[perm] + 0.1 * _neurons(512, seed=2)  # suspect row k holds reference neuron perm[k]
    ids = np.arange(0, 512, 4)
    m = match_neurons(rank_rows(ref_full[ids]), ids, 512, rank_rows(suspect))
    assert m.hits == len(ids) and m.log10_p < -100
    np.testing.assert_array_equal(perm[m.suspect_ids], ids)
    assert m.arrangement() == "permuted"


def test_neuron_matching_of_a_pruned_subset_kept_in_order() -> None:
    ref_full = _neurons(512)
    keep = np.sort(np.random.default_rng(3).choice(512, size=256, replace=False))
    ids = np.arange(0, 512, 2)
    m = match_neurons(rank_rows(ref_full[ids]), ids, 512, rank_rows(ref_full[keep]))
    kept = np.isin(ids, keep)
    assert m.hits >= kept.sum() and m.log10_p < -100
    assert m.arrangement() == "in order, pruned to 256 of 512"


def test_heads_permuted_is_told_apart_from_neurons_permuted() -> None:
    head_dim, heads = 16, 8
    ref_full = _neurons(head_dim * heads)
    order = np.array([3, 0, 7, 1, 6, 2, 5, 4])
    rows = (order[:, None] * head_dim + np.arange(head_dim)).ravel()
    ids = np.arange(head_dim * heads)
    m = match_neurons(rank_rows(ref_full), ids, len(ids), rank_rows(ref_full[rows]))
    assert m.arrangement(head_dim) == "heads permuted"
    assert m.arrangement(None) == "permuted"


def test_independent_neurons_hit_at_about_the_nominal_rate() -> None:
    hits, trials = 0, 0
    for seed in range(20):
        ids = np.arange(64)
        m = match_neurons(rank_rows(_neurons(64, seed=100 + seed)), ids, 64, rank_rows(_neurons(1024, seed=200 + seed)))
        hits += m.hits
        trials += len(ids)
        assert m.log10_p > -4
    assert hits <= 5 * ALPHA * trials + 3  # nominal rate α per reference neuron


def test_hit_threshold_grows_with_candidates_and_shrinks_with_coordinates() -> None:
    assert hit_threshold(256, 10) < hit_threshold(256, 10_000)
    assert hit_threshold(1024, 1000) < hit_threshold(256, 1000)
    rng = np.random.default_rng(7)
    # the largest of 2,000 independent correlations over 256 coordinates stays below τ nearly always
    maxima = np.concatenate([(rank_rows(rng.standard_normal((200, 256))) @ rank_rows(rng.standard_normal((2000, 256))).T)
                             .max(axis=1) for _ in range(3)])
    assert np.mean(maxima > hit_threshold(256, 2000)) < 0.01
    assert np.mean(maxima > hit_threshold(256, 2000, alpha=0.5)) > 0.3  # and τ is not needlessly high


def test_binomial_p_and_hit_shares() -> None:
    assert binomial_log10_p(0, 256) == 0.0
    assert binomial_log10_p(10, 256) < binomial_log10_p(2, 256) < 0.0
    ref = _neurons(8)
    shares = hit_shares(rank_rows(np.concatenate([ref, _neurons(8, seed=9)])), 2, rank_rows(ref))
    np.testing.assert_allclose(shares, [1.0, 0.0])


def test_increasing_share() -> None:
    assert increasing_share(np.arange(10)) == 1.0
    assert increasing_share(np.array([0, 2, 1, 3])) == 0.75
    assert increasing_share(np.arange(10)[::-1]) == 0.1


def _convergent_pair(shared: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """512 reference and 512 suspect neurons, independent but for `shared` pairs that share a feature at r ≈ 0.4:
    what two models trained from different seeds on the same data hold."""
    rng = np.random.default_rng(seed)
    ref, sus = rng.standard_normal((512, 128)), rng.standard_normal((512, 128))
    common = rng.standard_normal((shared, 128))
    ref[:shared] = 0.6 * ref[:shared] + 0.8 * common
    sus[rng.permutation(512)[:shared]] = 0.6 * sus[:shared] + 0.8 * common
    return ref, sus


@pytest.mark.parametrize("shared,evidence", [(40, False), (480, True)])
def test_a_few_convergent_features_are_no_evidence_however_small_their_p(shared: int, evidence: bool) -> None:
    """Found on two small Llamas trained 400 steps from seeds 8 and 9 on the same data: 5-16% of the neurons of
    layer 0 and 3 matched above τ (binomial log10 p −27) and the scan said "derived". Most neurons of a copy or a
    derivative match; a few convergent features do not make one."""
    from types import SimpleNamespace

    from modelprov.weights.evidence import WeightThresholds
    from modelprov.weights.matchers.neuron import NeuronEvidence, neuron_tensor_match

    ref, sus = _convergent_pair(shared)
    ids = np.arange(0, 512, 2)
    m = match_neurons(rank_rows(ref[ids]), ids, 512, rank_rows(sus))
    assert m.log10_p < -6  # the binomial test rejects "uncorrelated neurons" in both cases ...
    e = NeuronEvidence("s.weight", SimpleNamespace(name="r.weight", role="mlp_up", layer=0), m, "rows", 0, "permuted",
                       512 * 128)
    assert neuron_tensor_match(e, WeightThresholds()).significant is evidence  # ... the hit share decides
    assert (m.hit_share >= 0.5) is evidence
