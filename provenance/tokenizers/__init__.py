"""Tokenizer provenance: read tokenizers in any common format, fingerprint them, compare with references."""

from .model import Tokenizer, TokenizerFingerprint
from .readers import TokenizerFileError, find_tokenizer_file, read_tokenizer

__all__ = ["Tokenizer", "TokenizerFingerprint", "TokenizerFileError", "find_tokenizer_file", "read_tokenizer"]
