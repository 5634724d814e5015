"""License classes from the data table: SPDX expressions, LicenseRef ids, patterns and policy extras."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from modelprov.policy import assess_license


@pytest.mark.parametrize(
    ("expression", "commercial"),
    [
        ("Apache-2.0", True),
        ("apache-2.0", True),  # SPDX ids are case-insensitive
        ("MIT", True),
        ("CC-BY-NC-4.0", False),
        ("CC-BY-NC-SA-4.0", False),  # pattern CC-BY-NC-*
        ("LicenseRef-exaone", False),
        ("LicenseRef-EXAONE-AI-Model-License-1.2-NC", False),  # ids as the reference catalogue spells them
        ("LicenseRef-Qwen-Research", False),
        ("LicenseRef-Gemma-Terms-of-Use", True),
        ("LicenseRef-DeepSeek-Model-License", True),
        ("LicenseRef-Llama-3.2-Community", True),
        ("LicenseRef-Some-Lab-Model-License-NC", False),  # pattern LicenseRef-*-NC
        ("LicenseRef-qwen-research", False),
        ("LicenseRef-qwen", True),
        ("LicenseRef-llama3.1", True),  # pattern LicenseRef-llama*
        ("MIT OR CC-BY-NC-4.0", True),  # the licensee may choose MIT
        ("MIT AND CC-BY-NC-4.0", False),  # bound by both
        ("MIT AND LicenseRef-unknown", None),
        ("LicenseRef-unknown OR CC-BY-NC-4.0", None),
    ],
)
def test_commercial_use(expression, commercial):
    assert assess_license(expression).commercial is commercial


def test_naming_and_user_threshold_duties_come_from_the_table():
    llama = assess_license("LicenseRef-llama3").duties
    assert any("Built with Llama" in d for d in llama) and any("700 million" in d for d in llama)
    qwen = assess_license("LicenseRef-qwen").duties
    assert any("100 million" in d for d in qwen) and any("Built with Qwen" in d for d in qwen)
    assert assess_license("Apache-2.0").duties == []
    # OR: the alternative with fewer duties is taken
    assert assess_license("Apache-2.0 OR LicenseRef-llama3").duties == []


def test_unknown_missing_and_unparsable_expressions_say_why():
    assert assess_license("LicenseRef-mystery").unknown_ids == ["LicenseRef-mystery"]
    assert assess_license(None).problem == "no license recorded"
    assert "cannot parse" in assess_license("MIT OR OR").problem


def test_policy_can_mark_more_ids_non_commercial():
    assert assess_license("LicenseRef-lab-research-2", ("LicenseRef-lab-research-*",)).commercial is False
    assert assess_license("LicenseRef-lab-research-2").commercial is None


def test_every_licence_of_the_reference_catalogue_is_classified_or_knowingly_left_open():
    catalogue = tomllib.loads((Path(__file__).parents[2] / "reference_index" / "catalog.toml").read_text())
    deliberately_open = {"LicenseRef-GLM-4"}  # listed as such at the end of licenses.toml
    ids = {m["license"] for m in catalogue["model"] if m.get("license")}
    unclassified = {i for i in ids if assess_license(i).commercial is None}
    assert unclassified == deliberately_open & ids
