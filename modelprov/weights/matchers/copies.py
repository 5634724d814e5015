"""Copy confirmation under any storage: is a matched suspect block the reference itself, cast or quantised?

Blocks whose sketch is (nearly) identical are read in full and compared by value digests at float32,
bfloat16 and float16 precision (bit-identical, or identical after a cast). Every
other close match (sketch similarity ≥ `copy_candidate`) is checked on the sampled entries: each must lie
within the rounding of its stored value (half a quantisation step, half an fp8 ULP) of the reference's.
"""

from __future__ import annotations

import math

from modelprov.progress import CONFIRMING, report
from modelprov.reader import Rounded

from ..evidence import Evidence, TensorMatch
from ..fingerprint import PLAIN_DIGESTS, ModelFingerprint, TensorFingerprint, exact_precision, stored_digest_key
from ..placement import prefix_sketch_rows, region_at, rounded_sketch_at
from ..storage import CopyCheck, copy_check, similarity_floor, stored_sketch
from .base import MatchContext, ReferenceModel, SuspectModel


class CopyMatcher:
    """Confirms fixed-placement matches as copies: by full-read digests, or within the storage's rounding."""

    name = "copies"

    def match(self, suspect: SuspectModel, reference: ReferenceModel, context: MatchContext) -> Evidence:
        if not context.session.verify_exact:
            return Evidence()
        th = context.thresholds
        by_name = {t.name: t for t in reference.fingerprint.tensors}
        dtype = {s.name: s.dtype for s in suspect.tensors}
        confirmed = []
        located = [m for m in context.found.matches if m.located is not None]  # neuron/anchor matches check themselves
        for done, m in enumerate(located, 1):
            report(context.session.progress, CONFIRMING, done, len(located), f"{reference.reference.name}: {m.suspect}")
            rt = by_name[m.reference_tensor]
            stored = stored_sketch_at(reference.fingerprint, rt, m, context)
            exact = None
            near = (m.similarity.centred >= similarity_floor(th.exact_candidate, stored, centre=True)
                    or (m.weak and m.similarity.raw_cosine >= similarity_floor(th.exact_candidate, stored, centre=False)))
            if near:
                exact = stored_copy(suspect, m, rt, dtype[m.suspect]) or exact_precision(
                    region_at(suspect.reader, m.suspect, rt.shape2d, m.located), rt.digests,
                    m.located.rows_held(rt.shape2d[0]))
            copy = None
            if exact is None and not m.weak and m.significant and m.similarity.centred >= th.copy_candidate:
                copy = sketch_copy(suspect, m, rt, stored, context, dtype[m.suspect])
            if exact is not None or copy is not None:
                confirmed.append(m.confirmed(exact, copy))
        return Evidence(confirmed)


def stored_sketch_at(fp: ModelFingerprint, rt: TensorFingerprint, m: TensorMatch, context: MatchContext) -> Rounded:
    """The reference sketch entries a fixed-placement match compared, with their stored rounding (a pre-sliced
    table holds only the first rows)."""
    assert m.located is not None
    stored = stored_sketch(fp, rt.name)
    held = prefix_sketch_rows(rt.shape2d, m.located, context.session.bank.spec)
    return stored if held is None else stored.select(held)


def stored_copy(suspect: SuspectModel, m: TensorMatch, rt: TensorFingerprint, dtype: str) -> str | None:
    """Exact at "f32" when the suspect tensor's stored bytes hash to the reference's digest of the same storage:
    plain floats of the reference's own dtype, placed as is, against its value digest at that precision; GGUF
    quantised blocks against the digest of the reference's own blocks of that type (a tensor of the same shape
    whose stored bytes are equal holds equal values, whatever row order matching placed it in). The same values,
    found by hashing the bytes once instead of decoding them. None means "not shown this way" (value digests decide).

    A reference stored as bf16/f16 was digested after a float32 round trip, which keeps every value except a
    NaN's payload; finite statistics of the reference rule NaNs out."""
    key = stored_digest_key(dtype)
    want = rt.digests.get(key)
    if not want or tuple(suspect.reader.info(m.suspect).shape) != tuple(rt.shape):
        return None
    if dtype not in PLAIN_DIGESTS:  # quantised blocks: byte equality is value equality
        return "f32" if suspect.reader.stored_sha256(m.suspect) == want else None
    p = m.located
    if (dtype != rt.dtype or p is None or p.transpose or p.row_offset or p.row_map or p.prefix_rows
            or (key != "f32" and not (rt.statistics and all(math.isfinite(v) for v in rt.statistics.values())))):
        return None
    return "f32" if suspect.reader.stored_sha256(m.suspect) == want else None


def sketch_copy(suspect: SuspectModel, m: TensorMatch, rt: TensorFingerprint, stored: Rounded, context: MatchContext,
                dtype: str) -> CopyCheck | None:
    """The sampled-entry copy check of one fixed-placement match (None when the storage's rounding is unknown)."""
    assert m.located is not None
    rounded = rounded_sketch_at(suspect.reader, m.suspect, rt.shape2d, m.located, context.session.bank.spec)
    return None if rounded is None else copy_check(rounded, dtype, stored)
