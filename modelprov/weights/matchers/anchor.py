"""Token embeddings matched through the reference's anchors: whole embedding rows of sampled tokens, paired
with the suspect's rows by token string (or id), so reordered, grown or shrunk vocabularies still match."""

from __future__ import annotations

import numpy as np

from ..evidence import Evidence, TensorMatch, WeightThresholds
from ..fingerprint import ModelFingerprint, TensorFingerprint
from ..naming import VOCAB_ROLES
from ..residual import ResidualMap
from ..similarity import Similarity, z_from_log10_p
from ..storage import CopyCheck, copy_check, signed_columns, stored_anchors
from .base import MatchContext, ReferenceModel, SuspectModel
from .neuron import reference_width


class AnchorEmbeddingMatcher:
    """Matches token embeddings and output heads that the earlier matchers left unexplained."""

    name = "anchors"

    def match(self, suspect: SuspectModel, reference: ReferenceModel, context: MatchContext) -> Evidence:
        fp = reference.fingerprint
        if reference_width(fp) is None:
            return Evidence()
        covered = context.found.covered()
        loose = [s for s in suspect.tensors if s.role in VOCAB_ROLES and len(s.shape) == 2 and s.name not in covered]
        if not loose:
            return Evidence()
        maps = context.residual_maps()
        anchor_tensor = next((t for t in fp.tensors if t.name in fp.anchors), None)
        matches = []
        for s in loose:
            rmap = maps.get(s.name)
            # a fitted map is no evidence by itself (independently trained embeddings share geometry); the
            # identity map involves no fit, and with matched layers the embedding belongs to the derived model
            if rmap is not None and anchor_tensor is not None and (rmap.method == "identity" or context.neuron_hits):
                copy = anchor_copy(suspect, s, rmap, fp) if context.session.verify_exact else None
                matches.append(anchor_tensor_match(s, anchor_tensor, rmap, context.thresholds, copy))
        return Evidence(matches, details={"robust": {"embeddings": [m.to_dict() for m in matches]}})


def anchor_copy(suspect: SuspectModel, s: TensorFingerprint, rmap: ResidualMap, fp: ModelFingerprint
                ) -> CopyCheck | None:
    """Are the suspect's rows for the anchor tokens the reference's anchor rows, up to the suspect storage's
    rounding, once a permuted residual stream is undone? None under a rotation or an unknown rounding."""
    if rmap.anchor_pairs is None:
        return None
    tensor, sus_ids, keep = rmap.anchor_pairs
    reference = stored_anchors(fp.anchors[tensor]).select(keep)
    g = rmap.gather(np.arange(reference.values.shape[1]))
    rows = suspect.reader.rounded_rows(s.name, sus_ids)
    if g is None or rows is None:
        return None
    return copy_check(signed_columns(rows, *g), s.dtype, reference)


def anchor_tensor_match(s: TensorFingerprint, anchors_tensor: TensorFingerprint, rmap: ResidualMap,
                        th: WeightThresholds, copy: CopyCheck | None = None) -> TensorMatch:
    """A token embedding matched through its anchors (rows paired by token string or id, held out of the fit)."""
    how = f"rows paired by {rmap.pairing}" + ("" if rmap.method == "identity" else f", residual {rmap.method}")
    sim = Similarity(rmap.heldout_r, rmap.heldout_r, rmap.heldout_rows, z_from_log10_p(rmap.log10_p), rmap.log10_p)
    return TensorMatch(s.name, anchors_tensor.name, s.role, f"embedding anchors ({how})", sim,
                       min(s.numel, anchors_tensor.numel), significant=th.significant(sim), copy=copy)
