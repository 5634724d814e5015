"""Tokenizer provenance: read tokenizers in any common format, fingerprint them, compare with references.

    from provenance.tokenizers import read_tokenizer, compare_tokenizers, scan_tokenizers, token_mapping
    compare_tokenizers(read_tokenizer("suspect/"), read_tokenizer("qwen.tiktoken")).verdict
"""

from .compare import MergeAgreement, SpecialTokenAgreement, TokenizerComparison, compare_tokenizers
from .mapping import TokenMapping, token_mapping
from .model import Tokenizer, TokenizerFingerprint
from .readers import TokenizerFileError, find_tokenizer_file, read_tokenizer
from .reference import (
    REFERENCE_SOURCES, ReferenceSource, ReferenceTokenizerEntry, build_reference_tokenizers, load_reference_entries,
    reference_tokenizer,
)
from .scan import CheckpointTokenizer, checkpoint_tokenizer, checkpoint_tokens, compare_with_references, locate_tokenizer, scan_tokenizers

__all__ = [
    "MergeAgreement", "REFERENCE_SOURCES", "ReferenceSource", "ReferenceTokenizerEntry", "SpecialTokenAgreement",
    "TokenMapping", "Tokenizer", "TokenizerComparison", "TokenizerFileError", "TokenizerFingerprint",
    "build_reference_tokenizers", "compare_tokenizers", "compare_with_references", "find_tokenizer_file",
    "CheckpointTokenizer", "checkpoint_tokenizer", "checkpoint_tokens", "load_reference_entries", "locate_tokenizer", "read_tokenizer", "reference_tokenizer", "scan_tokenizers",
    "token_mapping",
]
