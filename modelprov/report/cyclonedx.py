"""CycloneDX 1.6 ML-BOM of the scanned model: hashes of its files, ancestors and variants from the findings.

cyclonedx-python-lib has no `modelCard` model yet, so the BOM is built as JSON and checked with the
library's strict 1.6 JSON Schema validator instead of its object model.
"""

from __future__ import annotations

import json
import uuid
from pathlib import PurePosixPath
from typing import Any

from modelprov.errors import ProvenanceError

from .jsonreport import content_digest, report_dict

SPEC_VERSION = "1.6"
# Weights copied/derived from a reference: the subject descends from it (pedigree.ancestors).
ANCESTOR_VERDICTS = {"weights": ("copied", "derived")}
# Shared tokenizer, code or architecture: related, direction unknown (pedigree.variants, per the spec's wording).
VARIANT_VERDICTS = {
    "weights": ("output-aligned",),  # trained to match the reference's outputs: related, no weights reused
    "tokenizer": ("identical", "extended", "pruned", "modified"),
    "code": ("copied", "derived"),
    "architecture": ("copied", "derived"),
}
_NAMESPACE = uuid.UUID("5b0a3f7e-6d2c-4c84-9f0e-6b1c1f0f2a11")


def _license_choice(license_id: str | None) -> list[dict[str, Any]]:
    """A CycloneDX license entry: SPDX id when it is one, an expression when it parses, a name otherwise."""
    if not license_id:
        return []
    from cyclonedx.spdx import fixup_id, is_expression, is_supported_id  # deferred: cyclonedx-python-lib is slow to import

    if is_supported_id(license_id):
        return [{"license": {"id": fixup_id(license_id)}}]
    if " " in license_id and is_expression(license_id):
        return [{"expression": license_id}]
    return [{"license": {"name": license_id}}]


def _property(name: str, value: Any) -> dict[str, str]:
    return {"name": f"modelprov:{name}", "value": value if isinstance(value, str) else json.dumps(value, sort_keys=True)}


def _reference_component(finding: dict[str, Any], bom_ref: str) -> dict[str, Any]:
    ref = finding["reference"]
    component: dict[str, Any] = {
        "type": "machine-learning-model" if finding["kind"] in ("weights", "tokenizer", "architecture") else "library",
        "bom-ref": bom_ref,
        "name": ref.get("repo_id") or ref["name"],
    }
    if ref.get("revision"):
        component["version"] = ref["revision"]
    if ref.get("org"):
        component["supplier"] = {"name": ref["org"]}
    if ref.get("family"):
        component["group"] = ref["family"]
    if licenses := _license_choice(ref.get("license")):
        component["licenses"] = licenses
    if ref.get("repo_id") and finding["kind"] != "code":
        component["externalReferences"] = [{"type": "distribution", "url": f"https://huggingface.co/{ref['repo_id']}"}]
    statistics = {k: v for k, v in sorted((finding.get("statistics") or {}).items()) if not isinstance(v, (list, dict))}
    component["properties"] = [
        _property("finding", finding["id"]), _property("kind", finding["kind"]),
        _property("verdict", finding["verdict"]), _property("subject", finding["subject"]),
        _property("summary", finding["summary"]),
        *([_property("country", ref["country"])] if ref.get("country") else []),
        *([_property("parameter_share", finding["parameter_share"])] if finding.get("parameter_share") is not None else []),
        *(_property(f"statistic:{k}", v) for k, v in statistics.items()),
        *(_property("transformation", t) for t in finding.get("transformations", [])),
    ]
    return component


def _file_component(subject_path: str, f: dict[str, Any], index: int) -> dict[str, Any]:
    component: dict[str, Any] = {
        "type": "file", "bom-ref": f"subject-file-{index}", "name": f["path"],
        "properties": [_property("size", f["size"]), _property("role", f["role"])],
    }
    if f.get("sha256"):
        component["hashes"] = [{"alg": "SHA-256", "content": f["sha256"]}]
    return component


