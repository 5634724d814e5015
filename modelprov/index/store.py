"""The reference index: public models' fingerprints plus a catalogue, versioned and sealed by a content digest.

Layout of an index folder::

    index.json              name, version, created, digest, entries (one per reference and kind)
    catalog.toml            public families: Hub repo ids, organisation, country, license, fingerprinted?
    weights/<name>.safetensors   sketches, one per tensor, and `anchors:<tensor>` embedding rows: uint8 codes
                                 of a per-row grid with its (offset, step) rows under `grid:<key>` (format 3),
                                 or float16 (indexes written before format 3, still read)
    weights/<name>.json          manifest: reference, sketch spec, sketch storage, source, per-tensor
                                 fingerprints, anchor token ids and bytes
    tokenizers/, code/           written by the tokenizer and code features

The digest covers every file of the folder (sorted relative paths and their sha256) and index.json
without its own digest field, so any change to any file is detected by `verify()`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tomllib
from fnmatch import fnmatch
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
from safetensors.numpy import save as save_safetensors

from modelprov._atomic import atomic_write
from modelprov._hashing import sha256_file
from modelprov._inputs import load_json
from modelprov.errors import NothingToScanError, ReferenceIndexError
from modelprov.findings import Reference
from modelprov.progress import ProgressFn
from modelprov.reader import Checkpoint, CheckpointTokenizer, open_checkpoint
from modelprov.weights.fingerprint import (
    EmbeddingAnchors, ModelFingerprint, SketchSpec, TensorFingerprint, fingerprint_checkpoint,
)
from modelprov.weights.storage import row_grid_decode, row_grid_encode, row_grid_half_step

from .retrieval import ReferenceSignatures, RetrievalIndex, build_retrieval, reference_signatures

INDEX_FILE = "index.json"
CATALOG_FILE = "catalog.toml"
# 2: index.json lists every file with its sha256 (a scan checks the files it reads);
# 3: new weight references store sketches and anchors on a per-row int8 grid (float16 ones are still read)
FORMAT_VERSION = 3
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_ANCHOR_PREFIX = "anchors:"  # sketch-file key of a token embedding's anchor rows
_GRID_PREFIX = "grid:"  # sketch-file key of an array's per-row (offset, step), beside its uint8 codes
ROW_GRID_STORAGE = "int8-row-grid"  # the manifest's `sketch_storage` of format 3 references
_FLOAT16_STORAGE = "float16"  # references written before format 3


INDEX_ENV = "MODELPROV_INDEX"


def default_index_dir() -> Path:
    """`$MODELPROV_INDEX` if set, else the `reference_index/` folder shipped with the project.

    The one place the default is decided: the tokenizer and code references live in its `tokenizers/`
    and `code/` sub-folders.
    """
    env = os.environ.get(INDEX_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "reference_index"


def check_name(name: str) -> str:
    """Reference names become file names: letters, digits and `._+-` only."""
    if not _NAME.match(name or ""):
        raise ReferenceIndexError(None, f"reference name {name!r} must be letters, digits and ._+- (at most 128)")
    return name


@dataclass
class IndexEntry:
    """One reference of one kind (weights, tokenizer, code) and the files that hold it."""

    name: str
    kind: str
    reference: Reference
    files: list[str]  # relative to the index folder
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "reference": self.reference.to_dict(),
                "files": list(self.files), "summary": self.summary}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IndexEntry":
        return cls(d["name"], d["kind"], Reference.from_dict(d["reference"]), list(d.get("files", [])), dict(d.get("summary", {})))


class ReferenceIndex:
    """A reference index folder: entries, catalogue and fingerprints, with add/remove and a digest check."""

    def __init__(self, root: Path, meta: dict[str, Any], entries: list[IndexEntry]) -> None:
        self.root = root
        self.meta = meta
        self.entries = entries
        self._fingerprints: dict[str, ModelFingerprint] = {}
        self._pending: dict[str, ReferenceSignatures] = {}  # signatures of references added but not sealed

    # -- loading and sealing ---------------------------------------------------------------------
    @classmethod
    def load(cls, root: str | os.PathLike[str] | None = None) -> "ReferenceIndex":
        """Open an index folder (default: `default_index_dir()`); raise `ReferenceIndexError` if malformed."""
        folder = Path(root) if root is not None else default_index_dir()
        f = folder / INDEX_FILE
        if not folder.is_dir():
            raise ReferenceIndexError(folder, "reference index folder does not exist")
        if not f.is_file():
            raise ReferenceIndexError(f, "not a reference index (index.json missing); create one with `modelprov index add`")
        meta = load_json(f, ReferenceIndexError)
        if not isinstance(meta, dict):
            raise ReferenceIndexError(f, "index.json is not a JSON object")
        try:
            entries = [IndexEntry.from_dict(e) for e in meta.get("entries", [])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ReferenceIndexError(f, f"malformed index ({exc.__class__.__name__}: {exc})") from None
        _check_sealed_files(f, meta)
        return cls(folder, meta, entries)

    @classmethod
    def create(cls, root: str | os.PathLike[str], name: str = "reference-index") -> "ReferenceIndex":
        """An empty index in `root` (written at the first `add`/`save`)."""
        folder = Path(root)
        meta = {"name": name, "format_version": FORMAT_VERSION, "version": 0, "created": _now(), "digest": ""}
        return cls(folder, meta, [])

    @classmethod
    def open_or_create(cls, root: str | os.PathLike[str]) -> "ReferenceIndex":
        folder = Path(root)
        return cls.load(folder) if (folder / INDEX_FILE).is_file() else cls.create(folder)

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "reference-index"))

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 0))

    @property
    def digest(self) -> str:
        return str(self.meta.get("digest", ""))

    def summary(self) -> dict[str, Any]:
        """What a scan report records of the index it used."""
        return {"name": self.name, "version": self.version, "digest": self.digest, "path": str(self.root),
                "references": len(self.entries)}

    def compute_digest(self, files: dict[str, str] | None = None) -> str:
        """sha256 over index.json without its digest field (format 2: including its file list), then (format 1)
        each other file's path and sha256. `files` (format 2): the file list to seal, default the recorded one."""
        h = hashlib.sha256()
        meta = {k: v for k, v in self.meta.items() if k != "digest"}
        meta["entries"] = [e.to_dict() for e in self.entries]
        if self.format_version >= 2:
            meta["files"] = dict(sorted((self.meta.get("files") if files is None else files).items()))
            h.update(json.dumps(meta, sort_keys=True, ensure_ascii=False).encode())
            return "sha256:" + h.hexdigest()
        h.update(json.dumps(meta, sort_keys=True, ensure_ascii=False).encode())
        for rel in self._content_files():
            h.update(f"\n{rel}\0{sha256_file(self.root / rel).sha256}".encode())
        return "sha256:" + h.hexdigest()

    @property
    def format_version(self) -> int:
        return int(self.meta.get("format_version", 1))

    def _file_hashes(self, known: Mapping[str, str] | None = None) -> dict[str, str]:
        known = known or {}
        return {rel: known.get(rel) or sha256_file(self.root / rel).sha256 for rel in self._content_files()}

    def _content_files(self) -> list[str]:
        """Files the digest covers: all but index.json, hidden files and what a `.gitignore` inside excludes
        (locally built entries that are not shipped)."""
        if not self.root.is_dir():
            return []
        ignores = [(g.parent.relative_to(self.root).parts, _gitignore_patterns(g)) for g in self.root.rglob(".gitignore")]
        out = []
        for p in self.root.rglob("*"):
            parts = p.relative_to(self.root).parts
            rel = "/".join(parts)
            if not p.is_file() or rel == INDEX_FILE or any(part.startswith(".") for part in parts):
                continue
            if any(_ignored(parts[len(base):], pats) for base, pats in ignores if parts[:len(base)] == base):
                continue
            out.append(rel)
        return sorted(out)

    def verify(self, only: Iterable[str] | None = None) -> None:
        """Raise `ReferenceIndexError` unless the digest matches every file and each entry's files exist.

        `only` (format 2): check the sealed file list and just these files' hashes, the ones a scan read
        (the cost of a scan's check then does not grow with the index). Format 1 always checks everything.
        """
        for e in self.entries:
            for rel in e.files:
                if not (self.root / rel).is_file():
                    raise ReferenceIndexError(self.root / rel, f"file of reference {e.name!r} is missing")
        actual = self.compute_digest()
        if actual != self.digest:
            raise ReferenceIndexError(self.root / INDEX_FILE,
                                      f"digest mismatch: recorded {self.digest or '(none)'}, files give {actual}")
        if self.format_version < 2:
            return
        recorded: dict[str, str] = self.meta.get("files", {})
        if only is None:
            present = set(self._content_files())
            extra = sorted(present - set(recorded))
            if extra:
                raise ReferenceIndexError(self.root / extra[0], "file is not in the sealed index")
        for rel in sorted(recorded if only is None else set(only)):
            path = self.root / rel
            if rel not in recorded:
                raise ReferenceIndexError(path, "file is not in the sealed index")
            if not path.is_file():
                raise ReferenceIndexError(path, "file of the sealed index is missing")
            if sha256_file(path).sha256 != recorded[rel]:
                raise ReferenceIndexError(path, "digest mismatch: the file is not the one sealed in index.json (sha256 differs)")

    def files_of(self, names: Iterable[str]) -> list[str]:
        """What a scan against references `names` reads of the index: their weight files, the retrieval index,
        and everything outside weights/ and retrieval/ (catalogue, tokenizers, code)."""
        wanted = set(names)
        own = {rel for e in self.entries if e.kind == "weights" and e.name in wanted for rel in e.files}
        return sorted(rel for rel in self.meta.get("files", {})
                      if rel in own or not rel.startswith(("weights/",)))

    def save(self, known: Mapping[str, str] | None = None) -> None:
        """Bump the version, reseal the digest and write index.json atomically. `known`: sha256 of files the
        caller hard-linked from another sealed index (not read again)."""
        self.meta["version"] = self.version + 1
        self.meta["format_version"] = FORMAT_VERSION
        self.meta["updated"] = _now()
        self.meta["files"] = self._file_hashes(known)
        self.meta["digest"] = self.compute_digest()
        out = dict(self.meta)
        out["entries"] = [e.to_dict() for e in self.entries]
        with atomic_write(self.root / INDEX_FILE) as handle:
            json.dump(out, handle, indent=1, sort_keys=True, ensure_ascii=False)
            handle.write("\n")

    # -- entries -----------------------------------------------------------------------------------
    @property
    def references(self) -> list[Reference]:
        """Every distinct reference in the index (a model may have weights, tokenizer and code entries)."""
        seen: dict[str, Reference] = {}
        for e in self.entries:
            seen.setdefault(e.name, e.reference)
        return list(seen.values())

    def entries_of(self, kind: str) -> list[IndexEntry]:
        return [e for e in self.entries if e.kind == kind]

    def entry(self, name: str, kind: str | None = None) -> IndexEntry:
        for e in self.entries:
            if e.name == name and (kind is None or e.kind == kind):
                return e
        raise ReferenceIndexError(self.root, f"no reference named {name!r}" + (f" of kind {kind}" if kind else ""))

    def put_entry(self, entry: IndexEntry) -> None:
        """Add or replace the entry with the same name and kind (for the tokenizer and code features too)."""
        check_name(entry.name)
        self.entries = [e for e in self.entries if not (e.name == entry.name and e.kind == entry.kind)]
        self.entries.append(entry)
        self.entries.sort(key=lambda e: (e.name, e.kind))

    def remove(self, name: str) -> list[str]:
        """Remove every entry named `name` and its files; returns the removed files; saves the index."""
        gone = [e for e in self.entries if e.name == name]
        if not gone:
            raise ReferenceIndexError(self.root, f"no reference named {name!r}")
        removed = []
        for e in gone:
            for rel in e.files:
                (self.root / rel).unlink(missing_ok=True)
                removed.append(rel)
        self.entries = [e for e in self.entries if e.name != name]
        self._fingerprints.pop(name, None)
        self._pending.pop(name, None)
        if any(e.kind == "weights" for e in gone):
            self._update_retrieval({})
        self.save()
        return removed

    # -- weights fingerprints -------------------------------------------------------------------------
    def add_weights(self, reference: Reference, fingerprint: ModelFingerprint, *, files: Iterable[dict[str, Any]] = (),
                    seal: bool = True) -> IndexEntry:
        """Store a model fingerprint (sketches as float16 safetensors + JSON manifest) and save the index.

        `seal=False` (many adds in a row) keeps its retrieval signatures pending until `seal()`, which updates the
        retrieval index and the digest once."""
        name = check_name(reference.name)
        sketch_rel, manifest_rel = f"weights/{name}.safetensors", f"weights/{name}.json"
        arrays: dict[str, np.ndarray] = {}
        for key, values in [*((t.name, fingerprint.sketches[t.name]) for t in fingerprint.tensors),
                            *((_ANCHOR_PREFIX + k, a.rows) for k, a in fingerprint.anchors.items())]:
            arrays[key], arrays[_GRID_PREFIX + key] = row_grid_encode(values)
        manifest = {
            "reference": reference.to_dict(),
            "sketch": fingerprint.spec.to_dict(),
            "sketch_storage": ROW_GRID_STORAGE,
            "source": {**fingerprint.source, "files": list(files)},
            "parameter_count": fingerprint.parameter_count,
            "tensors": [t.to_dict() for t in fingerprint.tensors],
            "anchors": {name: a.to_dict() for name, a in sorted(fingerprint.anchors.items())},
        }
        # one metadata key: safetensors writes several in no fixed order, and a rebuild must give the same bytes
        blob = save_safetensors(arrays, metadata={"reference": name})
        with atomic_write(self.root / sketch_rel, "wb") as handle:
            handle.write(blob)
        with atomic_write(self.root / manifest_rel) as handle:
            json.dump(manifest, handle, indent=1, sort_keys=True)
            handle.write("\n")
        entry = IndexEntry(name, "weights", reference, [sketch_rel, manifest_rel], {
            "tensors": len(fingerprint.tensors), "parameters": fingerprint.parameter_count,
            "format": fingerprint.source.get("format"), "quantisation": fingerprint.source.get("quantisation"),
        })
        self.put_entry(entry)
        self._fingerprints.pop(name, None)
        # signatures of the stored form, as `rebuild_retrieval` computes them from the files
        self._pending[name] = reference_signatures(self.fingerprint(name))
        if seal:
            self.seal()
        else:  # many adds in a row: one reference in memory at a time
            self._fingerprints.pop(name, None)
        return entry

    def seal(self) -> None:
        """Update the retrieval index with the references added since the last seal, and save the index."""
        pending, self._pending = self._pending, {}
        self._update_retrieval(pending)
        self.save()

    def fingerprint(self, name: str) -> ModelFingerprint:
        """The weights fingerprint of reference `name`, loaded once: sketches stay in the memory-mapped file
        (uint8 grid codes or float16) and are decoded to float32 when read; anchors are decoded as float32."""
        if name in self._fingerprints:
            return self._fingerprints[name]
        entry = self.entry(name, "weights")
        manifest_path = self.root / f"weights/{name}.json"
        sketch_path = self.root / f"weights/{name}.safetensors"
        manifest = load_json(manifest_path, ReferenceIndexError, what="fingerprint manifest")
        try:
            tensors = [TensorFingerprint.from_dict(t) for t in manifest["tensors"]]
            spec = SketchSpec(**manifest["sketch"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ReferenceIndexError(manifest_path, f"malformed fingerprint manifest ({exc.__class__.__name__}: {exc})") from None
        storage = manifest.get("sketch_storage", _FLOAT16_STORAGE)
        if storage not in (ROW_GRID_STORAGE, _FLOAT16_STORAGE):
            raise ReferenceIndexError(manifest_path, f"unknown sketch storage {storage!r}: written by a newer "
                                                     "modelprov? Upgrade, or rebuild the index with this one")
        stored = StoredArrays(sketch_path, mapped_arrays(sketch_path), grid=storage == ROW_GRID_STORAGE)
        missing = [t.name for t in tensors if t.name not in stored]
        if missing:
            raise ReferenceIndexError(sketch_path, f"{len(missing)} sketches missing, e.g. {missing[0]!r}")
        try:
            anchors = {name: EmbeddingAnchors.from_dict(d, stored[_ANCHOR_PREFIX + name],
                                                        stored.half_step(_ANCHOR_PREFIX + name))
                       for name, d in manifest.get("anchors", {}).items()}
        except (KeyError, ValueError, TypeError) as exc:
            raise ReferenceIndexError(manifest_path, f"malformed embedding anchors ({exc.__class__.__name__}: {exc})") from None
        names = {t.name for t in tensors}
        fp = ModelFingerprint(tensors, LazySketches(stored, names), spec, manifest.get("source", {}), anchors,
                              HalfSteps(stored, names) if stored.grid else {})
        fp.source["reference"] = entry.reference.to_dict()
        fp.source["sketch_storage"] = storage  # what `index show` and a report's reader can see
        self._fingerprints[name] = fp
        return fp

    def weight_references(self, names: Iterable[str] | None = None) -> list[tuple[Reference, ModelFingerprint]]:
        """Every reference with weights (or those named), with its fingerprint."""
        wanted = None if names is None else set(names)
        return [(e.reference, self.fingerprint(e.name)) for e in self.entries_of("weights")
                if wanted is None or e.name in wanted]

    # -- retrieval -------------------------------------------------------------------------------------
    def retrieval(self) -> RetrievalIndex | None:
        """The retrieval index of the weight references, or None when it is missing or does not list exactly
        the index's weight references (an index built before format 2: `rebuild_retrieval()` makes one)."""
        found = RetrievalIndex.load(self.root)
        names = sorted(e.name for e in self.entries_of("weights"))
        if found is None or found.references != names:
            return None
        # the graphs are parsed by native code: open only the bytes that were sealed (one line otherwise)
        self.verify(found.files())
        return found

    def rebuild_retrieval(self) -> RetrievalIndex:
        """Recompute every reference's signatures (one reference in memory at a time) and save the index."""
        found = self._update_retrieval({}, reuse=False)
        self.save()
        return found

    def _update_retrieval(self, fresh: dict[str, Any], *, reuse: bool = True) -> RetrievalIndex:
        """Write the retrieval index: `fresh` signatures for new references, the stored ones for the rest."""
        names = sorted(e.name for e in self.entries_of("weights"))
        previous = RetrievalIndex.load(self.root) if reuse else None
        known = set(previous.references) if previous is not None else set()
        for name in names:
            if name not in fresh and name not in known:
                cached = name in self._fingerprints
                fresh[name] = reference_signatures(self.fingerprint(name))
                if not cached:  # one reference in memory at a time
                    self._fingerprints.pop(name, None)
        return build_retrieval(self.root, names, fresh, previous)

    # -- catalogue -----------------------------------------------------------------------------------
    def catalog(self) -> dict[str, Any]:
        """The parsed catalog.toml (families of public models), or {} when the index has none."""
        path = self.root / CATALOG_FILE
        if not path.is_file():
            return {}
        return load_toml(path)


class StoredArrays:
    """The arrays of one reference's sketch file as stored: float16 views, or uint8 codes with their per-row
    grid (`grid:<key>`: float16 offset and step), decoded to float32 on each read; both stay memory-mapped until
    read."""

    def __init__(self, path: Path, views: dict[str, np.ndarray], *, grid: bool) -> None:
        self.path, self.views, self.grid = path, views, grid

    def __contains__(self, key: str) -> bool:
        return key in self.views and (not self.grid or _GRID_PREFIX + key in self.views)

    def __getitem__(self, key: str) -> np.ndarray:
        if not self.grid:
            return np.asarray(self.views[key], dtype=np.float32)
        return row_grid_decode(self.views[key], self._grid(key))

    def half_step(self, key: str) -> np.ndarray | None:
        """Per row, how far the stored values may lie from the original (None: float16 storage)."""
        return row_grid_half_step(self._grid(key)) if self.grid else None

    def _grid(self, key: str) -> np.ndarray:
        codes, grid = self.views[key], self.views[_GRID_PREFIX + key]
        if codes.dtype != np.uint8 or codes.ndim != 2 or grid.shape != (codes.shape[0], 2) or grid.dtype != np.float16:
            raise ReferenceIndexError(self.path, f"malformed row grid of {key!r}: codes {codes.dtype} {codes.shape}, "
                                                 f"grid {grid.dtype} {grid.shape}")
        return grid


class LazySketches(Mapping[str, np.ndarray]):
    """A reference's sketches by tensor name, decoded to float32 from the memory-mapped file each time one is read."""

    def __init__(self, stored: StoredArrays, names: set[str]) -> None:
        self._stored, self._names = stored, names

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        return self._stored[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names))

    def __len__(self) -> int:
        return len(self._names)


class HalfSteps(LazySketches):
    """Per sketch row, how far a row grid's stored values may lie from the original (read on demand)."""

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        return self._stored.half_step(name)  # type: ignore[return-value]  # a grid store always has one


_ST_DTYPES = {"F16": np.float16, "F32": np.float32, "U8": np.uint8}


def mapped_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file of float16/float32/uint8 arrays as read-only memory-mapped views (nothing
    is read until used); a malformed file is a `ReferenceIndexError` naming it."""
    try:
        if not path.is_file():
            raise ValueError("not a regular file")
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < n <= size - 8:
                raise ValueError("header length outside the file")
            header = json.loads(handle.read(n))
        mapped = np.memmap(path, dtype=np.uint8, mode="r") if size > 8 + n else np.zeros(0, dtype=np.uint8)
        out = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            dtype = np.dtype(_ST_DTYPES[info["dtype"]])
            begin, end = (int(x) for x in info["data_offsets"])
            shape = tuple(int(x) for x in info["shape"])
            if not 0 <= begin <= end <= size - 8 - n or end - begin != math.prod(shape) * dtype.itemsize:
                raise ValueError(f"array {key!r} lies outside the file or has the wrong size")
            out[key] = mapped[8 + n + begin:8 + n + end].view(dtype).reshape(shape)
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ReferenceIndexError(path, f"unreadable sketches ({exc.__class__.__name__}: {exc})") from None


def _gitignore_patterns(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(parts: tuple[str, ...], patterns: list[str]) -> bool:
    """Whether a path (parts below the .gitignore's folder) matches a simple gitignore pattern; as in git,
    the last matching pattern decides and `!pattern` re-includes (the shipped code-index entries)."""
    ignored = False
    for line in patterns:
        negated = line.startswith("!")
        pat = line[1:] if negated else line
        if pat.endswith("/"):  # a directory pattern: any parent folder
            hit = any(fnmatch(d, pat.rstrip("/").lstrip("/")) for d in parts[:-1])
        else:
            hit = any(fnmatch(x, pat.lstrip("/")) for x in parts)
        if hit:
            ignored = not negated
    return ignored


def _check_sealed_files(path: Path, meta: dict[str, Any]) -> None:
    """index.json's format version is a whole number and, from format 2, its sealed file list maps paths to
    sha256 strings (a hostile index once reached the digest with no list: found by the CI fuzzer)."""
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ReferenceIndexError(path, f"format_version must be a whole number ≥ 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise ReferenceIndexError(path, f"index format {version} is newer than this modelprov reads ({FORMAT_VERSION}): "
                                        "upgrade modelprov")
    files = meta.get("files", {} if version < 2 else None)
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ReferenceIndexError(path, "malformed index: `files` must map each sealed file to its sha256")


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a malformed file is a `ReferenceIndexError` naming it."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, ValueError) as exc:
        raise ReferenceIndexError(path, f"malformed TOML ({exc})") from None


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def add_checkpoint(index: ReferenceIndex, path: str | os.PathLike[str] | Checkpoint, reference: Reference, *,
                   spec: SketchSpec | None = None, progress: ProgressFn | None = None) -> IndexEntry:
    """Fingerprint the checkpoint at `path` (full read) and store it in `index` as reference `reference`.

    Embedding anchors are keyed by token bytes when the checkpoint ships a tokenizer, else by row id.
    """
    check_name(reference.name)
    owned = not isinstance(path, Checkpoint)
    ckpt = open_checkpoint(path) if owned else path
    try:
        fp = fingerprint_checkpoint(ckpt, spec, progress=progress, tokens=CheckpointTokenizer.of(ckpt).tokens())
        files = [{"name": f.path.name, "role": f.role, "size": f.size, "sha256": sha256_file(f.path).sha256}
                 for f in ckpt.files() if f.role == "weights"]
    finally:
        if owned:
            ckpt.close()
    if not fp.tensors:
        raise NothingToScanError(ckpt.path, "checkpoint holds no floating-point tensors to fingerprint")
    return index.add_weights(reference, fp, files=files)
