"""The shipped code index: its family table against the catalogue, its tags, no source text, reproducible bytes."""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

import pytest

from modelprov.code import CodeIndex
from modelprov.code.build import (
    WheelSource, catalogue_families, entry_digest, fetch_wheel, load_families, load_sources, model_name, unpack,
)
from modelprov.code.index import default_code_index_dir
from modelprov.errors import ProvenanceError
from modelprov.index import ReferenceIndex

CODE = default_code_index_dir()


def test_every_family_of_the_table_is_a_catalogue_family_with_one_organisation():
    table = load_families(CODE)
    catalogue = ReferenceIndex.load(None).catalog()["model"]
    for family in set(table.families.values()):
        rows = [m for m in catalogue if m.get("family") == family]
        assert rows, f"{family} is not a catalogue family"
        assert len({(m["org"], m["country"]) for m in rows}) == 1, family


@pytest.mark.parametrize(("path", "family"), [
    ("transformers/models/glm4_moe/modeling_glm4_moe.py", "GLM-4.5"),
    ("transformers/models/glm4_moe/modular_glm4_moe.py", "GLM-4.5"),
    ("vllm/model_executor/models/glm4_moe_mtp.py", "GLM-4.5"),
    ("sglang/srt/models/glm4_moe_nextn.py", "GLM-4.5"),
    ("vllm/model_executor/models/deepseek_v2.py", "DeepSeek-V2"),
    ("sglang/srt/models/deepseek_nextn.py", "DeepSeek-V3"),
    ("transformers/models/qwen3_moe/modeling_qwen3_moe.py", "Qwen3"),
    ("vllm/model_executor/models/qwen3_5.py", None),  # not qwen3: a suffix is dropped only when listed
    ("transformers/models/bert/modeling_bert.py", None),
])
def test_model_names_map_to_families(path, family):
    assert load_families(CODE).family(model_name(path)) == family


def test_shipped_entries_are_tagged_hold_no_source_text_and_are_covered_by_the_index_digest():
    index = CodeIndex()
    names = {r.name for r in index.list()}
    assert {"transformers", "vllm", "sglang", "torch-nn"} <= names
    families = catalogue_families(CODE.parent / "catalog.toml")
    for entry in index.entry_dirs():
        assert not (entry / "sources.zip").exists()
        manifest = json.loads((entry / "manifest.json").read_text())
        assert manifest["sources"] is False and "/tmp" not in json.dumps(manifest)
    vllm = index.show("vllm")
    glm = next(f for f in vllm["files"] if f["path"] == "vllm/model_executor/models/glm4_moe.py")
    assert (glm["family"], glm["org"], glm["country"], glm["license"]) == (
        "GLM-4.5", families["GLM-4.5"]["org"], "CN", "Apache-2.0")
    content = ReferenceIndex.load(None)._content_files()
    assert "code/vllm@0.34.0/arrays.npz" in content and "code/families.toml" in content
    assert not any(".wheels" in path for path in content)


def _wheel(folder: Path) -> Path:
    path = folder / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("demo/models/glm4_moe.py", "def router(x, w):\n    s = x @ w\n    return s.sigmoid().topk(2)\n" * 3)
        archive.writestr("demo/other.py", "x = 1\n")
        archive.writestr("demo-1.0.dist-info/licenses/LICENSE", "Apache License\nVersion 2.0, January 2004\n")
        archive.writestr("../escape.py", "x = 2\n")
    return path


def test_wheel_sha256_is_checked_and_only_included_files_are_unpacked(tmp_path):
    wheel = _wheel(tmp_path)
    good = WheelSource("demo", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest(), ("demo/models/*.py",), "MIT")
    assert fetch_wheel(good, tmp_path, download=False) == wheel
    bad = WheelSource("demo", wheel.name, "0" * 64, good.include, "MIT")
    with pytest.raises(ProvenanceError, match="is not the pinned"):
        fetch_wheel(bad, tmp_path, download=False)
    missing = WheelSource("demo", "absent-1.0-py3-none-any.whl", "0" * 64, good.include, "MIT")
    with pytest.raises(ProvenanceError, match="pinned wheel is missing"):
        fetch_wheel(missing, tmp_path, download=False)
    out = tmp_path / "out"
    assert unpack(wheel, good.include, out) == 1
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["LICENSE", "demo/models/glm4_moe.py"]


def test_an_entry_built_twice_from_different_folders_has_the_same_bytes(tmp_path, transformers_models_dir):
    digests = []
    for run in ("a", "b"):
        source = tmp_path / f"src-{run}" / "pkg"
        source.mkdir(parents=True)
        for model in ("llama", "qwen2"):
            (source / f"modeling_{model}.py").write_bytes((transformers_models_dir / model / f"modeling_{model}.py").read_bytes())
        index = CodeIndex(tmp_path / f"index-{run}")
        reference = index.add(source, name="demo", version="1", license="Apache-2.0", keep_sources=False,
                              described_as="demo wheel", file_tags=lambda path: {"family": "Llama 3.x"})
        digests.append(entry_digest(index.directory / reference.key))
    assert digests[0] == digests[1]


def test_pinned_sources_name_their_wheels_exactly():
    wheels, backgrounds = load_sources(CODE)
    assert {w.name for w in wheels} == {"transformers", "vllm", "sglang"} and backgrounds
    vllm = next(w for w in wheels if w.name == "vllm")
    assert vllm.pip_arguments()[0] == "vllm==0.34.0" and "--platform" in vllm.pip_arguments()
    # cp38-abi3 names the oldest Python; vLLM requires ≥ 3.10, so pip must be asked as the running Python
    args = vllm.pip_arguments()
    assert args[args.index("--python-version") + 1] == f"{sys.version_info.major}.{sys.version_info.minor}"
