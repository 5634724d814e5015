"""SPDX 3.0.1 (AI profile) of the scanned model: the model as `ai_AIPackage`, its files with sha256,
reference models it descends from (`ancestorOf`) or shares parts with (`hasVariant`), and their licenses.

Built with `spdx-python-model`, whose typed properties reject malformed values as they are set.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any

from modelprov.errors import ProvenanceError

from .cyclonedx import ANCESTOR_VERDICTS, VARIANT_VERDICTS
from .jsonreport import content_digest, report_dict


def _spdx():
    try:
        from spdx_python_model import v3_0_1 as spdx  # deferred: an optional dependency
    except ImportError as err:
        raise ProvenanceError(None, "SPDX export needs the 'spdx-python-model' package (pip install spdx-python-model)") from err
    return spdx


def _timestamp(report: dict[str, Any]):
    text = report.get("timestamp") or "1970-01-01T00:00:00Z"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).replace(microsecond=0)


def to_spdx(report: Any) -> dict[str, Any]:
    """The scan report as an SPDX 3.0.1 JSON-LD document (AI and Software profiles)."""
    spdx = _spdx()
    data = report_dict(report)
    base = f"urn:modelprov:{content_digest(data)[:32]}"
    objects = spdx.SHACLObjectSet()

    def new(cls, local_id: str, **props):
        obj = cls(_id=f"{base}#{local_id}") if local_id else cls()
        for key, value in props.items():
            if value is not None:  # SPDX properties are optional; the bindings refuse None
                setattr(obj, key, value)
        return objects.add(obj)

    tool = new(spdx.Tool, "tool", name=f"modelprov {data['tool_version']}")
    creator = new(spdx.SoftwareAgent, "creator", name="modelprov")
    info = spdx.CreationInfo()
    info.specVersion = "3.0.1"
    info.created = _timestamp(data)
    info.createdBy = [creator]
    info.createdUsing = [tool]
    tool.creationInfo = info
    creator.creationInfo = info

    subject = data["subject"]
    model = new(spdx.ai_AIPackage, "subject", creationInfo=info, name=subject["path"].rstrip("/").rsplit("/", 1)[-1],
                description=f"{subject['format']} checkpoint at {subject['path']}",
                software_primaryPurpose=spdx.software_SoftwarePurpose.model,
                ai_limitation="; ".join(f["summary"] for f in data["findings"]
                                        if f["verdict"] not in ("independent", "unrelated")) or None)
    elements = [model]
    files = []
    for i, f in enumerate(subject["files"]):
        file = new(spdx.software_File, f"file-{i}", creationInfo=info, name=f["path"])
        if f.get("sha256"):
            digest = spdx.Hash()
            digest.algorithm = spdx.HashAlgorithm.sha256
            digest.hashValue = f["sha256"]
            file.verifiedUsing = [digest]
        files.append(file)
    if files:
        elements += files
        elements.append(new(spdx.Relationship, "contains", creationInfo=info, from_=model,
                            relationshipType=spdx.RelationshipType.contains, to=files))
    licenses: dict[str, Any] = {}
    for i, f in enumerate(sorted(data["findings"], key=lambda f: f["id"])):
        if f["verdict"] in ANCESTOR_VERDICTS.get(f["kind"], ()):
            relation = spdx.RelationshipType.ancestorOf
        elif f["verdict"] in VARIANT_VERDICTS.get(f["kind"], ()):
            relation = spdx.RelationshipType.hasVariant
        else:
            continue
        ref = f["reference"]
        cls = spdx.software_Package if f["kind"] == "code" else spdx.ai_AIPackage
        pkg = new(cls, f"reference-{i}", creationInfo=info, name=ref.get("repo_id") or ref["name"],
                  summary=f"{f['kind']} {f['verdict']}: {f['summary']}")
        if ref.get("revision"):
            pkg.software_packageVersion = ref["revision"]
        if ref.get("repo_id") and f["kind"] != "code":
            pkg.software_downloadLocation = f"https://huggingface.co/{ref['repo_id']}"
        elements.append(pkg)
        source, target = (pkg, [model]) if relation == spdx.RelationshipType.ancestorOf else (model, [pkg])
        elements.append(new(spdx.Relationship, f"relation-{i}", creationInfo=info, from_=source,
                            relationshipType=relation, to=target, comment=f["id"]))
        if ref.get("license"):
            if ref["license"] not in licenses:
                licenses[ref["license"]] = new(spdx.simplelicensing_LicenseExpression, f"license-{len(licenses)}",
                                               creationInfo=info, simplelicensing_licenseExpression=ref["license"])
                elements.append(licenses[ref["license"]])
            elements.append(new(spdx.Relationship, f"license-of-{i}", creationInfo=info, from_=pkg,
                                relationshipType=spdx.RelationshipType.hasDeclaredLicense,
                                to=[licenses[ref["license"]]]))
    sbom = new(spdx.software_Sbom, "sbom", creationInfo=info, rootElement=[model], element=elements,
               software_sbomType=[spdx.software_SbomType.analyzed])
    document = new(spdx.SpdxDocument, "document", creationInfo=info, name=f"provenance of {subject['path']}",
                   rootElement=[sbom], element=[sbom, *elements],
                   profileConformance=[spdx.ProfileIdentifierType.core, spdx.ProfileIdentifierType.software,
                                       spdx.ProfileIdentifierType.ai])
    del document
    buffer = io.BytesIO()
    spdx.JSONLDSerializer().write(objects, buffer)
    return json.loads(buffer.getvalue())


def spdx_json(report: Any) -> str:
    return json.dumps(to_spdx(report), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
