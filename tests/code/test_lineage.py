"""Nearest source on transformers' own lineage, against the shipped code index (subjects from the pinned wheel)."""

from __future__ import annotations

import zipfile

from modelprov.code import scan_code
from modelprov.code.build import model_name

SOLAR = "transformers/models/solar_open/modeling_solar_open.py"


def test_solar_open_is_attributed_to_glm4_moe_first_then_llama(pinned_wheel, tmp_path):
    """solar_open's modular file imports from glm4_moe and llama; the index as before solar_open existed
    must name glm4_moe's file first (a canonical-origin ranking gave llama, deepseek_v3, …)."""
    with zipfile.ZipFile(pinned_wheel("transformers")) as archive:
        subject = tmp_path / "modeling_solar_open.py"
        subject.write_bytes(archive.read(SOLAR))
    result = scan_code(subject, exclude=["transformers/models/solar_open/*", "*/models/solar_open.py"])
    sources = result.files[0].sources
    assert [model_name(s.path) for s in sources[:2]] == ["glm4_moe", "llama"]
    assert sources[0].path == "transformers/models/glm4_moe/modeling_glm4_moe.py"
    assert sources[0].tags["family"] == "GLM-4.5" and sources[0].share > 0.5
    moe = next(m for m in result.files[0].matches if m.subject_qualname == "SolarOpenMoE.forward")
    assert moe.reference_path == sources[0].path  # the function's nearest source is in that file
    assert moe.origin != moe.nearest  # and its canonical origin (earliest author) is reported beside it
