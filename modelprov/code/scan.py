"""Scan source code against the code index: nearest sources, canonical origins, rename maps, licenses.

Pipeline: tokenise the subject → winnowed fingerprints per function → candidate reference functions that
share non-boilerplate fingerprints → greedy string tiling on the abstracted streams confirms and measures
each candidate → the reference files holding a copy of each matched function, its evidence weighted by how
rare that copy is across the index (log((N + 1) / n)), ranked by greedy cover into the file's *nearest
sources* (what was copied) → among near-equal copies, the one in the best-ranked source file is the
function's nearest source, and the root of the declared-parent chain its *canonical origin* (earliest author) →
verbatim tokens of the tiles give the identifier rename map and the side-by-side regions → license
obligations of the nearest source.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from modelprov.errors import ProvenanceError, ReferenceIndexError
from modelprov.findings import Finding, LicenseObligation, Reference
from modelprov.index.licenses import (
    LicenseInfo,
    TreeLicenses,
    detect_file_license,
    license_files_around,
    license_obligations,
    read_license_files,
)

from .fingerprint import DEFAULT_PARAMS, FingerprintParams, file_fingerprints, kgram_hashes, token_id
from .index import CodeIndex, LoadedReference, load_reference, source_files
from .origin import unit_key
from .tiling import Tile, greedy_string_tiling
from .tokenize import ID, TokenizedFile, language_of, tokenize_file

COPIED_SIMILARITY = 0.9  # share of the reference function found, and of the subject function explained
DERIVED_SIMILARITY = 0.5
MIN_EVIDENCE_TOKENS = 40  # matched tokens outside boilerplate needed before a match becomes a finding (at 30,
# two short coincidental matches of scikit-learn functions against the 1,541-file shipped index, 31 and 32 tokens)
MAX_CANDIDATES = 6  # distinct reference token streams confirmed by tiling per subject function
TIE_TOLERANCE = 0.98  # matches within 2% of the best are copies of one another: attribute to the origin
HOLDS_COPY = 0.95  # for the source ranking, a file holds a copy of a function within 5% of the closest match
MAX_SOURCES = 5  # nearest source files listed per subject file
MIN_SOURCE_GAIN = 0.1  # a further source must add this share of the first one's weighted evidence
MAX_PARENT_DEPTH = 16
UNDATED = 10_000  # the year of a reference file without a dated copyright line: after every dated one
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")


@dataclass
class MatchedRegion:
    """One tiled region, with line ranges and verbatim text on both sides for a side-by-side view."""

    subject_lines: tuple[int, int]
    reference_lines: tuple[int, int]
    tokens: int
    subject_text: str
    reference_text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SourceFile:
    """A reference file the subject file was copied from, ranked by rarity-weighted shared evidence."""

    reference: str  # name@version
    path: str
    evidence: float  # evidence tokens of the functions it newly explains, each weighted by its rarity log((N+1)/n)
    functions: int  # subject functions it newly explains (not explained by a file ranked before it)
    share: float  # of the subject file's matched evidence tokens, the part it newly explains
    tags: dict[str, str] = field(default_factory=dict)  # family, org, country, license

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FunctionMatch:
    """One subject function's nearest source (the copy it was taken from) and canonical origin (earliest author)."""

    subject_path: str
    subject_qualname: str
    subject_lines: tuple[int, int]
    subject_tokens: int
    reference: str  # name@version of the nearest source
    reference_path: str
    reference_qualname: str
    reference_lines: tuple[int, int]
    reference_tokens: int
    matched_tokens: int
    evidence_tokens: int  # matched tokens not explained by background/base code
    similarity: float  # share of the reference function found in the subject
    subject_coverage: float  # share of the subject function explained by the reference
    lexical_identity: float | None  # share of matched tokens verbatim identical (None: reference text not at hand)
    verdict: str
    reference_tags: dict[str, str] = field(default_factory=dict)  # family, org, country, license of the source file
    origin: str = ""  # canonical origin `name@version:path::qualname` (the root of the declared chain)
    origin_tags: dict[str, str] = field(default_factory=dict)
    rename_map: dict[str, str] = field(default_factory=dict)
    rename_consistency: float | None = 1.0  # share of identifier pairs agreeing with a one-to-one map
    shared_fingerprints: int = 0
    also_matches: list[str] = field(default_factory=list)  # other copies of the same code in the index
    declared_chain: list[str] = field(default_factory=list)  # nearest source ... canonical origin
    regions: list[MatchedRegion] = field(default_factory=list)
    license_obligations: list[LicenseObligation] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return f"{self.subject_path}::{self.subject_qualname}"

    @property
    def nearest(self) -> str:
        """`name@version:path::qualname` of the nearest source."""
        return f"{self.reference}:{self.reference_path}::{self.reference_qualname}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["subject"] = self.subject
        d["nearest"] = self.nearest
        return d


@dataclass
class FileResult:
    """Per-file summary: tokens, how many are explained by reference code, nearest sources, license evidence."""

    path: str
    language: str
    tokens: int
    functions: int
    matched_tokens: int
    license: dict[str, Any]
    matches: list[FunctionMatch] = field(default_factory=list)
    sources: list[SourceFile] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return self.matched_tokens / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["coverage"] = round(self.coverage, 4)
        d["matches"] = [m.to_dict() for m in self.matches]
        d["sources"] = [src.to_dict() for src in self.sources]
        return d


