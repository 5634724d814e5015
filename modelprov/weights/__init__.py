"""Weights provenance: fingerprints, honest similarity statistics, matchers and the weights scan.

    from modelprov.weights import scan_weights, compare, fingerprint_checkpoint
"""

from .alignment import AlignmentCosts, StackMatch, align_layers, describe_alignment
from .compare import Comparison, TensorComparison, compare, write_heatmaps
from .evidence import Evidence, TensorMatch, WeightThresholds, merge_evidence
from .fingerprint import (
    WEAK_ROLES, ModelFingerprint, SketchSpec, TensorFingerprint, fingerprint_checkpoint, sampled_fingerprint,
    suspect_fingerprints,
)
from .inspect import Inspection, config_facts, inspect_checkpoint
from .matchers import DEFAULT_MATCHERS, Matcher, MatchContext, ReferenceModel, SuspectModel
from .naming import infer_role, top_level_component
from .matchers.base import TokensFn
from .scan import RetrieveFn, WeightsScan, scan_weights
from .similarity import Similarity, centred_similarity, compare_arrays, raw_cosine

__all__ = [
    "AlignmentCosts", "Comparison", "DEFAULT_MATCHERS", "Evidence", "Inspection", "MatchContext", "Matcher",
    "ModelFingerprint", "ReferenceModel", "RetrieveFn", "Similarity", "SketchSpec", "StackMatch", "SuspectModel",
    "TensorComparison", "TensorFingerprint", "TensorMatch", "TokensFn", "WEAK_ROLES", "WeightThresholds", "WeightsScan",
    "align_layers", "centred_similarity", "compare", "compare_arrays", "config_facts", "describe_alignment",
    "fingerprint_checkpoint", "infer_role", "inspect_checkpoint", "merge_evidence", "raw_cosine",
    "sampled_fingerprint", "scan_weights", "suspect_fingerprints", "top_level_component", "write_heatmaps",
]