def _model_card(report: dict[str, Any]) -> dict[str, Any]:
    config = report["subject"].get("config") or {}
    architectures = config.get("architectures")
    parameters: dict[str, Any] = {}
    if isinstance(architectures, list) and architectures:
        parameters["modelArchitecture"] = ", ".join(map(str, architectures))
    elif config.get("model_type"):
        parameters["modelArchitecture"] = str(config["model_type"])
    if config.get("model_type"):
        parameters["architectureFamily"] = str(config["model_type"])
    limitations = [f["summary"] for f in report["findings"] if f["verdict"] not in ("independent", "unrelated")]
    card: dict[str, Any] = {"bom-ref": "subject-model-card"}
    if parameters:
        card["modelParameters"] = parameters
    if limitations:
        card["considerations"] = {"technicalLimitations": limitations}
    policy = report.get("policy")
    card["properties"] = [
        _property("parameter_count", report["subject"]["parameter_count"]),
        _property("tensor_count", report["subject"]["tensor_count"]),
        *(_property(f"component:{name}", count) for name, count in sorted(report["subject"]["components"].items())),
        *([_property("policy", policy.get("overall"))] if policy else []),
    ]
    return card


def _serial_number(report: dict[str, Any]) -> str:
    """A urn:uuid fixed by the report's content (timestamp excluded), so the same scan gives the same BOM."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, content_digest(report))}"


def to_cyclonedx(report: Any) -> dict[str, Any]:
    """The scan report as a CycloneDX 1.6 BOM whose metadata component is the scanned model."""
    data = report_dict(report)
    subject = data["subject"]
    ancestors, variants = [], []
    for i, finding in enumerate(sorted(data["findings"], key=lambda f: f["id"])):
        if finding["verdict"] in ANCESTOR_VERDICTS.get(finding["kind"], ()):
            ancestors.append(_reference_component(finding, f"reference-{i}"))
        elif finding["verdict"] in VARIANT_VERDICTS.get(finding["kind"], ()):
            variants.append(_reference_component(finding, f"reference-{i}"))
    model: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": "subject",
        "name": PurePosixPath(subject["path"].rstrip("/")).name or subject["path"],
        "description": f"{subject['format']} checkpoint at {subject['path']}",
        "properties": [_property("format", subject["format"]),
                       *([_property("quantisation", subject["quantisation"])] if subject.get("quantisation") else [])],
        "modelCard": _model_card(data),
        "components": [_file_component(subject["path"], f, i) for i, f in enumerate(subject["files"])],
    }
    if ancestors or variants:
        model["pedigree"] = {**({"ancestors": ancestors} if ancestors else {}), **({"variants": variants} if variants else {})}
    index = data.get("index") or {}
    metadata: dict[str, Any] = {
        "tools": {"components": [{"type": "application", "name": "modelprov", "version": data["tool_version"]}]},
        "component": model,
        "properties": [_property(f"index:{k}", v) for k, v in sorted(index.items()) if v is not None],
    }
    if data.get("timestamp"):
        metadata["timestamp"] = data["timestamp"]
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": _serial_number(data),
        "version": 1,
        "metadata": metadata,
    }


def cyclonedx_json(report: Any) -> str:
    """The BOM as JSON text, validated against CycloneDX 1.6 (strict)."""
    bom = to_cyclonedx(report)
    text = json.dumps(bom, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    error = validate_cyclonedx(text)
    if error:
        raise ProvenanceError(None, f"CycloneDX export does not validate: {error}")
    return text


def validate_cyclonedx(text: str) -> str | None:
    """None when `text` is a valid CycloneDX 1.6 JSON BOM, else the validator's message."""
    from cyclonedx.schema import SchemaVersion  # deferred: cyclonedx-python-lib is slow to import
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    return None if error is None else str(error)
