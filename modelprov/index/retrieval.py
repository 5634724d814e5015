"""Stage 1 of a scan against many references: retrieve a shortlist of candidate references per suspect component
from compact signatures in an embedded ANN index (usearch), so that only the shortlist is verified by the matchers.

Two signatures per reference, both projected by a signed count sketch into `SIGNATURE_DIM` dimensions
(`VOCAB_SIGNATURE_DIM` for token embeddings and output heads); inner products are kept in expectation, so the
cosine of two signatures estimates the centred similarity they stand for, with noise ≈ 1/√dimension:

* **sketch**: each learned, non-norm tensor's centred sketch, one ANN index per reference 2-D shape. The suspect is
  read at every placement the shape admits (the rows the matchers read anyway). Finds copies, quantised copies,
  fine-tunes, renamed, fused or transposed layouts, composites.
* **gram**: the cosine Gram matrix of `GRAM_TOKENS` token-embedding anchor rows, keyed by token string. It is
  unchanged by any orthogonal map of the residual stream (permutation, sign flips, rotation) and by anything done
  to the layers (neurons permuted, widths pruned, experts upcycled), so it finds what fixed-position sketches miss.

Layout in the index folder (covered by the index digest):

    retrieval/manifest.json            format, dimension, reference names (row i = reference id i), classes
    retrieval/<class>.vectors.npy      float16 (n, dimension) signatures
    retrieval/<class>.keys.npy         int32 (n, 2): reference id, role code (gram: 0)
    retrieval/<class>.usearch          the HNSW graph over the vectors (cosine), opened memory-mapped
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from modelprov._atomic import atomic_write
from modelprov.errors import ReferenceIndexError
from modelprov.reader import SuspectReader
from modelprov.weights.fingerprint import WEAK_ROLES, ModelFingerprint, SketchSpec, TensorFingerprint
from modelprov.weights.naming import VOCAB_ROLES, roles_compatible
from modelprov.weights.nonlearned import reference_nonlearned
from modelprov.weights.placement import placements_for, prefix_sketch_rows, sketch_at
from modelprov.weights.similarity import normalise_rows

RETRIEVAL_DIR = "retrieval"
RETRIEVAL_FORMAT = 1
SIGNATURE_DIM = 256
VOCAB_SIGNATURE_DIM = 4096  # token embeddings and output heads: a distilled model's embedding shows r ≈ 0.13
GRAM_TOKENS = 96  # anchor rows per Gram signature: 4,560 pairs
SHORTLIST_PER_COMPONENT = 8  # references kept per suspect component and signature
NEIGHBOURS = 64  # ANN neighbours asked per query
RETRIEVAL_Z = 6.0  # a candidate's best signature cosine must exceed this many null sd (1/√dimension)
_MIN_GRAM_TOKENS = 32
_MANIFEST = "manifest.json"
_REPRESENTATIVE_FIELDS = ("name", "role", "shape", "dtype", "heads", "sketch_shape", "layout")  # what placements read


# --- Signatures --------------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def _count_sketch_hashes(n: int, key: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket and sign of each of `n` entries, seeded by `key`, `n` and `dim` only (the same on both sides)."""
    seed = int.from_bytes(hashlib.blake2b(f"count-sketch:{key}:{n}:{dim}".encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    bucket = rng.integers(0, dim, size=n).astype(np.intp)
    sign = rng.integers(0, 2, size=n).astype(np.float32) * 2 - 1
    bucket.setflags(write=False)
    sign.setflags(write=False)
    return bucket, sign


def project(vector: np.ndarray, key: str, dim: int = SIGNATURE_DIM) -> np.ndarray:
    """Signed count sketch of a centred unit vector into `dim` dimensions, renormalised (zero stays zero): the
    cosine of two projections estimates the vectors' cosine with noise ≈ 1/√dim."""
    v = np.asarray(vector, dtype=np.float32).ravel()
    bucket, sign = _count_sketch_hashes(v.size, key, dim)
    out = np.bincount(bucket, weights=v * sign, minlength=dim).astype(np.float32)
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 else out


def sketch_signature(sketch: np.ndarray, cls: str) -> np.ndarray:
    """The signature of one sketch: its entries centred and scaled to unit length (Pearson r is their dot
    product), projected to the class's dimension."""
    return project(normalise_rows(np.asarray(sketch, dtype=np.float64).reshape(1, -1), centre=True)[0], cls,
                   class_dimension(cls))


def gram_signature(rows: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """The signature of embedding rows of a fixed token list: the upper triangle of their cosine Gram matrix,
    centred and projected. Rows missing in the suspect (`present` False) leave their pairs at zero."""
    r = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(r, axis=1, keepdims=True)
    r = np.divide(r, norms, out=np.zeros_like(r), where=norms > 0)
    iu = np.triu_indices(len(r), k=1)
    upper = (r @ r.T)[iu]
    keep = np.ones(upper.shape, dtype=bool) if present is None else (present[iu[0]] & present[iu[1]])
    vec = np.zeros_like(upper)
    if keep.sum() >= 2:
        vec[keep] = upper[keep] - upper[keep].mean()
    n = float(np.linalg.norm(vec))
    return project(vec / n if n > 0 else vec, f"gram:{len(r)}")


def shape_class(t: TensorFingerprint) -> str:
    """The ANN class of a reference tensor: its 2-D view and sketch shape, and for token embeddings and output
    heads the wider signature they need (their evidence against a distilled model is weak)."""
    (a, b), (sr, sc) = t.shape2d, t.sketch_shape
    return f"sketch-{a}x{b}-{sr}x{sc}" + (f"-d{VOCAB_SIGNATURE_DIM}" if t.role in VOCAB_ROLES else "")


def class_dimension(cls: str) -> int:
    """The signature dimension of an ANN class (from its name)."""
    return VOCAB_SIGNATURE_DIM if cls.endswith(f"-d{VOCAB_SIGNATURE_DIM}") else SIGNATURE_DIM


@dataclass
class GramSet:
    """The token list a Gram signature is computed on: token bytes (matched by string) or row ids."""

    key: str
    tokens: list[bytes] | None
    ids: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": None if self.tokens is None else [t.hex() for t in self.tokens],
                "ids": [int(i) for i in self.ids]}

    @classmethod
    def from_dict(cls, key: str, d: dict[str, Any]) -> "GramSet":
        tokens = d.get("tokens")
        return cls(key, None if tokens is None else [bytes.fromhex(t) for t in tokens],
                   np.asarray(d["ids"], dtype=np.int64))


def _gram_sets(fp: ModelFingerprint) -> list[tuple[GramSet, np.ndarray]]:
    """Each anchor set's GRAM_TOKENS rows spread over the anchors, with the token list they are keyed by."""
    out = []
    for anchors in fp.anchors.values():
        if len(anchors.ids) < _MIN_GRAM_TOKENS:
            continue
        pick = np.unique(np.linspace(0, len(anchors.ids) - 1, min(GRAM_TOKENS, len(anchors.ids))).astype(np.int64))
        tokens = None if anchors.tokens is None else [anchors.tokens[i] for i in pick]
        ids = anchors.ids[pick]
        text = "\n".join(t.hex() for t in tokens) if tokens is not None else ",".join(map(str, ids))
        key = "gram-" + hashlib.sha256(text.encode()).hexdigest()[:16]
        out.append((GramSet(key, tokens, ids), np.asarray(anchors.rows[pick], dtype=np.float32)))
    return out


@dataclass
class ReferenceSignatures:
    """One reference's signatures by class, with the representative tensor of each sketch class."""

    vectors: dict[str, list[np.ndarray]] = field(default_factory=dict)
    roles: dict[str, list[str]] = field(default_factory=dict)
    representatives: dict[str, list[TensorFingerprint]] = field(default_factory=dict)
    gram_sets: dict[str, GramSet] = field(default_factory=dict)


def reference_signatures(fp: ModelFingerprint) -> ReferenceSignatures:
    """Sketch signatures of the learned, non-weak tensors and Gram signatures of the embedding anchors."""
    out = ReferenceSignatures()
    drop = reference_nonlearned(fp)
    for t in fp.tensors:
        if t.name in drop or t.role in WEAK_ROLES or t.name not in fp.sketches:
            continue
        cls = shape_class(t)
        out.vectors.setdefault(cls, []).append(sketch_signature(fp.sketches[t.name], cls))
        out.roles.setdefault(cls, []).append(t.role)
        out.representatives.setdefault(cls, []).append(t)
    for gs, rows in _gram_sets(fp):
        out.vectors.setdefault(gs.key, []).append(gram_signature(rows))
        out.roles.setdefault(gs.key, []).append("")
        out.gram_sets[gs.key] = gs
    return out


# --- The stored retrieval index ------------------------------------------------------------------------------

def _representative_key(t: TensorFingerprint) -> tuple:
    return (t.role, t.heads, len(t.shape), t.shape2d)


class RetrievalIndex:
    """The signatures of every reference of an index folder and their ANN graphs, opened lazily and
    memory-mapped (resident memory does not grow with the number of references)."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest
        self._opened: dict[str, tuple[Any, np.ndarray]] = {}

    @property
    def references(self) -> list[str]:
        return list(self.manifest.get("references", []))

    @property
    def classes(self) -> dict[str, dict[str, Any]]:
        return dict(self.manifest.get("classes", {}))

    def files(self) -> list[str]:
        """Files of this retrieval index, relative to the index folder."""
        out = [f"{RETRIEVAL_DIR}/{_MANIFEST}"]
        for cls in sorted(self.classes):
            out += [f"{RETRIEVAL_DIR}/{cls}.{ext}" for ext in ("vectors.npy", "keys.npy", "usearch")]
        return out

    @classmethod
    def load(cls, index_root: Path) -> "RetrievalIndex | None":
        """The retrieval index of an index folder, or None when it has none (built before format 2)."""
        folder = Path(index_root) / RETRIEVAL_DIR
        path = folder / _MANIFEST
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict) or manifest.get("format") != RETRIEVAL_FORMAT:
                raise ValueError(f"unsupported retrieval format {manifest.get('format')!r}")
        except (OSError, ValueError, AttributeError) as exc:
            raise ReferenceIndexError(path, f"malformed retrieval manifest ({exc})") from None
        return cls(folder, manifest)

    def _open(self, cls: str) -> tuple[Any, np.ndarray]:
        """The ANN graph (memory-mapped view) and keys of one class."""
        if cls not in self._opened:
            from usearch.index import Index  # deferred: only scans against a large index need it

            base = self.folder / cls
            try:
                keys = np.load(f"{base}.keys.npy", mmap_mode="r", allow_pickle=False)
                graph = Index.restore(f"{base}.usearch", view=True)
            except (OSError, ValueError, RuntimeError) as exc:
                raise ReferenceIndexError(Path(f"{base}.usearch"), f"unreadable retrieval index ({exc})") from None
            if graph is None or len(graph) != len(keys):
                raise ReferenceIndexError(Path(f"{base}.usearch"), "retrieval graph and keys disagree")
            self._opened[cls] = (graph, keys)
        return self._opened[cls]

    def search(self, cls: str, queries: np.ndarray, k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
        """For each query: reference-key rows of its nearest signatures and their cosine similarity."""
        graph, keys = self._open(cls)
        k = min(k, len(keys))
        if k == 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), dtype=np.int64), np.zeros((len(queries), 0), dtype=np.float32)
        found = graph.search(np.asarray(queries, dtype=np.float32).reshape(len(queries), -1), k)
        rows = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), -1)
        sims = 1.0 - np.asarray(found.distances, dtype=np.float32).reshape(len(queries), -1)
        return rows, sims

    def keys(self, cls: str) -> np.ndarray:
        return self._open(cls)[1]


def build_retrieval(index_root: Path, names: list[str], fresh: dict[str, ReferenceSignatures],
                    previous: "RetrievalIndex | None" = None) -> RetrievalIndex:
    """Write the retrieval index for references `names`: signatures in `fresh` are new, the others are taken
    from `previous` (an add computes only the added reference's signatures)."""
    folder = Path(index_root) / RETRIEVAL_DIR
    vectors: dict[str, list[np.ndarray]] = {}
    keys: dict[str, list[np.ndarray]] = {}
    roles: list[str] = [""]
    classes: dict[str, dict[str, Any]] = {}
    ref_id = {n: i for i, n in enumerate(names)}

    def role_code(role: str) -> int:
        if role not in roles:
            roles.append(role)
        return roles.index(role)

    if previous is not None:
        old_names, old_roles = previous.references, previous.manifest.get("roles", [""])
        for cls, info in previous.classes.items():
            old_keys = np.asarray(previous.keys(cls))
            keep = np.asarray([old_names[r] in ref_id and old_names[r] not in fresh for r in old_keys[:, 0]], dtype=bool)
            if not keep.any():
                continue
            vecs = np.load(previous.folder / f"{cls}.vectors.npy", mmap_mode="r", allow_pickle=False)
            new_keys = np.stack([[ref_id[old_names[r]] for r in old_keys[keep, 0]],
                                 [role_code(old_roles[c]) for c in old_keys[keep, 1]]], axis=1)
            vectors.setdefault(cls, []).append(np.asarray(vecs[keep], dtype=np.float16))
            keys.setdefault(cls, []).append(new_keys.astype(np.int32))
            classes[cls] = {k: v for k, v in info.items() if k != "count"}
    for name, sig in fresh.items():
        for cls, vecs in sig.vectors.items():
            info = classes.setdefault(cls, {"kind": "gram" if cls in sig.gram_sets else "sketch"})
            vectors.setdefault(cls, []).append(np.stack(vecs).astype(np.float16))
            keys.setdefault(cls, []).append(np.asarray([[ref_id[name], role_code(r)] for r in sig.roles[cls]],
                                                       dtype=np.int32))
            if cls in sig.gram_sets:
                info.setdefault("tokens", sig.gram_sets[cls].to_dict())
            reps = info.setdefault("representatives", [])
            seen = {json.dumps(r["key"]) for r in reps}
            for t in sig.representatives.get(cls, []):
                key = _json_key(_representative_key(t))
                if json.dumps(key) not in seen:
                    seen.add(json.dumps(key))
                    reps.append({"key": key, "tensor": {k: v for k, v in t.to_dict().items()
                                                        if k in _REPRESENTATIVE_FIELDS}})
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for cls in sorted(classes):
        order = np.argsort(np.concatenate(keys[cls])[:, 0], kind="stable")  # by reference id: same files for same refs
        written[cls] = (np.concatenate(vectors[cls])[order], np.concatenate(keys[cls])[order])
    for old in folder.iterdir():  # classes no reference has any more
        if old.name != _MANIFEST and old.name.split(".", 1)[0] not in classes:
            old.unlink()
    for cls, (vecs, ks) in written.items():
        _write_class(folder / cls, vecs, ks)
        classes[cls]["count"] = len(ks)
    manifest = {"format": RETRIEVAL_FORMAT, "dimension": SIGNATURE_DIM, "vocab_dimension": VOCAB_SIGNATURE_DIM,
                "metric": "cosine",
                "signature": {"projection": "signed count sketch", "gram_tokens": GRAM_TOKENS},
                "references": list(names), "roles": roles, "classes": dict(sorted(classes.items()))}
    with atomic_write(folder / _MANIFEST) as handle:
        json.dump(manifest, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return RetrievalIndex(folder, manifest)


def _json_key(key: tuple) -> list:
    role, heads, ndim, shape2d = key
    return [role, heads, ndim, list(shape2d)]


def _write_class(base: Path, vectors: np.ndarray, keys: np.ndarray) -> None:
    """The vectors, keys and HNSW graph of one class (the graph is rebuilt: insertion order is the key order,
    so the same references give the same files)."""
    from usearch.index import Index  # deferred: only index writes and large scans need it

    with atomic_write(Path(f"{base}.vectors.npy"), "wb") as handle:
        np.save(handle, vectors, allow_pickle=False)
    with atomic_write(Path(f"{base}.keys.npy"), "wb") as handle:
        np.save(handle, keys, allow_pickle=False)
    graph = Index(ndim=vectors.shape[1], metric="cos", dtype="f16", connectivity=16, expansion_add=128,
                  expansion_search=256, multi=False)
    graph.add(np.arange(len(vectors), dtype=np.uint64), vectors.astype(np.float32), threads=1)
    tmp = Path(f"{base}.usearch.tmp")
    graph.save(str(tmp))
    tmp.replace(Path(f"{base}.usearch"))


# --- Querying: the shortlist --------------------------------------------------------------------------------

@dataclass
class Candidate:
    """One reference retrieved for one suspect component by one signature, with its score."""

    reference: str
    component: str
    signature: str  # "sketch" | "gram"
    score: float  # sketch: sum over suspect tensors of the best signature cosine; gram: the cosine
    tensors: int  # suspect tensors that retrieved it (gram: 1)
    best: float  # the best single signature cosine

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "component": self.component, "signature": self.signature,
                "score": round(self.score, 4), "tensors": self.tensors, "best": round(self.best, 4)}


@dataclass
class Shortlist:
    """The references to verify, and why each was retrieved."""

    references: list[str]
    candidates: list[Candidate]
    queries: int
    indexed: int  # references in the retrieval index

    def to_dict(self) -> dict[str, Any]:
        return {"references": list(self.references), "indexed_references": self.indexed, "queries": self.queries,
                "per_component": SHORTLIST_PER_COMPONENT,
                "candidates": [c.to_dict() for c in self.candidates]}


def shortlist(retrieval: RetrievalIndex, reader: SuspectReader, suspects: list[TensorFingerprint],
              tokens: dict[bytes, int] | None, *, spec: SketchSpec, per_component: int = SHORTLIST_PER_COMPONENT,
              ) -> Shortlist:
    """The references worth verifying: per suspect component, the `per_component` best by sketch signatures and
    the `per_component` best by Gram signatures."""
    names = retrieval.references
    roles = retrieval.manifest.get("roles", [""])
    scores: dict[tuple[str, str, int], list[float]] = {}  # (component, signature, ref id) → per-tensor best
    strongest: dict[tuple[str, str, int], float] = {}  # the same key → best cosine in null sd (z)
    queries = 0
    for cls, info in retrieval.classes.items():
        if info.get("kind") == "gram":
            queries += _gram_queries(retrieval, cls, info, reader, suspects, tokens, scores, strongest)
            continue
        reps = [TensorFingerprint.from_dict(r["tensor"]) for r in info.get("representatives", [])]
        if not reps:
            continue
        shape2d = reps[0].shape2d
        for s in suspects:
            wanted = placements_for(s, s.shape2d, reps)
            qs, allowed = [], []
            for p, positions in wanted.items():
                if prefix_sketch_rows(shape2d, p, spec) is not None:
                    continue  # pre-sliced tables are left to verification
                qs.append(sketch_signature(sketch_at(reader, s.name, shape2d, p, spec), cls))
                allowed.append({reps[i].role for i in positions})
            if not qs:
                continue
            queries += len(qs)
            rows, sims = retrieval.search(cls, np.stack(qs))
            keys = retrieval.keys(cls)
            best: dict[int, float] = {}
            for q in range(len(qs)):
                for row, sim in zip(rows[q], sims[q]):
                    ref_id, role = int(keys[row, 0]), roles[int(keys[row, 1])]
                    if role in allowed[q] or any(roles_compatible(role, a) for a in allowed[q]):
                        best[ref_id] = max(best.get(ref_id, -1.0), float(sim))
            for ref_id, sim in best.items():
                _record(scores, strongest, (s.component, "sketch", ref_id), sim, class_dimension(cls))
    candidates = [Candidate(names[ref_id], comp, kind, float(sum(max(v, 0.0) for v in sims)) if kind == "sketch"
                            else max(sims), len(sims), max(sims))
                  for (comp, kind, ref_id), sims in scores.items()
                  if strongest[(comp, kind, ref_id)] >= RETRIEVAL_Z]
    chosen: list[Candidate] = []
    groups: dict[tuple[str, str], list[Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.component, c.signature), []).append(c)
    for _, group in sorted(groups.items()):
        chosen += sorted(group, key=lambda c: (-c.score, -c.best, c.reference))[:per_component]
    refs = list(dict.fromkeys(c.reference for c in sorted(chosen, key=lambda c: -c.score)))
    return Shortlist(refs, sorted(chosen, key=lambda c: (c.component, c.signature, -c.score)), queries, len(names))


def _record(scores: dict[tuple[str, str, int], list[float]], strongest: dict[tuple[str, str, int], float],
            key: tuple[str, str, int], sim: float, dim: int) -> None:
    """One suspect tensor's best cosine for a reference, and its size in null sd (an unrelated signature's
    cosine is ≈ N(0, 1/√dim))."""
    scores.setdefault(key, []).append(sim)
    strongest[key] = max(strongest.get(key, -np.inf), sim * float(np.sqrt(dim)))


def _gram_queries(retrieval: RetrievalIndex, cls: str, info: dict[str, Any], reader: SuspectReader,
                  suspects: list[TensorFingerprint], tokens: dict[bytes, int] | None,
                  scores: dict[tuple[str, str, int], list[float]], strongest: dict[tuple[str, str, int], float]
                  ) -> int:
    """Query one Gram class with each suspect token embedding or output head whose rows pair with its tokens."""
    gs = GramSet.from_dict(cls, info.get("tokens", {"ids": []}))
    queries = 0
    for s in suspects:
        if s.role not in VOCAB_ROLES or len(s.shape) != 2:
            continue
        ids = _pair_ids(gs, tokens, s.shape[0])
        present = ids >= 0
        if present.sum() < _MIN_GRAM_TOKENS:
            continue
        rows = np.zeros((len(ids), s.shape[1]), dtype=np.float32)
        rows[present] = reader.rows(s.name, ids[present])
        rows_sig = gram_signature(rows, present)
        found, sims = retrieval.search(cls, rows_sig.reshape(1, -1))
        queries += 1
        keys = retrieval.keys(cls)
        for row, sim in zip(found[0], sims[0]):
            _record(scores, strongest, (s.component, "gram", int(keys[row, 0])), float(sim), SIGNATURE_DIM)
    return queries


def _pair_ids(gs: GramSet, tokens: dict[bytes, int] | None, rows: int) -> np.ndarray:
    """Suspect row ids of the set's tokens (by string when both sides know tokens, else by id); −1 when absent."""
    if gs.tokens is not None and tokens:
        ids = np.asarray([tokens.get(t, -1) for t in gs.tokens], dtype=np.int64)
    else:
        ids = gs.ids.copy()
    ids[(ids < 0) | (ids >= rows)] = -1
    return ids

