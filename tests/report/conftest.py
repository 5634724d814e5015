"""Fixtures of the report tests: the synthetic copied-vision-tower report and a real scanned checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from .synthetic import build_report


@pytest.fixture()
def report() -> dict[str, Any]:
    """The synthetic report (vision tower copied, tokenizer extended, code copied, policy FAIL)."""
    return build_report()


@pytest.fixture(scope="session")
def scanned_minilm(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A private copy of all-MiniLM-L6-v2 and the real scanner's report of it (so tests may tamper with it)."""
    from modelprov.scan import scan

    folder = tmp_path_factory.mktemp("minilm") / "model"
    shutil.copytree(minilm_dir, folder)
    return folder, scan(folder).to_dict()
