"""Tokenizer provenance: compare a tokenizer with each other or with the reference tokenizers of the index.

    from modelprov.tokenizers import read_tokenizer, compare_tokenizers, scan_tokenizers, token_mapping
    compare_tokenizers(read_tokenizer("suspect/"), read_tokenizer("qwen.tiktoken")).verdict

Reading tokenizer files is the reader's job (`modelprov.reader.tokenizer`); `read_tokenizer` and
`Tokenizer` are repeated here because every tokenizer comparison starts with them.
"""

from modelprov.reader.tokenizer import Tokenizer, TokenizerFingerprint, read_tokenizer

from .compare import MergeAgreement, SpecialTokenAgreement, TokenizerComparison, compare_tokenizers
from .mapping import TokenMapping, token_mapping
from .reference import (
    REFERENCE_SOURCES, ReferenceSource, ReferenceTokenizerEntry, build_reference_tokenizers, load_reference_entries,
    reference_tokenizer, register_in_index, resolve_tokenizer,
)
from .scan import compare_with_references, scan_tokenizers

__all__ = [
    "MergeAgreement", "REFERENCE_SOURCES", "ReferenceSource", "ReferenceTokenizerEntry", "SpecialTokenAgreement",
    "TokenMapping", "Tokenizer", "TokenizerComparison", "TokenizerFingerprint", "build_reference_tokenizers",
    "compare_tokenizers", "compare_with_references", "load_reference_entries", "read_tokenizer",
    "reference_tokenizer", "register_in_index", "resolve_tokenizer", "scan_tokenizers", "token_mapping",
]