@dataclass
class CodeScanResult:
    """Everything a code scan found: per-file and per-function results and the findings they yield."""

    root: str
    index: str
    references: list[dict[str, Any]]
    files: list[FileResult]
    findings: list[Finding]
    parameters: dict[str, Any]
    subject_licenses: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "index": self.index,
            "references": self.references,
            "parameters": self.parameters,
            "subject_licenses": self.subject_licenses,
            "files": [f.to_dict() for f in self.files],
            "findings": [f.to_dict() for f in self.findings],
        }

    @classmethod
    def from_dict(cls, code: dict[str, Any]) -> "CodeScanResult":
        """The inverse of `to_dict`: a saved report's `details["code"]` as a result (for SARIF re-rendering)."""
        match_fields = {f.name for f in fields(FunctionMatch)}
        files = []
        for f in code.get("files", []):
            matches = []
            for m in f.get("matches", []):
                kwargs = {k: v for k, v in m.items() if k in match_fields}
                for key in ("subject_lines", "reference_lines"):
                    kwargs[key] = tuple(kwargs[key])
                kwargs["regions"] = [MatchedRegion(tuple(r["subject_lines"]), tuple(r["reference_lines"]), r["tokens"],
                                                   r.get("subject_text", ""), r.get("reference_text", ""))
                                     for r in m.get("regions", [])]
                kwargs["license_obligations"] = [LicenseObligation.from_dict(o) for o in m.get("license_obligations", [])]
                matches.append(FunctionMatch(**kwargs))
            sources = [SourceFile(**{k: v for k, v in src.items() if k in _SOURCE_FIELDS}) for src in f.get("sources", [])]
            files.append(FileResult(f["path"], f["language"], f["tokens"], f["functions"], f["matched_tokens"],
                                    f.get("license", {}), matches, sources))
        return cls(root=code.get("root", "."), index=code.get("index", ""), references=code.get("references", []),
                   files=files, findings=[Finding.from_dict(d) for d in code.get("findings", [])],
                   parameters=code.get("parameters", {}), subject_licenses=code.get("subject_licenses", {}))


_SOURCE_FIELDS = frozenset(SourceFile.__dataclass_fields__)


class CodeCorpus:
    """All loaded references with one fingerprint lookup; reference files are numbered across entries.

    Load it once with `load_corpus` to scan many files; `excluding(patterns)` gives a view without some
    reference files (leave-one-out evaluation, or a bidder's own published code).
    """

    def __init__(self, index: CodeIndex, entries: list[LoadedReference], background: np.ndarray) -> None:
        self.index = index
        self.entries = entries
        self.background = background
        hashes, owners, units = [], [], []
        for i, entry in enumerate(entries):
            hashes.append(entry.fp_hash)
            owners.append(np.full(entry.fp_hash.shape[0], i, dtype=np.int32))
            units.append(entry.fp_unit.astype(np.int64))
        fp_hash = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
        fp_owner = np.concatenate(owners) if owners else np.empty(0, np.int32)
        fp_unit = np.concatenate(units) if units else np.empty(0, np.int64)
        # one sort of all entries' fingerprints; background hashes are dropped on the subject side, which
        # is far smaller
        order = np.argsort(fp_hash, kind="stable")
        self.fp_hash = fp_hash[order]
        self.fp_owner = fp_owner[order]
        self.fp_unit = fp_unit[order]
        self.file_base = np.cumsum([0] + [len(e.manifest["files"]) for e in entries]).astype(np.int64)
        unit_gfile = [e.unit_file.astype(np.int64) + base for e, base in zip(entries, self.file_base)]
        self.fp_gfile = np.empty(self.fp_hash.shape[0], dtype=np.int64)
        for i in range(len(entries)):
            mask = self.fp_owner == i
            self.fp_gfile[mask] = unit_gfile[i][self.fp_unit[mask]]
        self.gfile_owner = np.repeat(np.arange(len(entries)), np.diff(self.file_base))
        self.file_year = np.array([first_year(f.get("license", {}).get("copyrights", [])) or UNDATED
                                   for e in entries for f in e.manifest["files"]], dtype=np.int64)
        self.excluded = np.zeros(int(self.file_base[-1]), dtype=bool)
        self._parent_files: dict[int, set[int]] = {}
        self._paths: dict[int, dict[str, int]] = {}
        self.rank = _reference_rank([e.reference for e in entries])
        preferred = sorted(range(len(entries)), key=lambda i: self.rank[i])
        self.owner_order = np.array([preferred.index(i) for i in range(len(entries))], dtype=np.int64)

    def excluding(self, patterns: Iterable[str]) -> "CodeCorpus":
        """A view without the reference files whose `path` or `name@version:path` matches a glob pattern."""
        view = copy.copy(self)
        view.excluded = self.excluded.copy()
        patterns = list(patterns)
        if patterns:
            for i, entry in enumerate(self.entries):
                for f, record in enumerate(entry.manifest["files"]):
                    labels = (record["path"], f"{entry.reference.key}:{record['path']}")
                    if any(fnmatch.fnmatchcase(label, p) for label in labels for p in patterns):
                        view.excluded[self.file_base[i] + f] = True
        return view

    def gfile(self, ref: tuple[int, int]) -> int:
        """The corpus-wide number of a reference unit's file."""
        return int(self.file_base[ref[0]] + self.entries[ref[0]].unit_file[ref[1]])

    def file_label(self, gfile: int) -> tuple[str, str, dict[str, str]]:
        """(name@version, path, tags) of a corpus-wide file number."""
        owner = int(self.gfile_owner[gfile])
        entry = self.entries[owner]
        local = gfile - int(self.file_base[owner])
        return entry.reference.key, entry.manifest["files"][local]["path"], entry.file_tags(local)

    def parent_files(self, gfile: int) -> set[int]:
        """Corpus-wide numbers of the files a file declares copies from (same entry)."""
        if gfile not in self._parent_files:
            owner = int(self.gfile_owner[gfile])
            entry = self.entries[owner]
            if owner not in self._paths:
                self._paths[owner] = {f["path"]: i for i, f in enumerate(entry.manifest["files"])}
            record = entry.manifest["files"][gfile - int(self.file_base[owner])]
            found = (self._paths[owner].get(p) for p in record.get("parent_files", []))
            self._parent_files[gfile] = {int(self.file_base[owner]) + i for i in found if i is not None}
        return self._parent_files[gfile]

    def ids(self, ref: tuple[int, int]) -> np.ndarray:
        return self.entries[ref[0]].unit_ids(ref[1])

    def digest(self, ref: tuple[int, int]) -> int:
        """Equal for reference units whose abstracted streams are identical (copies tile alike)."""
        return int(self.entries[ref[0]].unit_digests([ref[1]])[0])

    def label(self, ref: tuple[int, int]) -> str:
        """`name@version:path::qualname` of a reference unit, for reports."""
        entry = self.entries[ref[0]]
        file, unit = entry.unit_record(ref[1])
        return f"{entry.reference.key}:{unit_key(file['path'], unit.qualname)}"

    def parent_of(self, ref: tuple[int, int]) -> tuple[int, int] | None:
        """The declared parent unit of `ref` inside the same reference, if it is indexed (and not excluded).

        Without an explicit declaration, a unit of the same name in a file this file declares copies
        from counts as its parent (helpers pulled in along with declared copies).
        """
        entry = self.entries[ref[0]]
        file, unit = entry.unit_record(ref[1])
        candidates = [unit.parent] if unit.parent else [unit_key(path, unit.qualname) for path in file.get("parent_files", [])]
        for key in candidates:
            found = entry.unit_index(key)
            if found is not None and found != ref[1] and not self.excluded[self.gfile((ref[0], found))]:
                return (ref[0], found)
        return None


