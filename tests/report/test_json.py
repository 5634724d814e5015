"""The JSON report: schema published and enforced, byte-stable output, loading of saved reports."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from modelprov.errors import ProvenanceError
from modelprov.report import SCHEMA_PATH, load_report, report_timestamp, schema_errors, to_json, validate_report

from .synthetic import build_report

REPO = Path(__file__).resolve().parents[2]


def test_published_schema_is_the_one_the_package_enforces():
    published = REPO / "docs" / "schema" / "report.schema.json"
    assert json.loads(published.read_text()) == json.loads(SCHEMA_PATH.read_text())
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_synthetic_and_real_scan_reports_validate(report, scanned_minilm):
    assert schema_errors(report) == []
    assert schema_errors(build_report(policy=False, code=False)) == []
    _, real = scanned_minilm
    assert schema_errors(real) == []


@pytest.mark.parametrize("breakage, where", [
    (lambda r: r["subject"].pop("files"), "subject"),
    (lambda r: r["subject"]["files"][0].update(sha256="not-a-digest"), "subject/files/0/sha256"),
    (lambda r: r["findings"][0].update(verdict="extended"), "findings/0"),  # not a weights verdict
    (lambda r: r["findings"][0].update(kind="vibes"), "findings/0/kind"),
    (lambda r: r["findings"][0]["reference"].pop("license"), "findings/0/reference"),
    (lambda r: r["findings"][0].update(parameter_share=1.5), "findings/0/parameter_share"),
    (lambda r: r["policy"].update(overall="MAYBE"), "policy"),
    (lambda r: r.update(timestamp="yesterday"), "timestamp"),
    (lambda r: r.update(surprise=1), "(top)"),
])
def test_schema_rejects_broken_reports(report, breakage, where):
    broken = copy.deepcopy(report)
    breakage(broken)
    errors = schema_errors(broken)
    assert errors and any(e.startswith(where) for e in errors), errors


def test_details_and_statistics_stay_open(report):
    report["details"]["weights"]["new_analysis"] = {"anything": [1, 2, 3]}
    report["details"]["energy"] = {"joules": 5}
    report["findings"][0]["statistics"]["new_statistic"] = {"nested": True}
    assert schema_errors(report) == []


def test_same_inputs_give_identical_json_except_the_timestamp():
    a = to_json(build_report(timestamp="2026-11-22T00:00:00Z"))
    b = to_json(build_report(timestamp="2026-11-22T00:00:00Z"))
    c = to_json(build_report(timestamp="2027-01-01T12:00:00Z"))
    assert a == b
    diff = [(x, y) for x, y in zip(a.splitlines(), c.splitlines()) if x != y]
    assert len(a.splitlines()) == len(c.splitlines())
    assert diff == [('  "timestamp": "2026-11-22T00:00:00Z",', '  "timestamp": "2027-01-01T12:00:00Z",')]


def test_rescanning_a_real_checkpoint_gives_the_same_json_but_the_timestamp(scanned_minilm):
    from modelprov.scan import scan

    folder, first = scanned_minilm
    second = scan(folder).to_dict()
    assert to_json(dict(second, timestamp="")) == to_json(dict(first, timestamp=""))


def test_json_is_sorted_and_dict_order_does_not_matter(report):
    shuffled = json.loads(json.dumps(report))
    shuffled["subject"] = dict(reversed(list(shuffled["subject"].items())))
    assert to_json(shuffled) == to_json(report)
    assert list(json.loads(to_json(report))) == sorted(report)


def test_numpy_values_and_non_finite_floats_become_plain_json(report):
    report["details"]["weights"]["extra"] = {"f32": np.float32(0.5), "i64": np.int64(7), "arr": np.arange(3),
                                            "nan": math.nan, "inf": np.float64(np.inf), "tuple": (1, 2)}
    data = json.loads(to_json(report))["details"]["weights"]["extra"]
    assert data == {"f32": 0.5, "i64": 7, "arr": [0, 1, 2], "nan": None, "inf": None, "tuple": [1, 2]}


def test_source_date_epoch_fixes_the_timestamp(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert report_timestamp() == "2023-11-14T22:13:20Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "soon")
    with pytest.raises(ProvenanceError, match="SOURCE_DATE_EPOCH"):
        report_timestamp()
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert schema_errors(dict(build_report(), timestamp=report_timestamp())) == []


def test_load_report_round_trips_and_names_the_problem(tmp_path, report):
    saved = tmp_path / "report.json"
    saved.write_text(to_json(report))
    assert load_report(saved) == validate_report(report)
    (tmp_path / "broken.json").write_text('{"subject": ')
    with pytest.raises(ProvenanceError, match=r"broken.json: not valid JSON"):
        load_report(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text('{"name": "not a report"}')
    with pytest.raises(ProvenanceError, match=r"not a valid scan report"):
        load_report(tmp_path / "other.json")
    with pytest.raises(ProvenanceError, match="no such report file"):
        load_report(tmp_path / "missing.json")
