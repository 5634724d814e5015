"""The normalised tokenizer every reader produces and every comparison consumes, and its fingerprint."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ._sketch import minhash

TokenizerModel = str  # "bpe", "wordpiece", "unigram"


@dataclass
class Tokenizer:
    """A vocabulary read from files: regular tokens as raw bytes with their ids, special tokens, merge order.

    `tokens` maps each normalised regular token to its id; `special_tokens` maps added/control tokens
    (kept as text, never byte-decoded) to their ids; `merges` lists the tokens BPE merges produce, in merge
    order (first production), or None for WordPiece/Unigram vocabularies.
    """

    source: str
    format: str  # "tokenizer.json", "tiktoken", "sentencepiece", "vocab.txt", "vocab.json+merges.txt", "gguf"
    model: TokenizerModel
    encoding: str  # how the file stored tokens: "byte-level", "base64", "metaspace", "wordpiece", "utf-8"
    tokens: dict[bytes, int]
    special_tokens: dict[str, int] = field(default_factory=dict)
    merges: list[bytes] | None = None
    collisions: int = 0  # tokens that normalised to a form already present (first id kept)
    name: str | None = None

    @property
    def vocab_size(self) -> int:
        """Number of ids the embedding needs: one past the largest id used."""
        ids = list(self.tokens.values()) + list(self.special_tokens.values())
        return max(ids) + 1 if ids else 0

    def sketch(self) -> list[int]:
        """MinHash signature of the regular token set, computed once (a read tokenizer is not changed in place)."""
        key = (id(self.tokens), len(self.tokens))
        cached = self.__dict__.get("_sketch")
        if cached is None or cached[0] != key:
            cached = (key, minhash(self.tokens))
            self.__dict__["_sketch"] = cached
        return cached[1]

    def by_id(self) -> dict[int, bytes]:
        """Id -> normalised regular token."""
        return {i: t for t, i in self.tokens.items()}

    def vocabulary_digest(self) -> str:
        """sha256 of the regular tokens with their ids and the merge order: equal for the same vocabulary in any format."""
        by_id = sorted(self.tokens.items(), key=lambda kv: kv[1])
        tokens = b"".join(b"%d %s\n" % (i, base64.b64encode(t)) for t, i in by_id)
        merges = b"".join(base64.b64encode(product) + b"\n" for product in self.merges or [])
        return hashlib.sha256(b"tokens\n" + tokens + b"merges\n" + merges).hexdigest()  # one update, not one per token

    def digest(self, vocabulary_digest: str | None = None) -> str:
        """sha256 of the vocabulary digest (computed unless given) plus the special tokens and their ids: the
        exact tokenizer."""
        h = hashlib.sha256((vocabulary_digest or self.vocabulary_digest()).encode())
        for text, i in sorted(self.special_tokens.items(), key=lambda kv: (kv[1], kv[0])):
            h.update(f"{i} {text}\n".encode())
        return h.hexdigest()

    def fingerprint(self) -> TokenizerFingerprint:
        """Digests, sizes, special tokens and a MinHash sketch: what the index keeps to recognise this tokenizer."""
        vocabulary = self.vocabulary_digest()
        return TokenizerFingerprint(
            name=self.name or self.source,
            source=self.source,
            format=self.format,
            model=self.model,
            encoding=self.encoding,
            digest=self.digest(vocabulary),
            vocabulary_digest=vocabulary,
            regular_tokens=len(self.tokens),
            special_tokens=dict(sorted(self.special_tokens.items(), key=lambda kv: kv[1])),
            merges=None if self.merges is None else len(self.merges),
            vocab_size=self.vocab_size,
            collisions=self.collisions,
            minhash=self.sketch(),
        )


@dataclass
class TokenizerFingerprint:
    """A tokenizer's identity without its vocabulary: digests, sizes, specials, MinHash sketch of the token set."""

    name: str
    source: str
    format: str
    model: str
    encoding: str
    digest: str
    vocabulary_digest: str
    regular_tokens: int
    special_tokens: dict[str, int]
    merges: int | None
    vocab_size: int
    collisions: int
    minhash: list[int]

    def to_dict(self, with_sketch: bool = True) -> dict[str, Any]:
        d = dict(self.__dict__)
        if not with_sketch:
            d.pop("minhash")
        return d