def first_year(copyrights: Iterable[str]) -> int | None:
    """The earliest year named in a file's copyright lines (None without one): when it was first written."""
    years = [int(y) for line in copyrights for y in _YEAR.findall(line)]
    return min(years) if years else None


def _reference_rank(references: list) -> dict[int, tuple]:
    """Attribution preference: declared parent references first, then earlier versions, then name."""
    parents = {r.parent for r in references if r.parent}

    def version_key(version: str) -> tuple:
        return tuple((0, int(p)) if p.isdigit() else (1, p) for p in version.replace("-", ".").split("."))

    return {
        i: (0 if (r.name in parents or r.key in parents) else 1, r.name, version_key(r.version))
        for i, r in enumerate(references)
    }


def _subject_files(path: Path) -> tuple[Path, list[str]]:
    if not path.exists():
        raise ProvenanceError(path, "no such file or folder")
    if path.is_file():
        if not language_of(path):
            raise ProvenanceError(path, "not a Python, C++ or CUDA source file")
        return path.parent, [path.name]
    files = source_files(path)
    if not files:
        raise ProvenanceError(path, "no Python, C++ or CUDA source files to scan")
    return path, files


def load_corpus(index_dir: str | os.PathLike[str] | None = None, base_code: Iterable[str | os.PathLike[str]] = (),
                params: FingerprintParams = DEFAULT_PARAMS) -> CodeCorpus:
    """Load every reference of the code index (default: the shipped one) plus background and base code."""
    index = CodeIndex(index_dir)
    loaded = [load_reference(index, entry) for entry in index.entry_dirs()]
    references = [e for e in loaded if e.reference.role == "reference"]
    if not references:
        raise ReferenceIndexError(index.directory, "the code index holds no references; add one with `modelprov code index add`")
    background = [e.kgrams for e in loaded if e.reference.role == "background" and e.kgrams is not None]
    for base in base_code:
        root, files = _subject_files(Path(base))
        for rel in files:
            tokens = tokenize_file(root / rel)
            background += [kgram_hashes(tokens.ids[idx], params.k) for idx in tokens.unit_tokens()]
    merged = np.unique(np.concatenate(background)) if background else np.empty(0, np.uint64)
    return CodeCorpus(index, references, merged)


def _boilerplate_mask(ids: np.ndarray, background: np.ndarray, k: int) -> np.ndarray:
    """Tokens covered by some k-gram that also occurs in the background or base code."""
    grams = kgram_hashes(ids, k)
    mask = np.zeros(ids.shape[0], dtype=bool)
    if grams.shape[0] == 0 or background.shape[0] == 0:
        return mask
    hit = np.isin(grams, background)
    cover = np.zeros(ids.shape[0] + 1, dtype=np.int32)
    np.add.at(cover, np.flatnonzero(hit), 1)
    np.add.at(cover, np.flatnonzero(hit) + k, -1)
    return np.cumsum(cover[:-1]) > 0


