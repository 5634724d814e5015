"""The tokenizer a checkpoint ships (a file beside the weights, or GGUF metadata), read at most once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelprov.errors import ProvenanceError

from .._base import Checkpoint
from ._files import TOKENIZER_FILE_PATTERNS, find_tokenizer_file, read_tokenizer, tokenizer_from_gguf_metadata
from ._model import Tokenizer


def locate_tokenizer(checkpoint_path: str | os.PathLike[str]) -> Path | None:
    """The tokenizer file of a checkpoint file or folder (tokenizer.json, rank file, GGUF metadata…), or None."""
    path = Path(checkpoint_path)
    if path.is_dir():
        return find_tokenizer_file(path)
    if path.is_file():
        if any(path.match(pattern) for pattern in TOKENIZER_FILE_PATTERNS) or path.name == "merges.txt":
            return path
        return find_tokenizer_file(path.parent)
    return None


GGUF_WITHOUT_TOKENIZER = "the GGUF file carries no tokenizer metadata (tokenizer.ggml.tokens); tokenizer part skipped"


def checkpoint_tokenizer(checkpoint_path: str | os.PathLike[str], gguf_metadata: dict[str, Any] | None = None
                         ) -> tuple[Tokenizer, Path] | None:
    """The tokenizer a local checkpoint ships (file or GGUF metadata) and where it was found, or None.

    A GGUF checkpoint whose metadata (given) has no tokenizer arrays has no tokenizer: None, not an error.
    """
    located = locate_tokenizer(checkpoint_path)
    if located is None:
        return None
    if located.suffix.lower() == ".gguf" and gguf_metadata is not None:
        if "tokenizer.ggml.tokens" not in gguf_metadata:
            return None
        return tokenizer_from_gguf_metadata(gguf_metadata, located), located
    return read_tokenizer(located), located


class CheckpointTokenizer:
    """A checkpoint's tokenizer, read at most once and shared by the weight matcher and the tokenizer scan."""

    def __init__(self, checkpoint_path: str | os.PathLike[str], gguf_metadata: dict[str, Any] | None = None) -> None:
        self._path, self._gguf_metadata = checkpoint_path, gguf_metadata
        self._read = False
        self._found: tuple[Tokenizer, Path] | None = None
        self._error: ProvenanceError | None = None
        self.reason: str | None = None  # why no tokenizer was found, when there is more to say than "none"

    @classmethod
    def of(cls, ckpt: Checkpoint) -> "CheckpointTokenizer":
        """For an opened checkpoint (its GGUF metadata reused); a Hub checkpoint has none (not fetched)."""
        return cls(ckpt.path, ckpt.metadata if ckpt.format == "gguf" else None)

    def found(self) -> tuple[Tokenizer, Path] | None:
        """The tokenizer and its file, or None; an unreadable tokenizer file raises its error."""
        if not self._read:
            self._read = True
            try:
                if Path(self._path).exists():
                    self._found = checkpoint_tokenizer(self._path, self._gguf_metadata)
                    if self._found is None and self._gguf_metadata is not None:
                        self.reason = GGUF_WITHOUT_TOKENIZER
            except ProvenanceError as err:
                self._error = err
        if self._error is not None:
            raise self._error
        return self._found

    def tokens(self) -> dict[bytes, int] | None:
        """The regular vocabulary (token bytes → id) for aligning embedding rows, or None.

        None also for unreadable tokenizer files: the tokenizer scan reports those; weight matching then
        aligns rows by id.
        """
        try:
            found = self.found()
        except ProvenanceError:
            return None
        return found[0].tokens if found and found[0].tokens else None


def checkpoint_tokens(ckpt: Checkpoint) -> dict[bytes, int] | None:
    """A checkpoint's regular vocabulary (token bytes → id), or None (see `CheckpointTokenizer.tokens`)."""
    return CheckpointTokenizer.of(ckpt).tokens()
