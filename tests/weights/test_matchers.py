"""The matcher protocol: every way of producing evidence returns `Evidence`, merged in one place."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelprov.index import ReferenceIndex
from modelprov.reader import open_checkpoint
from modelprov.weights import (
    DEFAULT_MATCHERS, Evidence, Matcher, StackMatch, TensorMatch, merge_evidence, scan_weights,
)
from modelprov.weights.similarity import similarity


def _match(suspect: str, layer: int | None = None, ref_layer: int | None = None, *, r: float = 0.9,
           significant: bool = True, placement: str = "as is", exact: str | None = None) -> TensorMatch:
    return TensorMatch(suspect, "ref." + suspect, "attn_q", placement, similarity(r, r, 4096), 100, layer, ref_layer,
                       exact=exact, significant=significant)


def _stack(suspect_layers: list[int], mapping: list[int | None]) -> StackMatch:
    return StackMatch("model.layers", "model.layers", suspect_layers, [0, 1, 2], np.zeros((len(mapping), 3)), mapping)


def test_a_confirmation_replaces_its_match_in_place():
    first = Evidence([_match("model.layers.0.q", 0, 0), _match("model.layers.1.q", 1, 1)])
    confirmed = first.matches[1].confirmed("bf16")
    merged = merge_evidence(first, Evidence([confirmed]))
    assert [m.exact for m in merged.matches] == [None, "bf16"]
    assert merged.matches[0] is first.matches[0]


def test_new_matches_count_only_for_tensors_no_evidence_explains_yet():
    found = Evidence([_match("model.layers.0.q", 0, 0), _match("model.layers.1.q", 1, 1, significant=False)])
    new = Evidence([_match("model.layers.0.q", 0, 0, placement="neurons matched one-to-one (permuted)"),
                    _match("model.layers.1.q", 1, 1, placement="neurons matched one-to-one (permuted)")])
    merged = merge_evidence(found, new)
    assert [(m.suspect, m.placement) for m in merged.matches] == [
        ("model.layers.0.q", "as is"), ("model.layers.1.q", "as is"),
        ("model.layers.1.q", "neurons matched one-to-one (permuted)")]


def test_an_alignment_mapping_more_layers_replaces_the_stack_and_drops_matches_off_its_path():
    found = Evidence([_match("model.layers.0.q", 0, 0), _match("model.layers.1.q", 1, 2, significant=False)],
                     [_stack([0, 1], [0, None])])
    better = Evidence([], [_stack([0, 1], [0, 1])])
    merged = merge_evidence(found, better)
    assert merged.stacks == better.stacks
    assert [m.suspect for m in merged.matches] == ["model.layers.0.q"]  # (1, 2) is off the new path
    worse = merge_evidence(found, Evidence([], [_stack([0, 1], [None, None])]))
    assert worse.stacks == found.stacks and len(worse.matches) == 2


def test_notes_append_and_details_merge_one_level_deep():
    a = Evidence(notes={"model": ["x"]}, details={"robust": {"ran_for": ["model.layers"]}, "weak_matches": [1]})
    b = Evidence(notes={"model": ["y"], "head": ["z"]}, details={"robust": {"embeddings": []}})
    merged = merge_evidence(a, b)
    assert merged.notes == {"model": ["x", "y"], "head": ["z"]}
    assert merged.details == {"robust": {"ran_for": ["model.layers"], "embeddings": []}, "weak_matches": [1]}


def test_every_default_matcher_implements_the_protocol():
    assert all(isinstance(m, Matcher) for m in DEFAULT_MATCHERS)
    assert [m.name for m in DEFAULT_MATCHERS] == ["sketch", "copies", "neurons", "anchors"]


class _Recorder:
    """A matcher that finds nothing and records what it was shown."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def match(self, suspect, reference, context) -> Evidence:
        self.seen.append((reference.reference.name, len(context.found.matches)))
        return Evidence(details={"recorder": {"tensors": len(suspect.tensors)}})


def test_scan_runs_the_matchers_it_is_given_in_order(minilm_dir: Path, minilm_index: Path):
    recorder = _Recorder()
    references = ReferenceIndex.load(minilm_index).weight_references()
    with open_checkpoint(minilm_dir) as ckpt:
        only = scan_weights(ckpt, references, matchers=[recorder], verify_exact=False)
        after_sketch = scan_weights(ckpt, references, matchers=[DEFAULT_MATCHERS[0], _Recorder()], verify_exact=False)
    assert recorder.seen == [("all-MiniLM-L6-v2", 0)] and only.findings == []
    assert only.parameters["matchers"] == ["recorder"]
    assert after_sketch.findings and after_sketch.findings[0].verdict == "derived"  # no copy matcher: not confirmed