def _verdict(similarity: float, subject_coverage: float) -> str:
    if similarity >= COPIED_SIMILARITY and subject_coverage >= COPIED_SIMILARITY:
        return "copied"
    if similarity >= DERIVED_SIMILARITY or subject_coverage >= DERIVED_SIMILARITY:
        return "derived"
    return "independent"


@dataclass
class _Stream:
    """One unit's tokens: line and abstracted id of token i, and its verbatim text when the source is at hand."""

    lines: np.ndarray
    ids: np.ndarray
    source: bytes | None = None
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None

    def text(self, i: int) -> str:
        return self.source[int(self.starts[i]) : int(self.ends[i])].decode("utf-8", "replace")

    @classmethod
    def of_subject(cls, tokens: TokenizedFile, index: np.ndarray) -> "_Stream":
        return cls(tokens.lines[index], tokens.ids[index], tokens.source, tokens.starts[index], tokens.ends[index])

    @classmethod
    def of_reference(cls, entry: LoadedReference, unit: int) -> "_Stream":
        """Lines from the index; verbatim spans from the reference's regenerated source, if available."""
        span = entry.unit_span(unit)
        stream = cls(entry.token_lines[span], entry.unit_ids(unit))
        file = int(entry.unit_file[unit])
        verbatim = entry.verbatim(file)
        if verbatim is not None:
            index = verbatim.unit_tokens[unit - int(entry.file_units[file])]
            tokens = verbatim.tokens
            stream = cls(tokens.lines[index], tokens.ids[index], tokens.source, tokens.starts[index], tokens.ends[index])
        return stream


def _rename_map(subject: _Stream, ref: _Stream, tiles: list[Tile], id_hash: np.uint64) -> tuple[dict[str, str], float | None, float | None]:
    """Identifier pairs along the tiles: the rename map, its one-to-one consistency and lexical identity
    (nothing when the reference's verbatim text is not at hand)."""
    if ref.source is None:
        return {}, None, None
    pairs: Counter[tuple[str, str]] = Counter()
    identical = total = 0
    for tile in tiles:
        for offset in range(tile.length):
            si, ri = tile.a_start + offset, tile.b_start + offset
            s_text, r_text = subject.text(si), ref.text(ri)
            total += 1
            identical += s_text == r_text
            if subject.ids[si] == id_hash:
                pairs[(r_text, s_text)] += 1
    forward: dict[str, Counter[str]] = {}
    for (r_text, s_text), n in pairs.items():
        forward.setdefault(r_text, Counter())[s_text] += n
    mapping = {r: c.most_common(1)[0][0] for r, c in forward.items()}
    used: Counter[str] = Counter(mapping.values())
    agreeing = sum(n for (r, s), n in pairs.items() if mapping[r] == s and used[s] == 1)
    consistency = agreeing / sum(pairs.values()) if pairs else 1.0
    renamed = {r: s for r, s in sorted(mapping.items()) if r != s}
    return renamed, consistency, (identical / total if total else 1.0)


def _regions(subject: _Stream, ref: _Stream, tiles: list[Tile]) -> list[MatchedRegion]:
    """Tiles as line ranges on both sides (touching tiles merged) with the verbatim lines."""
    spans: list[list[int]] = []
    for tile in sorted(tiles, key=lambda t: t.a_start):
        s0, s1 = int(subject.lines[tile.a_start]), int(subject.lines[tile.a_start + tile.length - 1])
        r0, r1 = int(ref.lines[tile.b_start]), int(ref.lines[tile.b_start + tile.length - 1])
        if spans and s0 <= spans[-1][1] + 1 and spans[-1][2] <= r0 <= spans[-1][3] + 1:
            last = spans[-1]
            last[1], last[3], last[4] = max(last[1], s1), max(last[3], r1), last[4] + tile.length
        else:
            spans.append([s0, s1, r0, r1, tile.length])
    s_lines = subject.source.decode("utf-8", "replace").splitlines()
    r_lines = ref.source.decode("utf-8", "replace").splitlines() if ref.source is not None else []
    return [
        MatchedRegion((s0, s1), (r0, r1), n, "\n".join(s_lines[s0 - 1 : s1]), "\n".join(r_lines[r0 - 1 : r1]))
        for s0, s1, r0, r1, n in spans
    ]


