"""The code reference index: fingerprints, token streams and unit metadata of licensed reference code.

Layout: one folder per reference, `<index>/<name>@<version>/` holding `manifest.json` (reference, license,
files with their family/organisation/licence tags), `units.json.gz` (qualified names, kinds, declared
parents) and `arrays.npz` (abstracted tokens as indices into a vocabulary of stable ids, their lines, unit
sizes and lines, and where each winnowed fingerprint starts; hashes and stream digests are recomputed from
the tokens when loading). Both compressed files are byte-reproducible. `sources.zip` (the verbatim files,
for side-by-side views) is optional: the shipped index holds no source text and regenerates it from the
pinned wheel when that is at hand (`wheels_dir`). Adding writes a new folder and renames it into place,
so a failed add leaves the index as it was.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
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
from functools import lru_cache
from zlib import error as zlib_error
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np

from modelprov._atomic import atomic_write
from modelprov._inputs import gunzip, parse_json
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

from .fingerprint import DEFAULT_PARAMS, FingerprintParams, file_fingerprints, kgram_hashes, kgram_hashes_at, stream_digests
from .origin import declared_parents
from .tokenize import GRAMMAR_PACKAGES, LANGUAGE_BY_SUFFIX, TokenizedFile, language_of, tokenize_source

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
UNITS = "units.json.gz"
ARRAYS_FILE = "arrays.npz"
SOURCES = "sources.zip"
WHEELS_DIR = ".wheels"  # pinned wheels the verbatim reference text is regenerated from (not in the digest)
# stored arrays; token lines and fingerprint positions as steps, which compress to almost nothing
ARRAYS = ("vocab", "tokens", "line_steps", "unit_sizes", "unit_lines", "fp_steps")
TAGS = ("family", "org", "country", "license")  # per-file: the model family a file implements, and its terms
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same content gives the same bytes
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
    wheel: str | None = None  # the pinned wheel the files were unpacked from (to regenerate their text)
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
    out["unit_sizes"] = np.bincount(tokens.unit_of, minlength=len(tokens.units))
    if role == "background":
        out["kgrams"] = np.unique(
            np.concatenate([kgram_hashes(tokens.ids[idx], params.k) for idx in tokens.unit_tokens()] or [np.empty(0, np.uint64)])
        )
        out["fp_positions"] = np.empty(0, np.int64)
    else:
        _, _, out["fp_positions"] = file_fingerprints(tokens.ids, tokens.unit_of, params)
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
            raw = _read_regular(path)
        except FileNotFoundError:
            raise ReferenceIndexError(entry, f"not a code index entry: {MANIFEST} is missing") from None
        manifest = parse_json(raw, path, ReferenceIndexError, what="malformed code index manifest")
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            raise ReferenceIndexError(path, f"unsupported code index format (expected format_version {FORMAT_VERSION}); "
                                            "re-index this reference")
        if manifest.get("params") != DEFAULT_PARAMS.to_dict():
            raise ReferenceIndexError(path, "indexed with other fingerprint parameters; re-index this reference")
        try:
            CodeReference(**manifest["reference"])
            for file in manifest["files"]:
                if not isinstance(file["path"], str) or int(file["units"]) < 0 or not isinstance(file.get("tags", {}), dict):
                    raise TypeError("'path', 'units' or 'tags'")
        except (KeyError, TypeError, ValueError) as err:
            raise ReferenceIndexError(path, f"malformed code index manifest: bad or missing {err}") from None
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
                    **{k: v for k, v in f.get("tags", {}).items() if k in TAGS},
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
        file_tags: Callable[[str], dict[str, str | None]] | None = None,
        keep_sources: bool = True,
        described_as: str | None = None,
        wheel: str | None = None,
    ) -> CodeReference:
        """Tokenise, fingerprint and store a code base; `pip:transformers` indexes an installed package.

        `file_tags(path)` gives a file's family, org, country and licence (default: the entry's own);
        `keep_sources=False` stores no source text (the shipped index); `described_as` replaces the source
        path in the manifest (a temporary folder is no provenance) and `wheel` names the pinned wheel.
        """
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
        for r in results:
            tags = dict(file_tags(r["path"])) if file_tags is not None else {}
            own = r["license"].get("spdx", [])
            if not tags.get("license") and len(own) == 1:  # a file's own SPDX tag over the package's licence
                tags["license"] = own[0]
            r["tags"] = {k: tags[k] for k in TAGS if tags.get(k)}
        reference = CodeReference(
            name=name,
            version=version,
            license=license,
            source=described_as or str(source),
            role=role,
            parent=parent,
            revision=tree.revision,
            repo_id=repo_id,
            family=family,
            org=org,
            country=country.upper() if country else None,
            wheel=wheel,
            files=len(results),
            units=sum(len(r["units"]) for r in results),
            fingerprints=sum(int(r["fp_positions"].shape[0]) for r in results),
            tokens=sum(int(r["ids"].shape[0]) for r in results),
        )
        licenses = _relative_license_files(read_license_files(tree.license_files), tree.root)
        self._write(target, reference, results, licenses, keep_sources)
        return reference

    def _write(self, target: Path, reference: CodeReference, results: list[dict], licenses: TreeLicenses,
               keep_sources: bool) -> None:
        # a few dozen distinct abstracted tokens: find them per file, then index every token into them
        vocab = np.unique(np.concatenate([np.unique(r["ids"]) for r in results]))
        tokens = np.concatenate([np.searchsorted(vocab, r["ids"]) for r in results])
        unit_sizes = np.concatenate([r["unit_sizes"] for r in results])
        token_base = np.cumsum([0] + [int(r["ids"].shape[0]) for r in results])
        positions = np.concatenate([r["fp_positions"] + base for r, base in zip(results, token_base)])
        lines = np.concatenate([r["token_lines"] for r in results]).astype(np.int64)
        units = [u for r in results for u in r["units"]]
        arrays = {
            "vocab": vocab.astype(np.uint64),
            "tokens": tokens.astype(_smallest_uint(vocab.shape[0])),
            "line_steps": _steps(lines),
            "unit_sizes": unit_sizes.astype(np.uint32),
            "unit_lines": np.array([[u[1], u[2]] for u in units], dtype=np.int32).reshape(-1, 2),
            "fp_steps": _steps(positions),
        }
        if reference.role == "background":
            arrays["kgrams"] = np.unique(np.concatenate([r["kgrams"] for r in results]))
        files = []
        for r in results:
            record = {k: r[k] for k in ("path", "sha256", "language", "lines", "license", "parent_files", "tags")}
            record["units"] = len(r["units"])
            files.append(record)
        manifest = {
            "format_version": FORMAT_VERSION,
            "params": DEFAULT_PARAMS.to_dict(),
            "tokeniser": grammar_versions(sorted({r["language"] for r in results})),
            "reference": {k: v for k, v in reference.to_dict().items() if k != "key"},
            "licenses": licenses.to_dict(),
            "arrays": sorted(arrays),
            "sources": keep_sources,
            "files": files,
        }
        units_doc = {"qualnames": [u[0] for u in units], "kinds": [u[3] for u in units], "parents": [u[4] for u in units]}
        staging = self.directory / f".{target.name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            with atomic_write(staging / ARRAYS_FILE, "wb") as handle:
                handle.write(_npz_bytes(arrays))
            with atomic_write(staging / UNITS, "wb") as handle:
                handle.write(gzip.compress(json.dumps(units_doc, sort_keys=True).encode(), compresslevel=9, mtime=0))
            if keep_sources:
                with atomic_write(staging / SOURCES, "wb") as handle:
                    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
                        for r in results:
                            archive.writestr(zipfile.ZipInfo(r["path"], _ZIP_DATE), r["source"])
            with atomic_write(staging / MANIFEST) as handle:
                json.dump(manifest, handle, indent=1, sort_keys=True)
                handle.write("\n")
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def grammar_versions(languages: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of tree-sitter and of the grammars of `languages`: tokens, hence fingerprints,
    depend on them, so a reproducible index records them."""
    names = ["tree-sitter"] + sorted({GRAMMAR_PACKAGES[language] for language in languages})
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _relative_license_files(licenses: TreeLicenses, root: Path) -> TreeLicenses:
    """License files named relative to the indexed root (an absolute temporary path is no provenance)."""
    def name(path: str) -> str:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return Path(path).name
    return TreeLicenses(files={name(k): v for k, v in licenses.files.items()}, notice=licenses.notice,
                        copyrights=licenses.copyrights)


