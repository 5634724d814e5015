"""The one interface every way of producing tensor evidence implements, and what it may use.

    class MyMatcher:
        name = "my-method"
        def match(self, suspect: SuspectModel, reference: ReferenceModel, context: MatchContext) -> Evidence: ...

`scan_weights` runs its matchers in order for each reference and merges their evidence with
`merge_evidence` (in `modelprov.weights.evidence`), so a later matcher sees what earlier ones found in
`context.found` (to confirm it, or to look only where nothing was found yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Protocol, runtime_checkable

from modelprov.findings import Reference
from modelprov.progress import ProgressFn
from modelprov.reader import Checkpoint, SuspectReader

from .._bank import Pair, ReferenceBank, sketch_pairs
from ..alignment import AlignmentCosts
from ..evidence import Evidence, WeightThresholds
from ..fingerprint import ModelFingerprint, TensorFingerprint
from ..residual import ResidualMap, residual_maps

TokensFn = Callable[[], "dict[bytes, int] | None"]


@dataclass
class SuspectModel:
    """The checkpoint under scan as matchers see it: name-derived tensor facts and a byte-counting reader."""

    checkpoint: Checkpoint
    tensors: list[TensorFingerprint]
    reader: SuspectReader
    tokens: TokensFn = lambda: None  # its regular vocabulary (token bytes → id), read only if a matcher asks

    @cached_property
    def component_of(self) -> dict[str, str]:
        return {s.name: s.component for s in self.tensors}


@dataclass(frozen=True)
class ReferenceModel:
    """One reference under verification: its catalogue entry, fingerprint and position in the bank."""

    index: int
    reference: Reference
    fingerprint: ModelFingerprint


class ScanSession:
    """What every reference of one scan shares: the reference bank, sketch pairs (computed once), caches."""

    def __init__(self, suspect: SuspectModel, bank: ReferenceBank, *, thresholds: WeightThresholds,
                 costs: AlignmentCosts, verify_exact: bool, progress: ProgressFn | None = None) -> None:
        self.suspect = suspect
        self.bank = bank
        self.thresholds = thresholds
        self.costs = costs
        self.verify_exact = verify_exact
        self.progress = progress
        self.probe_cache: dict[tuple, Any] = {}  # neuron views of probe layers under the unchanged residual map
        self._pairs: list[Pair] | None = None
        self._pairs_by_ref: dict[int, list[Pair]] = {}

    @property
    def pairs(self) -> list[Pair]:
        """Sketch similarity of every compatible (suspect tensor, placement, reference tensor) of the bank."""
        if self._pairs is None:
            s = self.suspect
            self._pairs = sketch_pairs(s.tensors, s.reader, self.bank, progress=self.progress) if self.bank else []
            for p in self._pairs:
                self._pairs_by_ref.setdefault(self.bank.tensors[p.ref_tensor].ref, []).append(p)
        return self._pairs

    def pairs_of(self, ref_index: int) -> list[Pair]:
        """The sketch pairs of one reference, in the order they were computed."""
        _ = self.pairs
        return self._pairs_by_ref.get(ref_index, [])

    def references(self) -> list[ReferenceModel]:
        return [ReferenceModel(i, r, f) for i, (r, f) in enumerate(zip(self.bank.references, self.bank.fingerprints))]


@dataclass
class MatchContext:
    """What a matcher may use for one reference besides the suspect: thresholds, the scan's shared state and
    the evidence earlier matchers found for this reference."""

    session: ScanSession
    reference: ReferenceModel
    found: Evidence = field(default_factory=Evidence)
    neuron_hits: bool = False  # neuron matching found hits in some layer (a fitted embedding map may then count)
    _maps: dict[str, ResidualMap] | None = field(default=None, repr=False)

    @property
    def thresholds(self) -> WeightThresholds:
        return self.session.thresholds

    @property
    def costs(self) -> AlignmentCosts:
        return self.session.costs

    def pairs(self) -> list[Pair]:
        return self.session.pairs_of(self.reference.index)

    def residual_maps(self) -> dict[str, ResidualMap]:
        """Residual maps fitted on each suspect embedding against this reference's anchors (once per reference)."""
        if self._maps is None:
            fp, s = self.reference.fingerprint, self.session.suspect
            self._maps = residual_maps(s.reader, s.tensors, fp, s.tokens()) if fp.anchors else {}
        return self._maps

    @property
    def maps_fitted(self) -> dict[str, ResidualMap]:
        """The residual maps if a matcher asked for them, else {} (for the report)."""
        return self._maps or {}


@runtime_checkable
class Matcher(Protocol):
    """A way of finding a reference's tensors in the suspect."""

    name: str

    def match(self, suspect: SuspectModel, reference: ReferenceModel, context: MatchContext) -> Evidence:
        """Evidence for `reference` in `suspect`; `context.found` holds what earlier matchers found."""
        ...
