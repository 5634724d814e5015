"""Read tokenizers in every common format (tokenizer.json, tiktoken, sentencepiece, vocab/merges, GGUF) as raw bytes.

    from modelprov.reader.tokenizer import read_tokenizer, CheckpointTokenizer
"""

from ._checkpoint import CheckpointTokenizer, checkpoint_tokenizer, checkpoint_tokens, locate_tokenizer
from ._files import (
    TOKENIZER_FILE_PATTERNS, TokenizerFileError, find_tokenizer_file, read_tokenizer, tokenizer_from_gguf_metadata,
)
from ._model import Tokenizer, TokenizerFingerprint
from ._normalise import display
from ._sketch import SCHEME as SKETCH_SCHEME, estimate_jaccard, minhash

__all__ = [
    "CheckpointTokenizer", "SKETCH_SCHEME", "TOKENIZER_FILE_PATTERNS", "Tokenizer", "TokenizerFileError",
    "TokenizerFingerprint", "checkpoint_tokenizer", "checkpoint_tokens", "display", "estimate_jaccard",
    "find_tokenizer_file", "locate_tokenizer", "minhash", "read_tokenizer", "tokenizer_from_gguf_metadata",
]