def _smallest_uint(count: int) -> type:
    return np.uint8 if count <= 256 else np.uint16 if count <= 65536 else np.uint32


def _steps(values: np.ndarray) -> np.ndarray:
    """Differences of consecutive values in the smallest signed type holding them (they compress well)."""
    steps = np.diff(values.astype(np.int64), prepend=np.int64(0))
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if steps.shape[0] == 0 or (steps.min() >= info.min and steps.max() <= info.max):
            return steps.astype(dtype)
    return steps


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deflated `.npz` with fixed member dates and order: the same arrays give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.save(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", _ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


MAX_ARRAY_BYTES = 1 << 31  # an array member that would unpack to more is refused, not decompressed


def _read_regular(path: Path) -> bytes:
    """The bytes of an index file; a missing one raises FileNotFoundError, a FIFO or device is refused."""
    if not path.exists():
        raise FileNotFoundError(path)
    if not path.is_file():
        raise ReferenceIndexError(path, "not a regular file")
    try:
        return path.read_bytes()
    except OSError as err:
        raise ReferenceIndexError(path, f"cannot read: {err.strerror or err}") from None


def _read_npz(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The named arrays of an entry's `arrays.npz` (no pickles; sizes bounded before decompressing)."""
    try:
        with zipfile.ZipFile(io.BytesIO(_read_regular(path))) as archive:
            out = {}
            for name in names:
                info = archive.getinfo(f"{name}.npy")
                if info.file_size > MAX_ARRAY_BYTES:
                    raise ValueError(f"{name} would unpack to {info.file_size} bytes")
                out[name] = np.load(io.BytesIO(archive.read(info)), allow_pickle=False)
            return out
    except FileNotFoundError:
        raise ReferenceIndexError(path, "code index data is missing") from None
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib_error) as err:
        raise ReferenceIndexError(path, f"malformed code index data: {err}") from None


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
class Verbatim:
    """A reference file's verbatim tokens, regenerated from its source (kept or unpacked from the wheel)."""

    tokens: TokenizedFile
    unit_tokens: list[np.ndarray]  # per unit of the file, indices of its tokens in file order


@dataclass
class LoadedReference:
    """One entry's arrays and manifest, ready for matching; fingerprint hashes recomputed from the tokens."""

    directory: Path
    reference: CodeReference
    manifest: dict[str, Any]
    vocab: np.ndarray
    tokens: np.ndarray  # indices into vocab, grouped by unit
    token_lines: np.ndarray
    unit_offsets: np.ndarray
    unit_lines: np.ndarray
    fp_hash: np.ndarray  # in token order (the corpus sorts all entries' at once)
    fp_unit: np.ndarray
    unit_file: np.ndarray  # file index of every unit
    file_units: np.ndarray  # first unit of every file, and the unit count at the end
    kgrams: np.ndarray | None = None
    wheels_dir: Path | None = None
    _units: dict[str, list] | None = None
    _keys: dict[str, int] | None = None
    _verbatim: dict[int, Verbatim | None] = field(default_factory=dict)
    _digests: dict[int, int] = field(default_factory=dict)

    def unit_digests(self, units: Iterable[int]) -> np.ndarray:
        """Digests of the units' abstracted streams (equal streams, equal digests), computed on first use:
        a scan needs them only for its candidates."""
        units = np.asarray(list(units) if not isinstance(units, np.ndarray) else units, dtype=np.int64)
        known = self._digests
        missing = np.unique([u for u in units.tolist() if u not in known]).astype(np.int64)
        if missing.shape[0]:
            starts, ends = self.unit_offsets[missing], self.unit_offsets[missing + 1]
            sizes = ends - starts
            within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            ids = self.vocab[self.tokens[np.repeat(starts, sizes) + within]]
            known.update(zip(missing.tolist(), stream_digests(ids, sizes).tolist()))
        return np.array([known[u] for u in units.tolist()], dtype=np.uint64)

    def unit_ids(self, unit: int) -> np.ndarray:
        """Abstracted token ids (uint64) of one unit, in order."""
        return self.vocab[self.tokens[self.unit_span(unit)]]

    def unit_span(self, unit: int) -> slice:
        """Where one unit's tokens sit in the token arrays."""
        return slice(int(self.unit_offsets[unit]), int(self.unit_offsets[unit + 1]))

    def file_tags(self, file: int) -> dict[str, str]:
        """Family, org, country and licence of one file: its own tags over the entry's."""
        ref = self.reference
        base = {"family": ref.family, "org": ref.org, "country": ref.country, "license": ref.license}
        tags = self.manifest["files"][file].get("tags", {})
        return {k: v for k, v in (base | {k: tags[k] for k in TAGS if tags.get(k)}).items() if v}

    @property
    def units(self) -> dict[str, list]:
        """Qualified names, kinds and declared parents of all units (read on first use)."""
        if self._units is None:
            path = self.directory / UNITS
            try:
                self._units = parse_json(gunzip(_read_regular(path), path, ReferenceIndexError), path,
                                         ReferenceIndexError, what="malformed code index units")
                if any(len(self._units[key]) != self.unit_file.shape[0] for key in ("qualnames", "kinds", "parents")):
                    raise ValueError("unit count differs from the manifest")
            except (OSError, EOFError, ValueError, KeyError, TypeError) as err:
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

    def source(self, file: int) -> bytes | None:
        """The verbatim text of one indexed file: from `sources.zip`, else from the pinned wheel when it is at
        hand; None when neither holds it (the shipped index keeps no source text). The sha256 must match."""
        record = self.manifest["files"][file]
        archives = [(self.directory / SOURCES, record["path"])] if self.manifest.get("sources") else []
        if self.reference.wheel and self.wheels_dir is not None:
            archives.append((self.wheels_dir / Path(self.reference.wheel).name, record["path"]))
        for archive, member in archives:
            try:
                data = _archive(archive).read(member)
            except (OSError, KeyError, zipfile.BadZipFile, zlib_error):
                continue
            if hashlib.sha256(data).hexdigest() == record["sha256"]:
                return data
        return None

    def verbatim(self, file: int) -> Verbatim | None:
        """The file's tokens with spans and lines, if its text is available and tokenises to the indexed stream."""
        if file not in self._verbatim:
            self._verbatim[file] = None
            data = self.source(file)
            if data is not None:
                record = self.manifest["files"][file]
                tokens = tokenize_source(data, record["language"])
                lo, hi = int(self.file_units[file]), int(self.file_units[file + 1])
                span = slice(int(self.unit_offsets[lo]), int(self.unit_offsets[hi]))
                grouped = tokens.ids[np.argsort(tokens.unit_of, kind="stable")]
                if len(tokens.units) == hi - lo and np.array_equal(grouped, self.vocab[self.tokens[span]]):
                    self._verbatim[file] = Verbatim(tokens, tokens.unit_tokens())
        return self._verbatim[file]


@lru_cache(maxsize=8)
def _archive(path: Path) -> zipfile.ZipFile:
    """An open zip (a wheel's central directory is read once per process, not once per file)."""
    if not path.is_file():
        raise FileNotFoundError(path)
    return zipfile.ZipFile(path)


def load_reference(index: CodeIndex, entry: Path) -> LoadedReference:
    """Read one entry; a missing or inconsistent array is a malformed index (exit 2)."""
    manifest = index.manifest(entry)
    background = manifest["reference"].get("role") == "background"
    path = entry / ARRAYS_FILE
    arrays = _read_npz(path, list(ARRAYS) + (["kgrams"] if background else []))
    vocab, tokens, unit_sizes = arrays["vocab"], arrays["tokens"], arrays["unit_sizes"]
    unit_counts = np.array([int(f["units"]) for f in manifest["files"]], dtype=np.int64)
    n_tokens = int(tokens.shape[0])
    consistent = (
        vocab.dtype == np.uint64 and tokens.ndim == 1 and tokens.dtype.kind == "u"
        and unit_sizes.ndim == 1 and int(unit_counts.sum()) == unit_sizes.shape[0]
        and int(unit_sizes.astype(np.int64).sum()) == n_tokens
        and arrays["line_steps"].shape == tokens.shape
        and arrays["unit_lines"].shape == (unit_sizes.shape[0], 2)
        and arrays["fp_steps"].ndim == 1
        and (n_tokens == 0 or int(tokens.max()) < vocab.shape[0])
    )
    if not consistent:
        raise ReferenceIndexError(entry, "malformed code index data: arrays do not match the manifest")
    unit_offsets = np.concatenate([[0], np.cumsum(unit_sizes, dtype=np.int64)])
    positions = np.cumsum(arrays["fp_steps"], dtype=np.int64)
    k = DEFAULT_PARAMS.k
    fp_unit = np.searchsorted(unit_offsets, positions, "right") - 1
    inside = positions.shape[0] == 0 or (
        positions.min() >= 0 and positions.max() + k <= n_tokens
        and bool((positions + k <= unit_offsets[np.clip(fp_unit + 1, 0, unit_sizes.shape[0])]).all())
    )
    if not inside:
        raise ReferenceIndexError(path, "malformed code index data: a fingerprint lies outside its unit")
    fp_hash = kgram_hashes_at(tokens, positions, k, vocab)
    unit_file = np.repeat(np.arange(unit_counts.shape[0]), unit_counts)
    return LoadedReference(
        directory=entry,
        reference=CodeReference(**manifest["reference"]),
        manifest=manifest,
        vocab=vocab,
        tokens=tokens,
        token_lines=np.cumsum(arrays["line_steps"], dtype=np.int64).astype(np.int32),
        unit_offsets=unit_offsets,
        unit_lines=arrays["unit_lines"],
        fp_hash=fp_hash,
        fp_unit=fp_unit.astype(np.int64),
        unit_file=unit_file,
        file_units=np.concatenate([[0], np.cumsum(unit_counts)]),
        kgrams=arrays.get("kgrams"),
        wheels_dir=index.directory / WHEELS_DIR,
    )
