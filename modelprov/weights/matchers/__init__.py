"""Matchers: every way of finding a reference's tensors in a suspect, behind one interface (`Matcher`).

`DEFAULT_MATCHERS` is the order `scan_weights` runs them in: sketches first (cheap, most copies), copy
confirmation under the suspect's storage (digests, or rounding of casts and quantisation), then neuron matching and embedding anchors only where nothing
explains the suspect yet. A new matcher is a module here plus its place in that list.
"""

from .anchor import AnchorEmbeddingMatcher
from .base import Matcher, MatchContext, ReferenceModel, ScanSession, SuspectModel
from .copies import CopyMatcher
from .neuron import NEURON_PLACEMENT, NeuronMatcher
from .sketch import SketchMatcher

DEFAULT_MATCHERS: tuple[Matcher, ...] = (SketchMatcher(), CopyMatcher(), NeuronMatcher(), AnchorEmbeddingMatcher())

__all__ = [
    "AnchorEmbeddingMatcher", "CopyMatcher", "DEFAULT_MATCHERS", "MatchContext", "Matcher", "NEURON_PLACEMENT",
    "NeuronMatcher", "ReferenceModel", "ScanSession", "SketchMatcher", "SuspectModel",
]