def _lookup(corpus: CodeCorpus, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject fingerprint row, corpus fingerprint index) of every shared fingerprint outside excluded files."""
    lo = np.searchsorted(corpus.fp_hash, hashes, "left")
    counts = np.searchsorted(corpus.fp_hash, hashes, "right") - lo
    total = int(counts.sum())
    rows = np.repeat(np.arange(hashes.shape[0]), counts)
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    hits = np.repeat(lo, counts) + within
    keep = ~corpus.excluded[corpus.fp_gfile[hits]]
    return rows[keep], hits[keep]


def _idf(holders: int, files: int) -> float:
    """Rarity weight of code that `holders` of the `files` reference files hold: log((files + 1) / holders)."""
    return math.log((files + 1) / holders)


def _nearest_sources(corpus: CodeCorpus, units: list[tuple[list[tuple[tuple[int, int], float]], int]], *,
                     weight: Callable[[int, int], float] = _idf, holds: float = HOLDS_COPY, tie: float = TIE_TOLERANCE,
                     relay: bool = True, dated: bool = True, close: bool = True,
                     ) -> tuple[list[tuple[int, float, int, float]], dict[int, float]]:
    """The reference files that together explain most of a subject file, by greedy cover of its functions.

    `units`: per matched subject function, its candidate reference units with their closeness as a share of
    the closest one's, and its evidence tokens. Each function brings its evidence tokens to every reference
    file holding a copy of it (within 5% of the closest), weighted by how rare that copy is: log((N + 1) / n)
    for n of the N reference files (inverse document frequency), so code in hundreds of files
    (`rotate_half`) counts for little and code in one file counts most, as Dolos and JPlag treat base code.
    The file explaining most is taken, then the one explaining most of the rest. Between files within 2% of
    the best, those holding the closest copies (within 2% of the closest) of the most evidence are kept, the
    earliest written of them (first copyright year) is taken, then the original it declares it copied, if
    among them. A file whose declared sources (`# Copied from`, modular) hold a closest copy of every
    function it holds a closest copy of adds nothing of its own, so the best of those sources is taken. So the
    original is named over its declared or later copies, and a verbatim copy of any reference file is still
    attributed to that file. Returns [(file, weighted evidence, functions, share of the evidence it newly
    covers)] best first, and every file's weighted evidence. The keywords are the shipped rules;
    benchmarks/code_lineage_variants.py measures others.
    """
    copies = [({corpus.gfile(ref) for ref, near in refs if near >= holds}, tokens) for refs, tokens in units]
    closest = [{corpus.gfile(ref) for ref, near in refs if near >= TIE_TOLERANCE} if close else files
               for (refs, _), (files, _) in zip(units, copies)]
    files_in_view = int((~corpus.excluded).sum())
    weights = [tokens * weight(len(files), files_in_view) if files else 0.0 for files, tokens in copies]
    evidence: dict[int, float] = {}
    for (files, _), weighted in zip(copies, weights):
        for f in files:
            evidence[f] = evidence.get(f, 0.0) + weighted
    total = float(sum(tokens for _, tokens in copies)) or 1.0

    live = [True] * len(copies)
    ranking: list[tuple[int, float, int, float]] = []
    for _ in range(MAX_SOURCES):
        credit: dict[int, set[int]] = {}  # file -> live subject functions it holds
        for i, (files, _) in enumerate(copies):
            if live[i]:
                for f in files:
                    credit.setdefault(f, set()).add(i)
        score = {f: sum(weights[i] for i in held) for f, held in credit.items()}
        if not score:
            break
        gain = max(score.values())
        if gain <= 0 or (ranking and gain < MIN_SOURCE_GAIN * ranking[0][1]):
            break
        tied = {f for f, v in score.items() if v >= gain * tie}
        nearest = {f: sum(weights[i] for i in credit[f] if f in closest[i]) for f in tied}
        tied = {f for f in tied if nearest[f] >= max(nearest.values()) * tie}
        year = (lambda f: int(corpus.file_year[f])) if dated else (lambda f: 0)
        best = min(tied, key=lambda f: (year(f), -score[f], -evidence[f], corpus.owner_order[corpus.gfile_owner[f]], f))
        seen = {best}
        while parents := (corpus.parent_files(best) & tied) - seen:  # the original over its declared copy
            best = min(parents, key=lambda f: (-score[f], f))
            seen.add(best)
        while relay and (sources := [p for p in sorted(corpus.parent_files(best)) if p in credit and p not in seen]):
            if any(best in closest[i] and not closest[i].intersection(sources) for i in credit[best]):
                break  # it holds a closest copy its sources lack: code of its own, the nearer source
            best = max(sources, key=lambda f: (score[f], -f))  # a relay of its declared sources
            seen.add(best)
        newly = sorted(credit[best])
        ranking.append((best, score[best], len(newly), sum(copies[i][1] for i in newly) / total))
        for i in newly:
            live[i] = False
    return ranking, evidence


def _candidates(corpus: CodeCorpus, units: np.ndarray, rows: np.ndarray, hits: np.ndarray, hashes: np.ndarray) -> dict[int, list[tuple[int, tuple[int, int], int]]]:
    """Per subject unit: (distinct shared fingerprints, reference unit, stream digest), most shared first.

    Only the MAX_CANDIDATES most-sharing distinct streams are kept, with every reference unit that has
    one of those streams (identical copies, needed for attribution).
    """
    if rows.shape[0] == 0:
        return {}
    pair = (units[rows].astype(np.int64) << 44) | (corpus.fp_owner[hits].astype(np.int64) << 32) | corpus.fp_unit[hits]
    hashed = hashes[rows]
    order = np.lexsort((hashed, pair))
    pair, hashed = pair[order], hashed[order]
    first = np.ones(pair.shape[0], dtype=bool)
    first[1:] = (pair[1:] != pair[:-1]) | (hashed[1:] != hashed[:-1])
    keys, shared = np.unique(pair[first], return_counts=True)
    s_unit, owner, r_unit = keys >> 44, (keys >> 32) & 0xFFF, keys & 0xFFFFFFFF
    digest = np.empty(keys.shape[0], dtype=np.uint64)
    for o in np.unique(owner).tolist():
        mask = owner == o
        digest[mask] = corpus.entries[o].unit_digests(r_unit[mask])
    # most shared first, then preferred reference, then unit order
    order = np.lexsort((r_unit, corpus.owner_order[owner], -shared, s_unit))
    s_unit, owner, r_unit, shared, digest = s_unit[order], owner[order], r_unit[order], shared[order], digest[order]
    # rank of each row's stream among the distinct streams of its subject unit, by first appearance
    position = np.arange(keys.shape[0])
    by_stream = np.lexsort((position, digest, s_unit))
    new_stream = np.ones(by_stream.shape[0], dtype=bool)
    new_stream[1:] = (s_unit[by_stream][1:] != s_unit[by_stream][:-1]) | (digest[by_stream][1:] != digest[by_stream][:-1])
    first_of_stream = np.empty_like(position)
    first_of_stream[by_stream] = position[by_stream][np.maximum.accumulate(np.where(new_stream, np.arange(by_stream.shape[0]), 0))]
    is_first = first_of_stream == position
    group_start = np.ones(keys.shape[0], dtype=bool)
    group_start[1:] = s_unit[1:] != s_unit[:-1]
    cumulative = np.cumsum(is_first)
    before_group = np.maximum.accumulate(np.where(group_start, cumulative - is_first, 0))
    stream_rank = (cumulative - before_group - 1)[first_of_stream]
    keep = stream_rank < MAX_CANDIDATES
    out: dict[int, list[tuple[int, tuple[int, int], int]]] = {}
    for su, o, ru, n, d in zip(
        s_unit[keep].tolist(), owner[keep].tolist(), r_unit[keep].tolist(), shared[keep].tolist(), digest[keep].tolist()
    ):
        out.setdefault(su, []).append((n, (o, ru), d))
    return out


def _tile(corpus: CodeCorpus, a: np.ndarray, ref: tuple[int, int], params: FingerprintParams) -> tuple[int, list[Tile], float]:
    """(matched tokens, tiles, closeness) of a subject unit against one reference unit.

    Closeness is the Dice share 2·matched / (subject + reference tokens): the nearest copy is the one most
    alike on both sides, not a longer function that happens to contain more of the subject.
    """
    b = corpus.ids(ref)
    tiles = greedy_string_tiling(a, b, params.min_match)
    matched = sum(t.length for t in tiles)
    return matched, tiles, 2 * matched / (a.shape[0] + b.shape[0])


def _match_unit(corpus: CodeCorpus, a: np.ndarray, candidates: list[tuple[int, tuple[int, int], int]], params: FingerprintParams):
    """Tile the subject unit once per distinct candidate stream; identical copies share the result."""
    results: dict[int, tuple[int, list[Tile], float]] = {}
    members: dict[int, list[tuple[int, int]]] = {}
    shared_of: dict[tuple[int, int], int] = {}
    for shared, ref, digest in candidates:
        shared_of[ref] = shared
        if digest not in results:
            results[digest] = _tile(corpus, a, ref, params)
        members.setdefault(digest, []).append(ref)
    return results, members, shared_of


def _best_stream(results, members) -> int | None:
    """The candidate stream closest to the subject unit (most matched tokens on ties), or None if nothing matched."""
    scored = [(results[d][2], results[d][0], d) for d, refs in members.items() if refs]
    best = max(scored, default=None)
    return best[2] if best is not None and best[1] > 0 else None


def _tied(results, members, best_digest: int) -> list[tuple[int, int]]:
    """Reference units within 2% of the closest: copies of one another as far as this subject
    unit tells."""
    best = results[best_digest][2]
    return [ref for digest, refs in members.items() if results[digest][2] >= TIE_TOLERANCE * best for ref in refs]


def _closeness(results, members, best_digest: int) -> list[tuple[tuple[int, int], float]]:
    """Every candidate reference unit of a subject unit with its closeness as a share of the closest one's."""
    best = results[best_digest][2]
    return [(ref, results[digest][2] / best) for digest, refs in members.items() for ref in refs]


