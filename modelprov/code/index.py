"""The code reference index: fingerprints, token streams and sources of licensed reference code on disk.

Layout: one folder per reference, `<index>/<name>@<version>/` holding `manifest.json` (reference, license,
files), `units.json` (qualified names and declared parents), one `.npy` array each for the winnowed
fingerprints (sorted by hash), abstracted token streams, lines and spans (memory-mapped when scanning, so
only the pages of candidate functions are read) and `sources.zip` (verbatim files, for side-by-side views). Adding writes a new folder
and renames it into place, so a failed add leaves the index as it was.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import numpy as np

from modelprov._atomic import atomic_write
from modelprov.errors import ProvenanceError, ReferenceIndexError
from modelprov.index import default_index_dir
from modelprov.index.licenses import (
    TreeLicenses,
    detect_file_license,
    is_license_file,
    normalise_expression,
    read_license_files,
)
from modelprov.progress import INDEXING_CODE, ProgressFn, report

from .fingerprint import DEFAULT_PARAMS, FingerprintParams, file_fingerprints, kgram_hashes, stream_digests
from .origin import declared_parents
from .tokenize import LANGUAGE_BY_SUFFIX, language_of, tokenize_source

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
UNITS = "units.json"
SOURCES = "sources.zip"
ARRAYS = (
    "vocab", "tokens", "token_lines", "token_starts", "token_lengths",
    "unit_offsets", "unit_digest", "unit_lines", "fp_hash", "fp_unit",
)
ROLES = ("reference", "background")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".tox", ".mypy_cache", "build", "dist"}
PARALLEL_FROM = 48  # files; below this a worker pool costs more than it saves


def default_code_index_dir() -> Path:
    """`code/` in the reference index (see `modelprov.index.default_index_dir`)."""
    return default_index_dir() / "code"


@dataclass
class SourceTree:
    """What `index add` reads: a root folder, the files under it, and what it is."""

    root: Path
    files: list[str]  # POSIX paths relative to root
    kind: str  # "folder" | "git" | "pip" | "file"
    revision: str | None = None
    package: str | None = None  # top-level import name, for `# Copied from package.x.y` comments
    license_files: list[Path] = field(default_factory=list)


def source_files(root: Path) -> list[str]:
    """Relative POSIX paths of the source files under `root` (hidden, cache and build folders skipped)."""
    out = []
    base = len(str(root)) + 1
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        prefix = folder[base:].replace(os.sep, "/")
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in LANGUAGE_BY_SUFFIX:
                out.append(f"{prefix}/{name}" if prefix else name)
    return out


def _distribution(import_name: str) -> importlib.metadata.Distribution | None:
    """The installed distribution providing an import name (the cheap exact-name lookup first)."""
    try:
        return importlib.metadata.distribution(import_name)
    except importlib.metadata.PackageNotFoundError:
        names = importlib.metadata.packages_distributions().get(import_name, [])
        return importlib.metadata.distribution(names[0]) if names else None


def _pip_tree(spec: str) -> SourceTree:
    name, _, sub = spec[len("pip:") :].partition("/")
    module = importlib.util.find_spec(name) if name and name.isidentifier() else None
    if module is None or not (module.submodule_search_locations or module.origin):
        raise ProvenanceError(spec, f"no installed Python package {name!r}")
    package_dir = Path(next(iter(module.submodule_search_locations or []), None) or Path(module.origin).parent)
    root = package_dir / sub if sub else package_dir
    if not root.exists():
        raise ProvenanceError(spec, f"{sub!r} is not inside the installed package {name!r}")
    dist = _distribution(name)
    revision, license_files = None, []
    if dist is not None:
        revision = dist.version
        for file in dist.files or []:
            if "dist-info" in str(file) and Path(str(file)).name.lower().startswith(("license", "licence", "notice", "copying")):
                license_files.append(Path(dist.locate_file(file)))
    files = source_files(root) if root.is_dir() else [root.name]
    tree = SourceTree(root if root.is_dir() else root.parent, files, "pip", revision, name, license_files)
    tree.license_files += [p for p in sorted(package_dir.iterdir()) if is_license_file(p)]
    return tree


def _git_files(root: Path) -> tuple[list[str], str | None]:
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, check=True, timeout=60)
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return source_files(root), None
    files = sorted(f for f in listed.stdout.decode("utf-8", "replace").split("\0") if f and language_of(f))
    revision = head.stdout.decode().strip() if head.returncode == 0 else None
    return files, revision


def resolve_source(spec: str | os.PathLike[str], include: Iterable[str] = ()) -> SourceTree:
    """A folder, a git checkout, a single file or `pip:package[/sub/folder]` -> the source files to index."""
    text = str(spec)
    if text.startswith("pip:"):
        tree = _pip_tree(text)
    else:
        path = Path(text)
        if not path.exists():
            raise ProvenanceError(path, "no such file or folder")
        if path.is_file():
            if not language_of(path):
                raise ProvenanceError(path, "not a Python, C++ or CUDA source file")
            tree = SourceTree(path.parent, [path.name], "file")
        elif (path / ".git").exists():
            files, revision = _git_files(path)
            tree = SourceTree(path, files, "git", revision)
        else:
            tree = SourceTree(path, source_files(path), "folder")
        if path.is_dir():
            tree.license_files = [p for p in sorted(path.iterdir()) if is_license_file(p)]
    patterns = list(include)
    if patterns:
        tree.files = [f for f in tree.files if any(fnmatch.fnmatch(f, p) for p in patterns)]
    if not tree.files:
        raise ProvenanceError(text, "no Python, C++ or CUDA source files" + (" match --include" if patterns else ""))
    return tree


@dataclass
class CodeReference:
    """One indexed code base: identity, license and size."""

    name: str
    version: str
    license: str | None
    source: str
    role: str = "reference"  # "background": generic code whose fingerprints are ignored as boilerplate
    parent: str | None = None  # declared parent reference (name or name@version) for attribution
    revision: str | None = None
    repo_id: str | None = None
    family: str | None = None
    org: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2 of the publishing organisation
    files: int = 0
    units: int = 0
    fingerprints: int = 0
    tokens: int = 0

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["key"] = self.key
        return d


def _index_one(task: tuple[str, str, str, str | None, list[str], dict]) -> dict[str, Any]:
    """Tokenise and fingerprint one file (runs in a worker process when indexing many files)."""
    root, relpath, role, package, known, params_dict = task
    params = FingerprintParams(**params_dict)
    source = (Path(root) / relpath).read_bytes()
    tokens = tokenize_source(source, language_of(relpath) or "python")
    text = source.decode("utf-8", "replace")
    out: dict[str, Any] = {
        "path": relpath,
        "sha256": hashlib.sha256(source).hexdigest(),
        "language": tokens.language,
        "lines": text.count("\n") + 1,
        "license": detect_file_license(text).to_dict(),
        "source": source,
    }
    order = np.argsort(tokens.unit_of, kind="stable")
    out["ids"] = tokens.ids[order]
    out["token_lines"] = tokens.lines[order]
    out["token_starts"] = tokens.starts[order]
    out["token_lengths"] = np.minimum(tokens.ends[order] - tokens.starts[order], 65535)
    out["unit_sizes"] = np.bincount(tokens.unit_of, minlength=len(tokens.units))
    out["unit_digest"] = stream_digests(out["ids"], out["unit_sizes"])
    if role == "background":
        out["kgrams"] = np.unique(
            np.concatenate([kgram_hashes(tokens.ids[idx], params.k) for idx in tokens.unit_tokens()] or [np.empty(0, np.uint64)])
        )
        out["fp_hash"], out["fp_unit"] = np.empty(0, np.uint64), np.empty(0, np.int64)
    else:
        out["fp_hash"], out["fp_unit"], _ = file_fingerprints(tokens.ids, tokens.unit_of, params)
    parents = declared_parents(Path(root), relpath, text, tokens.units, package, set(known)) if role == "reference" else {}
    out["units"] = [[u.qualname, u.start_line, u.end_line, u.kind, parents.get(u.qualname)] for u in tokens.units]
    # files this one declares copies from: undeclared helpers pulled in with them (transformers' modular
    # converter copies dependencies silently) are looked up there by name at attribution time
    sources = Counter(parent.split("::", 1)[0] for parent in parents.values())
    out["parent_files"] = [path for path, _ in sorted(sources.items(), key=lambda item: (-item[1], item[0]))]
    return out


class CodeIndex:
    """A folder of indexed code references (`reference_index/code/` by default)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_code_index_dir()
        if self.directory.exists() and not self.directory.is_dir():
            raise ReferenceIndexError(self.directory, "code index location is a file, not a folder")

    # -- listing -------------------------------------------------------------------------------
    def entry_dirs(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.is_dir() and not p.name.startswith("."))

    def manifest(self, entry: Path) -> dict[str, Any]:
        path = entry / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ReferenceIndexError(entry, f"not a code index entry: {MANIFEST} is missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ReferenceIndexError(path, f"malformed code index manifest: {err}") from None
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            raise ReferenceIndexError(path, f"unsupported code index format (expected format_version {FORMAT_VERSION})")
        if manifest.get("params") != DEFAULT_PARAMS.to_dict():
            raise ReferenceIndexError(path, "indexed with other fingerprint parameters; re-index this reference")
        try:
            CodeReference(**manifest["reference"])
            for file in manifest["files"]:
                file["path"], int(file["units"])
        except (KeyError, TypeError) as err:
            raise ReferenceIndexError(path, f"malformed code index manifest: missing {err}") from None
        return manifest

    def list(self) -> list[CodeReference]:
        """The references in the index, in name order."""
        return [CodeReference(**self.manifest(entry)["reference"]) for entry in self.entry_dirs()]

    def has_references(self) -> bool:
        """True when at least one (non-background) reference is indexed: a code scan has something to match."""
        return any(r.role == "reference" for r in self.list())

    def find(self, name: str) -> Path:
        """The entry folder of `name` or `name@version`; a name with several versions must say which."""
        matches = [e for e in self.entry_dirs() if e.name == name or e.name.split("@", 1)[0] == name]
        if not matches:
            raise ReferenceIndexError(self.directory, f"no code reference {name!r} in the index")
        if len(matches) > 1:
            versions = ", ".join(m.name for m in matches)
            raise ReferenceIndexError(self.directory, f"{name!r} has several versions ({versions}); give name@version")
        return matches[0]

    def show(self, name: str) -> dict[str, Any]:
        """Reference, license evidence and per-file unit counts of one entry."""
        manifest = self.manifest(self.find(name))
        return {
            "reference": CodeReference(**manifest["reference"]).to_dict(),
            "licenses": manifest.get("licenses", {}),
            "files": [
                {
                    "path": f["path"],
                    "sha256": f["sha256"],
                    "language": f["language"],
                    "units": f["units"],
                    "license_ids": f["license"].get("ids", []),
                }
                for f in manifest["files"]
            ],
        }

    def remove(self, name: str) -> CodeReference:
        """Delete one entry; returns what was removed."""
        entry = self.find(name)
        reference = CodeReference(**self.manifest(entry)["reference"])
        shutil.rmtree(entry)
        return reference

    # -- adding --------------------------------------------------------------------------------
    def add(
        self,
        source: str | os.PathLike[str],
        *,
        name: str,
        version: str | None = None,
        license: str | None = None,
        role: str = "reference",
        parent: str | None = None,
        repo_id: str | None = None,
        family: str | None = None,
        org: str | None = None,
        country: str | None = None,
        include: Iterable[str] = (),
        workers: int | None = None,
        progress: ProgressFn | None = None,
    ) -> CodeReference:
        """Tokenise, fingerprint and store a code base; `pip:transformers` indexes an installed package."""
        if not _NAME.match(name):
            raise ProvenanceError(name, "reference name must be letters, digits, '.', '_', '+' or '-'")
        if country is not None and not re.fullmatch(r"[A-Za-z]{2}", country):
            raise ProvenanceError(country, "country must be an ISO 3166-1 alpha-2 code such as CN or US")
        if role not in ROLES:
            raise ProvenanceError(role, f"role must be one of {', '.join(ROLES)}")
        tree = resolve_source(source, include)
        version = version or tree.revision or "unversioned"
        if not _NAME.match(version):
            raise ProvenanceError(version, "version must be letters, digits, '.', '_', '+' or '-'")
        license = normalise_expression(license) if license else None
        target = self.directory / f"{name}@{version}"
        if target.exists():
            raise ProvenanceError(target, "already in the code index; remove it first")
        params = DEFAULT_PARAMS.to_dict()
        tasks = [(str(tree.root), f, role, tree.package, tree.files, params) for f in tree.files]
        results = _run(tasks, workers, progress)
        reference_licenses = read_license_files(tree.license_files)
        reference = CodeReference(
            name=name,
            version=version,
            license=license,
            source=str(source),
            role=role,
            parent=parent,
            revision=tree.revision,
            repo_id=repo_id,
            family=family,
            org=org,
            country=country.upper() if country else None,
            files=len(results),
            units=sum(len(r["units"]) for r in results),
            fingerprints=sum(int(r["fp_hash"].shape[0]) for r in results),
            tokens=sum(int(r["ids"].shape[0]) for r in results),
        )
        self._write(target, reference, results, reference_licenses)
        return reference

    def _write(self, target: Path, reference: CodeReference, results: list[dict], licenses: TreeLicenses) -> None:
        # a few hundred distinct abstracted tokens: find them per file, then index every token into them
        vocab = np.unique(np.concatenate([np.unique(r["ids"]) for r in results]))
        tokens = np.concatenate([np.searchsorted(vocab, r["ids"]) for r in results])
        unit_sizes = np.concatenate([r["unit_sizes"] for r in results])
        unit_base = np.cumsum([0] + [len(r["units"]) for r in results])
        fp_unit = np.concatenate([r["fp_unit"] + base for r, base in zip(results, unit_base)])
        fp_hash = np.concatenate([r["fp_hash"] for r in results]).astype(np.uint64)
        by_hash = np.argsort(fp_hash, kind="stable")
        units = [u for r in results for u in r["units"]]
        arrays = {
            "vocab": vocab.astype(np.uint64),
            "tokens": tokens.astype(np.uint16 if vocab.shape[0] < 65536 else np.uint32),
            "token_lines": np.concatenate([r["token_lines"] for r in results]).astype(np.uint32),
            "token_starts": np.concatenate([r["token_starts"] for r in results]).astype(np.uint32),
            "token_lengths": np.concatenate([r["token_lengths"] for r in results]).astype(np.uint16),
            "unit_offsets": np.concatenate([[0], np.cumsum(unit_sizes)]).astype(np.int64),
            "unit_digest": np.concatenate([r["unit_digest"] for r in results]).astype(np.uint64),
            "unit_lines": np.array([[u[1], u[2]] for u in units], dtype=np.int32).reshape(-1, 2),
            "fp_hash": fp_hash[by_hash],
            "fp_unit": fp_unit.astype(np.uint32)[by_hash],
        }
        if reference.role == "background":
            arrays["kgrams"] = np.unique(np.concatenate([r["kgrams"] for r in results]))
        files = []
        for r in results:
            record = {k: r[k] for k in ("path", "sha256", "language", "lines", "license", "parent_files")}
            record["units"] = len(r["units"])
            files.append(record)
        manifest = {
            "format_version": FORMAT_VERSION,
            "params": DEFAULT_PARAMS.to_dict(),
            "reference": {k: v for k, v in reference.to_dict().items() if k != "key"},
            "licenses": licenses.to_dict(),
            "arrays": sorted(arrays),
            "files": files,
        }
        staging = self.directory / f".{target.name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for name, array in arrays.items():
                with atomic_write(staging / f"{name}.npy", "wb") as handle:
                    np.save(handle, array)
            with atomic_write(staging / UNITS) as handle:
                json.dump({"qualnames": [u[0] for u in units], "kinds": [u[3] for u in units], "parents": [u[4] for u in units]}, handle)
            with atomic_write(staging / SOURCES, "wb") as handle:
                with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                    for r in results:
                        archive.writestr(r["path"], r["source"])
            with atomic_write(staging / MANIFEST) as handle:
                json.dump(manifest, handle, indent=1, sort_keys=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _run(tasks: list, workers: int | None, progress: ProgressFn | None) -> list[dict]:
    workers = workers if workers is not None else (min(2, os.cpu_count() or 1) if len(tasks) >= PARALLEL_FROM else 1)
    results: list[dict] = []
    if workers <= 1:
        for done, task in enumerate(tasks, 1):
            results.append(_index_one(task))
            report(progress, INDEXING_CODE, done, len(tasks), task[1])
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, result in enumerate(pool.map(_index_one, tasks, chunksize=8), 1):
            results.append(result)
            report(progress, INDEXING_CODE, done, len(tasks), tasks[done - 1][1])
    return results


class UnitRecord(NamedTuple):
    """What the index knows of one reference unit."""

    qualname: str
    start_line: int
    end_line: int
    kind: str
    parent: str | None  # declared parent key `path::qualname`, if any


@dataclass
class LoadedReference:
    """One entry's (memory-mapped) arrays and manifest, ready for matching."""

    directory: Path
    reference: CodeReference
    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]
    unit_file: np.ndarray  # file index of every unit
    _units: dict[str, list] | None = None
    _keys: dict[str, int] | None = None
    _archive: zipfile.ZipFile | None = None

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        raise AttributeError(name)

    @property
    def kgrams(self) -> np.ndarray | None:
        return self.arrays.get("kgrams")

    def unit_ids(self, unit: int) -> np.ndarray:
        """Abstracted token ids (uint64) of one unit, in order."""
        return self.vocab[self.tokens[self.unit_span(unit)]]

    def unit_span(self, unit: int) -> slice:
        """Where one unit's tokens sit in the token arrays."""
        return slice(int(self.unit_offsets[unit]), int(self.unit_offsets[unit + 1]))

    @property
    def units(self) -> dict[str, list]:
        """Qualified names, kinds and declared parents of all units (read on first use)."""
        if self._units is None:
            path = self.directory / UNITS
            try:
                self._units = json.loads(path.read_text(encoding="utf-8"))
                if len(self._units["qualnames"]) != self.unit_file.shape[0]:
                    raise ValueError("unit count differs from the manifest")
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise ReferenceIndexError(path, f"malformed code index units: {err}") from None
        return self._units

    def unit_record(self, unit: int) -> tuple[dict[str, Any], UnitRecord]:
        """(file record, unit record) of one unit."""
        units = self.units
        start, end = self.unit_lines[unit]
        record = UnitRecord(units["qualnames"][unit], int(start), int(end), units["kinds"][unit], units["parents"][unit])
        return self.manifest["files"][int(self.unit_file[unit])], record

    def unit_index(self, key: str) -> int | None:
        """The unit named `path::qualname`, if indexed."""
        if self._keys is None:
            paths = [f["path"] for f in self.manifest["files"]]
            self._keys = {
                f"{paths[file]}::{qualname}": i
                for i, (file, qualname) in enumerate(zip(self.unit_file.tolist(), self.units["qualnames"]))
            }
        return self._keys.get(key)

    def source(self, path: str) -> bytes:
        """The verbatim indexed file (kept in `sources.zip`)."""
        try:
            if self._archive is None:
                self._archive = zipfile.ZipFile(self.directory / SOURCES)
            return self._archive.read(path)
        except (OSError, KeyError, zipfile.BadZipFile) as err:
            raise ReferenceIndexError(self.directory / SOURCES, f"cannot read indexed source {path}: {err}") from None


def load_reference(index: CodeIndex, entry: Path) -> LoadedReference:
    """Map one entry's arrays; a missing or inconsistent array is a malformed index (exit 2)."""
    manifest = index.manifest(entry)
    names = list(ARRAYS) + (["kgrams"] if manifest["reference"].get("role") == "background" else [])
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        path = entry / f"{name}.npy"
        try:
            # token arrays are large and read a few units at a time: map them; the rest is read whole
            arrays[name] = np.load(path, mmap_mode="r" if name.startswith("token") else None, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ReferenceIndexError(path, f"malformed code index data: {err}") from None
    unit_counts = [int(f["units"]) for f in manifest["files"]]
    unit_file = np.repeat(np.arange(len(unit_counts)), unit_counts)
    offsets = arrays["unit_offsets"]
    consistent = (
        offsets.shape[0] == unit_file.shape[0] + 1
        and (offsets.shape[0] == 0 or int(offsets[-1]) == arrays["tokens"].shape[0])
        and arrays["unit_lines"].shape[0] == unit_file.shape[0]
        and arrays["fp_hash"].shape == arrays["fp_unit"].shape
        and arrays["token_lines"].shape == arrays["tokens"].shape
    )
    if not consistent:
        raise ReferenceIndexError(entry, "malformed code index data: arrays do not match the manifest")
    return LoadedReference(entry, CodeReference(**manifest["reference"]), manifest, arrays, unit_file)
