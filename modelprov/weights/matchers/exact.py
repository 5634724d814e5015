"""Exact-copy confirmation: read in full the suspect blocks whose sketch is (nearly) identical to the
reference's and compare value digests at float32, bfloat16 and float16 precision."""

from __future__ import annotations

from modelprov.progress import CONFIRMING, report

from ..evidence import Evidence
from ..fingerprint import ValueDigests, digests_match
from ..placement import region_at
from .base import MatchContext, ReferenceModel, SuspectModel


class ExactDigestMatcher:
    """Confirms sketch matches as bit-identical (at some precision) by digests of the full block."""

    name = "exact"

    def match(self, suspect: SuspectModel, reference: ReferenceModel, context: MatchContext) -> Evidence:
        if not context.session.verify_exact:
            return Evidence()
        th = context.thresholds
        by_name = {t.name: t for t in reference.fingerprint.tensors}
        confirmed = []
        near = [m for m in context.found.matches if m.located is not None and (  # neuron/anchor matches: no placement
            m.similarity.centred >= th.exact_candidate or (m.weak and m.similarity.raw_cosine >= th.exact_candidate))]
        for done, m in enumerate(near, 1):
            report(context.session.progress, CONFIRMING, done, len(near), f"{reference.reference.name}: {m.suspect}")
            rt = by_name[m.reference_tensor]
            d = ValueDigests()
            for block in region_at(suspect.reader, m.suspect, rt.shape2d, m.located):
                d.update(block)
            exact = digests_match(d.hexdigests(), rt.digests)
            if exact:
                confirmed.append(m.confirmed(exact))
        return Evidence(confirmed)