def _attribute(corpus: CodeCorpus, a: np.ndarray, best_digest: int, results, members, params,
               file_rank: dict[int, int], evidence: dict[int, float]) -> tuple[tuple[int, int], tuple[int, int], list[str], list[str]]:
    """(nearest source, canonical origin, declared chain, other copies) of a subject unit's best match.

    Matches within 2% of the closest are copies of one another. The nearest source is the copy in the
    best-ranked source file of the subject (then the file with most rarity-weighted evidence); the
    canonical origin is the root of the declared-parent chains, the one most copies lead to.
    """
    best = results[best_digest][2]
    tied = sorted(_tied(results, members, best_digest), key=lambda ref: (corpus.rank[ref[0]], ref[1]))

    def qualifies(ref: tuple[int, int]) -> bool:
        digest = corpus.digest(ref)
        if digest not in results:
            results[digest] = _tile(corpus, a, ref, params)
            members.setdefault(digest, [])
        return results[digest][2] >= TIE_TOLERANCE * best

    def closeness(ref: tuple[int, int]) -> tuple:
        g = corpus.gfile(ref)
        return (file_rank.get(g, len(file_rank)), -evidence.get(g, 0.0), -results[corpus.digest(ref)][2], corpus.rank[ref[0]], ref[1])

    nearest = min(tied, key=closeness)
    roots: dict[tuple[int, int], list[tuple[int, int]]] = {}
    chains: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for ref in tied:
        chain = [ref]
        while len(chain) < MAX_PARENT_DEPTH:
            parent = corpus.parent_of(chain[-1])
            if parent is None or parent in chain or not qualifies(parent):
                break
            chain.append(parent)
        roots.setdefault(chain[-1], []).append(ref)
        chains[ref] = chain
    origin = min(roots, key=lambda r: (-len(roots[r]), corpus.rank[r[0]], r[1]))
    chain = chains[nearest] if chains[nearest][-1] == origin else chains[roots[origin][0]]
    copies = sorted({corpus.label(r) for r in tied if r not in (origin, nearest)})
    return nearest, origin, [corpus.label(r) for r in chain], copies


