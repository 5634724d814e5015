"""The report's "How to reproduce" lines install this tool under its own name and repeat the scan as it was run."""

from __future__ import annotations

from modelprov import DISTRIBUTION
from modelprov.report.view import reproduce_commands


def _report(**extra) -> dict:
    return {"subject": {"path": "/data/my model"}, "tool_version": "9.9.9", **extra}


def test_install_line_names_our_distribution_and_the_cpu_torch_first():
    install = reproduce_commands(_report())[0]
    assert install.startswith("pip install torch==2.13.0 ") and f"'{DISTRIBUTION}==9.9.9'" in install
    assert "model-provenance" not in install  # a stranger's package on PyPI


def test_scan_line_repeats_index_policy_declaration_country_and_skipped_checks():
    report = _report(parameters={"scan": {"index": "/idx", "verify_exact": False, "hash_files": True}},
                     policy={"source": "sovereign-foundation-model", "declaration": "decl.toml", "home_country": "KR"})
    assert reproduce_commands(report)[2] == (
        "modelprov scan '/data/my model' --index /idx --policy sovereign-foundation-model --declaration decl.toml "
        "--home-country KR --no-verify --report REPORT_DIR")


def test_default_index_and_no_policy_give_the_plain_scan():
    assert reproduce_commands(_report(parameters={"scan": {"index": None}}))[1:] == [
        "modelprov report verify report.json '/data/my model'", "modelprov scan '/data/my model' --report REPORT_DIR"]
