"""Build the shipped code index from pinned wheels, byte-reproducibly, and compare it with the shipped one.

`reference_index/code/sources.toml` pins each wheel (file name and sha256) and the files to index;
`families.toml` maps model names to catalogue families, whose organisation and country come from
`reference_index/catalog.toml`. Wheels are fetched with `pip download --no-deps` (a deadline on the
network), checked against their sha256 and read as zip files: only the files to index are unpacked into a
temporary folder, nothing is installed or imported. The shipped entries hold no source text.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from modelprov.errors import ProvenanceError
from modelprov.index import CATALOG_FILE, default_index_dir, load_toml
from modelprov.progress import ProgressFn

from .index import WHEELS_DIR, CodeIndex, CodeReference

SOURCES_FILE = "sources.toml"
FAMILIES_FILE = "families.toml"
DOWNLOAD_TIMEOUT = 900  # seconds for one `pip download` (vLLM's wheel is ~240 MB)
BUILD_DIR = ".build"  # hidden: left out of the index digest while a build is staged


@dataclass(frozen=True)
class WheelSource:
    """One pinned wheel and the files of it to index."""

    name: str
    wheel: str
    sha256: str
    include: tuple[str, ...]
    license: str
    repo_id: str | None = None

    @property
    def package(self) -> str:
        return self.wheel.split("-")[0]

    @property
    def version(self) -> str:
        return self.wheel.split("-")[1]

    def pip_arguments(self) -> list[str]:
        """`pip download` arguments that fetch exactly the pinned file, whatever the local interpreter."""
        _, _, python, abi, platform = self.wheel[: -len(".whl")].split("-")[:5]
        pin = [f"{self.package}=={self.version}"]
        if platform == "any":
            return pin + ["--only-binary=:all:"]
        interpreter = python.split(".")[0]
        version = interpreter[2:]
        # an abi3 wheel's tag names its oldest Python; its Requires-Python may exclude that one (vLLM: cp38-abi3,
        # Python ≥ 3.10), so ask for it as the running Python would
        target = f"{sys.version_info.major}.{sys.version_info.minor}" if abi == "abi3" else f"{version[0]}.{version[1:]}"
        return pin + ["--only-binary=:all:", "--platform", platform, "--implementation", interpreter[:2],
                      "--python-version", target, "--abi", abi]


@dataclass(frozen=True)
class BackgroundSource:
    """Generic code from an installed package (`pip:` spec), pinned by the package version."""

    name: str
    package: str  # `package[/sub/folder]`
    version: str
    license: str
    repo_id: str | None = None


@dataclass(frozen=True)
class FamilyTable:
    """Model name (transformers folder, vLLM/SGLang file stem) -> catalogue family."""

    families: dict[str, str]
    suffixes: tuple[str, ...]

    def family(self, model: str) -> str | None:
        """The family of a model name; serving suffixes (`_mtp`, `_nextn`, …) are dropped until one is listed."""
        name = model
        while name not in self.families:
            stripped = next((name[: -len(s)] for s in self.suffixes if name.endswith(s) and len(name) > len(s)), None)
            if stripped is None:
                return None
            name = stripped
        return self.families[name]


def model_name(path: str) -> str:
    """`glm4_moe` for `transformers/models/glm4_moe/modeling_glm4_moe.py` and `vllm/…/models/glm4_moe.py`."""
    parts = PurePosixPath(path).parts
    if len(parts) >= 3 and parts[-3] == "models" and parts[-1].startswith(("modeling_", "modular_")):
        return parts[-2]
    return PurePosixPath(path).stem


def load_sources(code_dir: Path) -> tuple[list[WheelSource], list[BackgroundSource]]:
    """The pinned wheels and background packages of `sources.toml`."""
    path = code_dir / SOURCES_FILE
    data = load_toml(path)
    try:
        wheels = [WheelSource(s["name"], s["wheel"], s["sha256"], tuple(s["include"]), s["license"], s.get("repo_id"))
                  for s in data.get("source", [])]
        backgrounds = [BackgroundSource(b["name"], b["package"], b["version"], b["license"], b.get("repo_id"))
                       for b in data.get("background", [])]
    except (KeyError, TypeError) as err:
        raise ProvenanceError(path, f"malformed code index sources: missing {err}") from None
    for source in wheels:
        if not source.wheel.endswith(".whl") or source.wheel.count("-") < 4:
            raise ProvenanceError(path, f"{source.wheel!r} is not a wheel file name")
    return wheels, backgrounds


def load_families(code_dir: Path) -> FamilyTable:
    """The family table of `families.toml`."""
    path = code_dir / FAMILIES_FILE
    data = load_toml(path)
    families, suffixes = data.get("families"), data.get("suffixes", [])
    if not isinstance(families, dict) or not all(isinstance(v, str) for v in families.values()):
        raise ProvenanceError(path, "malformed family table: [families] must map names to family names")
    return FamilyTable(dict(families), tuple(suffixes))


def catalogue_families(catalogue: Path) -> dict[str, dict[str, str]]:
    """Family -> {family, org, country} from the catalogue (the first model of each family)."""
    out: dict[str, dict[str, str]] = {}
    for model in load_toml(catalogue).get("model", []):
        family = model.get("family")
        if family and family not in out:
            out[family] = {k: model[k] for k in ("family", "org", "country") if model.get(k)}
    return out


def file_tagger(table: FamilyTable, families: dict[str, dict[str, str]], license: str) -> Callable[[str], dict[str, str]]:
    """Tags of an indexed file: its family, the family's organisation and country, the package licence."""
    def tags(path: str) -> dict[str, str]:
        family = table.family(model_name(path))
        found = families.get(family, {}) if family else {}
        return {**found, "license": license}
    return tags


