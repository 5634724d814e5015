"""Which suspect token id is which reference token id: lets the weight matcher align embedding rows by token."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from modelprov.reader.tokenizer import Tokenizer, display, read_tokenizer

TokenizerLike = Union[Tokenizer, str, "os.PathLike[str]"]


@dataclass
class TokenMapping:
    """Pairs of ids (suspect, reference) for every token string both tokenizers define, sorted by suspect id.

    Regular tokens pair by their normalised bytes, special tokens by their text (`special` marks those).
    """

    suspect_ids: np.ndarray  # int64
    reference_ids: np.ndarray  # int64
    tokens: list[bytes]  # normalised regular token bytes, or UTF-8 text of a special token
    special: np.ndarray  # bool

    def __len__(self) -> int:
        return int(self.suspect_ids.size)

    @property
    def same_id_share(self) -> float:
        """Share of pairs whose ids are equal (1.0 when one vocabulary extends the other with ids kept)."""
        return float(np.mean(self.suspect_ids == self.reference_ids)) if len(self) else 0.0

    def to_dict(self, examples: int = 10) -> dict[str, Any]:
        return {"pairs": len(self), "special_pairs": int(self.special.sum()), "same_id_share": self.same_id_share,
                "examples": [{"suspect_id": int(s), "reference_id": int(r), "token": display(t)}
                             for s, r, t in zip(self.suspect_ids[:examples], self.reference_ids[:examples],
                                                self.tokens[:examples])]}


def _as_tokenizer(value: TokenizerLike) -> Tokenizer:
    return value if isinstance(value, Tokenizer) else read_tokenizer(value)


def token_mapping(suspect: TokenizerLike, reference: TokenizerLike) -> TokenMapping:
    """Map each token string present in both tokenizers to its (suspect id, reference id) pair."""
    s, r = _as_tokenizer(suspect), _as_tokenizer(reference)
    rows: list[tuple[int, int, bytes, bool]] = [(i, r.tokens[t], t, False) for t, i in s.tokens.items() if t in r.tokens]
    rows += [(i, r.special_tokens[t], t.encode("utf-8"), True) for t, i in s.special_tokens.items()
             if t in r.special_tokens]
    rows.sort(key=lambda row: (row[0], row[1]))
    return TokenMapping(
        suspect_ids=np.asarray([row[0] for row in rows], dtype=np.int64),
        reference_ids=np.asarray([row[1] for row in rows], dtype=np.int64),
        tokens=[row[2] for row in rows],
        special=np.asarray([row[3] for row in rows], dtype=bool),
    )