def scan_code(
    path: str | os.PathLike[str],
    index_dir: str | os.PathLike[str] | None = None,
    *,
    base_code: Iterable[str | os.PathLike[str]] = (),
    params: FingerprintParams = DEFAULT_PARAMS,
    exclude: Iterable[str] = (),
    corpus: CodeCorpus | None = None,
) -> CodeScanResult:
    """Scan a source file or folder against the code index; findings are per matched function.

    `exclude`: glob patterns of reference files (`path` or `name@version:path`) to leave out;
    `corpus`: an already loaded `load_corpus(...)` (then `index_dir` and `base_code` are not read).
    """
    id_hash = np.uint64(token_id(ID))
    root, rel_files = _subject_files(Path(path))
    corpus = corpus if corpus is not None else load_corpus(index_dir, base_code, params)
    exclude = list(exclude)
    if exclude:
        corpus = corpus.excluding(exclude)
    scan_root = Path(path)
    files: list[FileResult] = []
    findings: list[Finding] = []
    tree_cache: dict[Path, TreeLicenses] = {}
    for rel in rel_files:
        subject = tokenize_file(root / rel)
        text = subject.source.decode("utf-8", "replace")
        file_license = detect_file_license(text)
        folder = (root / rel).parent
        if folder not in tree_cache:
            tree_cache[folder] = read_license_files(license_files_around(root / rel, scan_root))
        subject_tree = tree_cache[folder]
        unit_index = subject.unit_tokens()
        hashes, fp_units, _ = file_fingerprints(subject.ids, subject.unit_of, params)
        boiler = _boilerplate_mask(subject.ids, corpus.background, params.k) if corpus.background.shape[0] else None
        keep = ~np.isin(hashes, corpus.background) if corpus.background.shape[0] else np.ones(hashes.shape[0], bool)
        hashes, fp_units = hashes[keep], fp_units[keep]
        rows, hits = _lookup(corpus, hashes)
        candidates = _candidates(corpus, fp_units, rows, hits, hashes)
        covered = np.zeros(len(subject), dtype=bool)
        result = FileResult(rel, subject.language, len(subject), sum(u.kind == "function" for u in subject.units), 0, file_license.to_dict())

        def evidence_of(s_index: np.ndarray, tiles: list[Tile]) -> tuple[np.ndarray, int]:
            in_tiles = np.concatenate([s_index[t.a_start : t.a_start + t.length] for t in tiles])
            return in_tiles, int((~boiler[in_tiles]).sum()) if boiler is not None else int(in_tiles.shape[0])

        matched_units = []  # functions matched well enough to be findings, before attribution
        for s_unit, cands in sorted(candidates.items()):
            s_index = unit_index[s_unit]
            a = subject.ids[s_index]
            results, members, shared_of = _match_unit(corpus, a, cands, params)
            best_digest = _best_stream(results, members)
            if best_digest is None:
                continue
            matched, tiles, _ = results[best_digest]
            best_len = corpus.ids(members[best_digest][0]).shape[0]
            _, best_evidence = evidence_of(s_index, tiles)
            if _verdict(matched / best_len, matched / a.shape[0]) == "independent" or best_evidence < MIN_EVIDENCE_TOKENS:
                continue
            matched_units.append((s_unit, s_index, a, results, members, shared_of, best_digest, best_evidence))
        ranking, evidence = _nearest_sources(corpus, [(_closeness(m[3], m[4], m[6]), m[7]) for m in matched_units])
        file_rank = {g: i for i, (g, *_rest) in enumerate(ranking)}
        for g, gain, functions, share in ranking:
            key, ref_path, tags = corpus.file_label(g)
            result.sources.append(SourceFile(key, ref_path, round(gain, 3), functions, round(share, 4), tags))
        for s_unit, s_index, a, results, members, shared_of, best_digest, _ in matched_units:
            nearest, origin, chain, copies = _attribute(corpus, a, best_digest, results, members, params, file_rank, evidence)
            matched, tiles, _ = results[corpus.digest(nearest)]
            ref_ids = corpus.ids(nearest)
            in_tiles, evidence_tokens = evidence_of(s_index, tiles)
            similarity = matched / ref_ids.shape[0]
            coverage = matched / a.shape[0]
            verdict = _verdict(similarity, coverage)
            if verdict == "independent" or evidence_tokens < MIN_EVIDENCE_TOKENS:
                continue
            covered[in_tiles] = True
            entry = corpus.entries[nearest[0]]
            ref_file, ref_unit = entry.unit_record(nearest[1])
            file_tags = entry.file_tags(int(entry.unit_file[nearest[1]]))
            origin_entry = corpus.entries[origin[0]]
            s_stream = _Stream.of_subject(subject, s_index)
            r_stream = _Stream.of_reference(entry, nearest[1])
            renamed, consistency, identity = _rename_map(s_stream, r_stream, tiles, id_hash)
            unit = subject.units[s_unit]
            match = FunctionMatch(
                subject_path=rel,
                subject_qualname=unit.qualname,
                subject_lines=(unit.start_line, unit.end_line),
                subject_tokens=int(a.shape[0]),
                reference=entry.reference.key,
                reference_path=ref_file["path"],
                reference_qualname=ref_unit.qualname,
                reference_lines=(ref_unit.start_line, ref_unit.end_line),
                reference_tokens=int(ref_ids.shape[0]),
                matched_tokens=int(matched),
                evidence_tokens=evidence_tokens,
                similarity=round(similarity, 4),
                subject_coverage=round(coverage, 4),
                lexical_identity=None if identity is None else round(identity, 4),
                verdict=verdict,
                reference_tags=file_tags,
                origin=corpus.label(origin),
                origin_tags=origin_entry.file_tags(int(origin_entry.unit_file[origin[1]])),
                rename_map=renamed,
                rename_consistency=None if consistency is None else round(consistency, 4),
                shared_fingerprints=max(shared_of.get(r, 0) for r in [nearest] + members[best_digest]),
                also_matches=copies or [],
                declared_chain=chain,
                regions=_regions(s_stream, r_stream, tiles),
            )
            modified = True if similarity < 1.0 or coverage < 1.0 else None if identity is None else identity < 1.0
            match.license_obligations = license_obligations(
                file_tags.get("license"),
                LicenseInfo.from_dict(ref_file["license"]),
                TreeLicenses.from_dict(entry.manifest.get("licenses", {})),
                file_license,
                subject_tree,
                modified=modified,
            )
            result.matches.append(match)
            findings.append(_finding(match, entry))
        result.matched_tokens = int(covered.sum())
        files.append(result)
    return CodeScanResult(
        root=str(scan_root),
        index=str(corpus.index.directory),
        references=[e.reference.to_dict() for e in corpus.entries],
        files=files,
        findings=findings,
        parameters=params.to_dict()
        | {
            "copied_similarity": COPIED_SIMILARITY,
            "derived_similarity": DERIVED_SIMILARITY,
            "min_evidence_tokens": MIN_EVIDENCE_TOKENS,
            "background_kgrams": int(corpus.background.shape[0]),
            "source_weighting": "evidence tokens x log((N + 1) / n): n of the N reference files hold a copy within 5%",
            "max_sources": MAX_SOURCES,
            "min_source_gain": MIN_SOURCE_GAIN,
            "excluded_reference_files": int(corpus.excluded.sum()),
        },
        subject_licenses={str(k): v.to_dict() for k, v in sorted(tree_cache.items())},
    )