def fetch_wheel(source: WheelSource, wheels_dir: Path, *, download: bool = True) -> Path:
    """The pinned wheel in `wheels_dir`, downloaded first if missing and allowed; its sha256 must match."""
    path = wheels_dir / source.wheel
    if not path.is_file():
        if not download:
            raise ProvenanceError(path, "pinned wheel is missing; fetch it with `modelprov code index build --fetch-only`")
        wheels_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(wheels_dir),
                   *source.pip_arguments()]
        try:
            subprocess.run(command, check=True, timeout=DOWNLOAD_TIMEOUT, capture_output=True)
        except subprocess.TimeoutExpired:
            raise ProvenanceError(path, f"pip download did not finish in {DOWNLOAD_TIMEOUT} s") from None
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", b"") or b""
            last = detail.decode("utf-8", "replace").strip().splitlines()[-1:] or [str(err)]
            raise ProvenanceError(path, f"pip download failed: {last[0]}") from None
        if not path.is_file():
            raise ProvenanceError(path, "pip download did not produce the pinned wheel file")
    if not path.is_file():
        raise ProvenanceError(path, "not a regular file")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != source.sha256:
        raise ProvenanceError(path, f"sha256 {digest.hexdigest()} is not the pinned {source.sha256}")
    return path


def unpack(wheel: Path, include: tuple[str, ...], dest: Path) -> int:
    """Unpack the members matching `include` (and the dist-info licence files, into `dest` itself)."""
    count = 0
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            name = info.filename
            parts = PurePosixPath(name).parts
            if info.is_dir() or name.startswith("/") or ".." in parts:
                continue
            licence = len(parts) >= 2 and parts[0].endswith(".dist-info") and "licenses" in parts[1:-1]
            if not (licence or any(fnmatchcase(name, pattern) for pattern in include)):
                continue
            target = dest / (parts[-1] if licence else name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            count += not licence
    return count


def entry_digest(entry: Path) -> str:
    """sha256 over an entry folder's files (sorted relative paths and their sha256)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in entry.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(entry).as_posix()}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return "sha256:" + digest.hexdigest()


@dataclass
class BuiltEntry:
    """One rebuilt entry and how it compares with the shipped one."""

    reference: CodeReference
    digest: str
    shipped: str | None  # digest of the shipped entry of that key, None when absent

    @property
    def same(self) -> bool:
        return self.digest == self.shipped

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.reference.key, "digest": self.digest, "shipped": self.shipped, "same": self.same,
                "files": self.reference.files, "units": self.reference.units,
                "fingerprints": self.reference.fingerprints, "tokens": self.reference.tokens}


def fetch_wheels(code_dir: Path | None = None, wheels_dir: Path | None = None) -> list[Path]:
    """Download (when missing) and check every pinned wheel."""
    code_dir = code_dir or default_index_dir() / "code"
    wheels, _ = load_sources(code_dir)
    return [fetch_wheel(source, wheels_dir or code_dir / WHEELS_DIR) for source in wheels]


def build_code_index(code_dir: Path | None = None, *, wheels_dir: Path | None = None, download: bool = True,
                     replace: bool = True, progress: ProgressFn | None = None) -> list[BuiltEntry]:
    """Rebuild every pinned entry in a staging folder and compare its digest with the shipped entry.

    With `replace`, the shipped entries of those names are then swapped for the rebuilt ones; without,
    nothing in the index changes (`--check`).
    """
    code_dir = Path(code_dir) if code_dir is not None else default_index_dir() / "code"
    wheels_dir = Path(wheels_dir) if wheels_dir is not None else code_dir / WHEELS_DIR
    wheels, backgrounds = load_sources(code_dir)
    table = load_families(code_dir)
    families = catalogue_families(code_dir.parent / CATALOG_FILE)
    staging = code_dir / BUILD_DIR
    shutil.rmtree(staging, ignore_errors=True)
    built_index = CodeIndex(staging)
    references: list[CodeReference] = []
    try:
        for source in wheels:
            wheel = fetch_wheel(source, wheels_dir, download=download)
            with tempfile.TemporaryDirectory(prefix=f"modelprov-{source.name}-") as tmp:
                unpack(wheel, source.include, Path(tmp))
                references.append(built_index.add(
                    tmp, name=source.name, version=source.version, license=source.license, repo_id=source.repo_id,
                    include=source.include, file_tags=file_tagger(table, families, source.license), keep_sources=False,
                    described_as=f"PyPI wheel {source.wheel} (sha256:{source.sha256})", wheel=source.wheel,
                    progress=progress,
                ))
        for background in backgrounds:
            package = background.package.split("/")[0]
            installed = importlib.metadata.version(package)
            if installed != background.version:
                raise ProvenanceError(SOURCES_FILE, f"background {background.name} is pinned to {package} "
                                                    f"{background.version}, {installed} is installed")
            references.append(built_index.add(
                f"pip:{background.package}", name=background.name, version=background.version,
                license=background.license, repo_id=background.repo_id, role="background", keep_sources=False,
                described_as=f"installed {package} {background.version}: {background.package}",
            ))
        shipped = {entry.name: entry for entry in CodeIndex(code_dir).entry_dirs()}
        results = [BuiltEntry(r, entry_digest(staging / r.key),
                              entry_digest(shipped[r.key]) if r.key in shipped else None) for r in references]
        if replace:
            names = {r.name for r in references}
            for entry in shipped.values():
                if entry.name.split("@", 1)[0] in names:
                    shutil.rmtree(entry)
            for r in references:
                os.replace(staging / r.key, code_dir / r.key)
        return results
    except importlib.metadata.PackageNotFoundError as err:
        raise ProvenanceError(SOURCES_FILE, f"background package {err} is not installed") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
