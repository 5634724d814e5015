"""Fixtures of the weights tests: a reference index holding the real all-MiniLM-L6-v2, and the derived models."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelprov.findings import Reference
from modelprov.index import ReferenceIndex, add_checkpoint

MINILM = Reference(name="all-MiniLM-L6-v2", family="MiniLM", org="sentence-transformers", country="US",
                   license="Apache-2.0", repo_id="sentence-transformers/all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def minilm_index(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index folder with one reference, all-MiniLM-L6-v2, built by the library's own `add`."""
    root = tmp_path_factory.mktemp("index")
    add_checkpoint(ReferenceIndex.create(root), minilm_dir, MINILM)
    return root