def describe_tags(tags: dict[str, str] | None) -> str:
    """` (GLM-4.5, Zhipu AI (Z.ai), CN, Apache-2.0)` from a file's tags; empty when it has none."""
    parts = [tags[k] for k in ("family", "org", "country", "license") if tags and tags.get(k)]
    return f" ({', '.join(parts)})" if parts else ""


def _finding(match: FunctionMatch, entry: LoadedReference) -> Finding:
    ref = entry.reference
    tags = match.reference_tags
    transformations = []
    if match.rename_map:
        transformations.append(f"{len(match.rename_map)} identifiers renamed consistently ({match.rename_consistency:.0%})")
    if match.subject_coverage < 1.0:
        transformations.append(f"{match.subject_tokens - match.matched_tokens} tokens added or changed")
    if match.similarity < 1.0:
        transformations.append(f"{match.reference_tokens - match.matched_tokens} reference tokens left out")
    unmet = [o.obligation.split(":")[0] for o in match.license_obligations if o.met is False]
    origin_name, _, origin_unit = match.origin.partition(":")
    origin = ("" if match.origin == match.nearest else
              f"; canonical origin {origin_name.split('@')[0]} {origin_unit}{describe_tags(match.origin_tags)}")
    summary = (
        f"{match.subject} is {match.verdict} from nearest source {ref.name} {match.reference_path}::"
        f"{match.reference_qualname}{describe_tags(tags)} ({match.similarity:.0%} of the reference function, "
        f"{match.matched_tokens} tokens{', identifiers renamed' if match.rename_map else ''}){origin}"
        + (f"; unmet: {', '.join(unmet)}" if unmet else "")
    )
    return Finding(
        kind="code",
        verdict=match.verdict,
        reference=Reference(
            name=ref.name,
            family=tags.get("family"),
            org=tags.get("org"),
            country=tags.get("country"),
            license=tags.get("license"),
            repo_id=ref.repo_id or ref.source,
            revision=ref.version,
        ),
        subject=match.subject,
        summary=summary,
        statistics={
            "similarity": match.similarity,
            "subject_coverage": match.subject_coverage,
            "matched_tokens": match.matched_tokens,
            "evidence_tokens": match.evidence_tokens,
            "subject_tokens": match.subject_tokens,
            "reference_tokens": match.reference_tokens,
            "lexical_identity": match.lexical_identity,
            "renamed_identifiers": len(match.rename_map),
            "rename_consistency": match.rename_consistency,
            "shared_fingerprints": match.shared_fingerprints,
            "reference_unit": match.nearest,
            "nearest_source": match.nearest,
            "canonical_origin": match.origin,
            "origin_family": match.origin_tags.get("family"),
            "origin_org": match.origin_tags.get("org"),
            "origin_license": match.origin_tags.get("license"),
            "reference_lines": list(match.reference_lines),
            "subject_lines": list(match.subject_lines),
            "copies_in_index": len(match.also_matches),
            "declared_chain": match.declared_chain,
        },
        license_obligations=match.license_obligations,
        transformations=transformations,
    )
