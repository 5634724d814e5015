"""Errors the tool reports to users: one line, naming the file and the problem."""

from __future__ import annotations

from os import PathLike

from modelprov.text import printable


class ProvenanceError(Exception):
    """A problem with the user's input; the CLI prints it as one line and exits with status 2."""

    exit_code = 2

    def __init__(self, path: str | PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message as a single line: `<file>: <problem>`."""
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        return printable(" ".join(text.split()))  # names from files may hold terminal escapes


class CheckpointError(ProvenanceError):
    """A checkpoint that cannot be read: missing, truncated, malformed or lying about its contents."""


class NothingToScanError(ProvenanceError):
    """The input holds nothing the tool can scan (exit status 3)."""

    exit_code = 3


class ReferenceIndexError(ProvenanceError):
    """A reference index that is missing, malformed or fails its digest check."""


class PolicyError(ProvenanceError):
    """A malformed policy or declaration file."""


class ModelCardError(ProvenanceError):
    """A model card (README.md front matter) or adapter_config.json that cannot be read as lineage claims."""
