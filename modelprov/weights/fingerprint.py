"""Weight fingerprints: per-tensor role, statistics, exact digests and a compact deterministic sketch.

A sketch is the sub-matrix `W[rows(n_rows), cols(n_cols)]` of a tensor's 2-D view, where the index sets
are chosen *per dimension*, seeded by that dimension's size only. Any two tensors that share a
dimension size therefore share its sample, so a transposed copy's sketch is the transpose of the
reference's, and the scanner can read exactly the suspect rows it needs (an offset inside a fused qkv,
a permuted row order) without the full reference weights.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping

import numpy as np

from modelprov.progress import FINGERPRINTING, ProgressFn, report
from modelprov.reader import Checkpoint, TensorInfo, view_shape

from .naming import expert_index, infer_role, layer_index, layer_stack, top_level_component

SKETCH_VERSION = 1
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
# Quantised GGUF tensors are dequantised to float by the reader; their dtype names are recorded as is.
_INTEGER_DTYPES = frozenset({"I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"})
# Roles whose entries start near a constant: centred before comparison and never evidence on their own.
WEAK_ROLES = frozenset({"norm_weight", "norm_bias", "bias", "type_embedding"})
_CHUNK_ENTRIES = 1 << 24  # rows are read in blocks of about this many entries (64 MB as float32)


@dataclass(frozen=True)
class SketchSpec:
    """How many rows and columns a sketch samples; a dimension no larger than its cap is kept whole."""

    rows: int = 256
    cols: int = 256
    version: int = SKETCH_VERSION

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@lru_cache(maxsize=4096)
def sample_indices(n: int, k: int, version: int = SKETCH_VERSION) -> np.ndarray:
    """Sorted sample of `k` of `range(n)` seeded only by `n` (blake2b of `dim:<n>`): the same for every tensor."""
    if n <= k:
        return np.arange(n, dtype=np.int64)
    seed = int.from_bytes(hashlib.blake2b(f"dim:{n}:v{version}".encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    out = np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
    out.setflags(write=False)
    return out


def sketch_indices(shape2d: tuple[int, int], spec: SketchSpec) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the sketch of a tensor with 2-D view `shape2d`."""
    return sample_indices(shape2d[0], spec.rows, spec.version), sample_indices(shape2d[1], spec.cols, spec.version)


# --- Exact digests ------------------------------------------------------------------------------------

def bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns with round-to-nearest-even (what torch's cast does)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        out[nan] = 0x7FC0
    return out


class ValueDigests:
    """sha256 of a tensor's values in canonical layout at float32, bfloat16 and float16 precision.

    A copy cast to another dtype has the same digest at the lower precision, so it is still
    recognised as exact; the raw-bytes digest is kept beside them for the record.
    """

    KINDS = ("f32", "bf16", "f16")

    def __init__(self, kinds: tuple[str, ...] = KINDS) -> None:
        self._h = {k: hashlib.sha256() for k in kinds}

    def update(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32)
        self._h["f32"].update(memoryview(block).cast("B"))
        if "bf16" in self._h:
            self._h["bf16"].update(memoryview(bf16_bits(block)).cast("B"))
        if "f16" in self._h:
            with np.errstate(over="ignore"):
                self._h["f16"].update(memoryview(block.astype(np.float16)).cast("B"))

    def hexdigests(self) -> dict[str, str]:
        return {k: h.hexdigest() for k, h in self._h.items()}


# plain float storage: its stored bytes hash to the value digest at this precision
PLAIN_DIGESTS = {"F32": "f32", "BF16": "bf16", "F16": "f16"}


def stored_digest_key(dtype: str) -> str:
    """The digest a tensor's stored bytes (`Checkpoint.stored_sha256`) equal when the values are the same: the
    value digest at its precision for plain floats, else the digest of its quantised blocks (`stored:Q4_1`),
    which only a reference stored in that same quantisation keeps."""
    return PLAIN_DIGESTS.get(dtype) or f"stored:{dtype}"


def digests_match(a: dict[str, str], b: dict[str, str]) -> str | None:
    """The finest precision at which two digest sets agree (`f32`, `bf16`, `f16`), or None."""
    for kind in ValueDigests.KINDS:
        if a.get(kind) and a.get(kind) == b.get(kind):
            return kind
    return None


def exact_precision(blocks: Iterable[np.ndarray], reference: dict[str, str], rows: int) -> str | None:
    """`digests_match` of the value digests of `blocks` (row blocks of `rows` rows in all) against `reference`'s.
    A tensor read in one block (most are) is hashed at float32 first and at bfloat16/float16 only when that
    differs: a copy costs one hash, not three. Longer ones take one pass at all three, one block in memory."""
    digests = ValueDigests()
    for i, block in enumerate(blocks):
        if i == 0 and len(block) == rows and reference.get("f32"):
            f32 = ValueDigests(("f32",))
            f32.update(block)
            if f32.hexdigests()["f32"] == reference["f32"]:
                return "f32"
        digests.update(block)
    return digests_match(digests.hexdigests(), reference)


class RunningStats:
    """Mean, standard deviation, extremes and mean absolute value accumulated over blocks (float64)."""

    def __init__(self) -> None:
        self.n = 0
        self.s = self.s2 = self.sa = 0.0
        self.lo, self.hi = np.inf, -np.inf

    def update(self, block: np.ndarray) -> None:
        b = block.astype(np.float64, copy=False).ravel()
        if not b.size:
            return
        self.n += b.size
        self.s += float(b.sum())
        self.s2 += float(np.dot(b, b))
        self.sa += float(np.abs(b).sum())
        self.lo, self.hi = min(self.lo, float(b.min())), max(self.hi, float(b.max()))

    def to_dict(self) -> dict[str, float]:
        if not self.n:
            return {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0, "abs_mean": 0.0}
        mean = self.s / self.n
        return {
            "mean": mean,
            "std": float(np.sqrt(max(self.s2 / self.n - mean * mean, 0.0))),
            "min": self.lo,
            "max": self.hi,
            "abs_mean": self.sa / self.n,
        }


# --- Fingerprints -------------------------------------------------------------------------------------

@dataclass
class TensorFingerprint:
    """What the index keeps of one tensor: where it sits, what it does, its digests and statistics."""

    name: str
    role: str
    shape: tuple[int, ...]
    dtype: str
    layer: int | None = None
    expert: int | None = None
    component: str = ""
    stack: str | None = None
    statistics: dict[str, float] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    sketch_shape: tuple[int, int] = (0, 0)
    heads: int | None = None  # attention heads sharing the rows (q: heads, k: kv heads); for row permutations
    layout: str = "hf"  # row order of q/k as stored in the sketch ("hf": llama.cpp permutation undone)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def shape2d(self) -> tuple[int, int]:
        return view_shape(self.shape)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["sketch_shape"] = list(self.sketch_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorFingerprint":
        d = dict(d)
        d["shape"] = tuple(d["shape"])
        d["sketch_shape"] = tuple(d.get("sketch_shape", (0, 0)))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def describe_tensor(info: TensorInfo) -> TensorFingerprint:
    """Name-derived facts about a tensor (role, layer, component) without reading it."""
    return TensorFingerprint(
        name=info.name,
        role=infer_role(info.name, info.shape),
        shape=tuple(info.shape),
        dtype=info.dtype,
        layer=layer_index(info.name),
        expert=expert_index(info.name),
        component=top_level_component(info.name),
        stack=layer_stack(info.name),
    )


def suspect_fingerprints(ckpt: Checkpoint) -> list[TensorFingerprint]:
    """Name-derived facts (role, layer, component) of every float tensor of the suspect, without reading."""
    return [describe_tensor(i) for i in ckpt.tensors() if is_fingerprintable(i)]


def is_fingerprintable(info: TensorInfo) -> bool:
    """Float (or dequantised) tensors with at least one entry; integer buffers such as position ids are not weights."""
    return info.dtype not in _INTEGER_DTYPES and info.numel > 0


def gguf_qk_permutation(rows: int, heads: int) -> np.ndarray:
    """llama.cpp's rotary row order for q/k: GGUF row i holds Hugging Face row `perm[i]`."""
    if heads <= 0 or rows % (2 * heads):
        raise ValueError(f"{rows} rows cannot be split into {heads} heads of even size")
    return np.arange(rows).reshape(heads, 2, rows // heads // 2).swapaxes(1, 2).reshape(-1)


def iter_row_blocks(ckpt: Checkpoint, info: TensorInfo) -> Iterable[tuple[int, np.ndarray]]:
    """The whole 2-D view of a tensor in blocks of rows (bounded memory): (first row, block)."""
    n_rows, width = view_shape(info.shape)
    if len(info.shape) < 2:  # the reader views a vector as a column; we view it as one row
        yield 0, ckpt.read_rows(info.name).reshape(1, width)
        return
    step = max(1, _CHUNK_ENTRIES // max(width, 1))
    for start in range(0, n_rows, step):
        stop = min(n_rows, start + step)
        yield start, ckpt.read_rows(info.name, slice(start, stop)).reshape(stop - start, width)


def fingerprint_tensor(
    ckpt: Checkpoint, info: TensorInfo, spec: SketchSpec, *, row_order: np.ndarray | None = None
) -> tuple[TensorFingerprint, np.ndarray]:
    """Read a tensor fully once: statistics, value digests and its sketch (rows reordered by `row_order`)."""
    fp = describe_tensor(info)
    rows, cols = sketch_indices(fp.shape2d, spec)
    stats, digests = RunningStats(), ValueDigests()
    if row_order is None:
        sketch = np.empty((len(rows), len(cols)), dtype=np.float32)
        for start, block in iter_row_blocks(ckpt, info):
            stats.update(block)
            digests.update(block)
            lo, hi = np.searchsorted(rows, [start, start + len(block)])
            sketch[lo:hi] = block[rows[lo:hi] - start][:, cols]
    else:  # a row permutation must be undone on the whole tensor before digesting
        full = ckpt.read_rows(info.name).reshape(fp.shape2d)[row_order]  # q/k matrices only
        stats.update(full)
        digests.update(full)
        sketch = full[rows][:, cols]
    fp.statistics = stats.to_dict()
    fp.digests = digests.hexdigests()
    key = stored_digest_key(info.dtype)
    if key not in fp.digests and (stored := ckpt.stored_sha256(info.name)):
        fp.digests[key] = stored  # a copy kept in this quantisation is confirmed by hashing, not decoding
    fp.sketch_shape = (len(rows), len(cols))
    return fp, np.ascontiguousarray(sketch)  # fancy indexing may give Fortran order; storage needs C order


@dataclass
class EmbeddingAnchors:
    """Whole rows of a token embedding for a seeded sample of tokens, keyed by token bytes.

    They let the matcher undo a permuted or rotated residual stream (fit the map on shared tokens) and
    align vocabularies that grew, shrank or were reordered, which fixed-position sketches cannot.
    """

    ids: np.ndarray  # reference token ids (int64), the embedding rows sampled
    rows: np.ndarray  # (len(ids), width) float32
    tokens: list[bytes] | None = None  # normalised token bytes per id; None: no tokenizer, align by id
    half_step: np.ndarray | None = None  # per row, how far a stored row grid may be off; None: float16 storage

    def to_dict(self) -> dict[str, Any]:
        return {"ids": [int(i) for i in self.ids],
                "tokens": None if self.tokens is None else [t.hex() for t in self.tokens]}

    @classmethod
    def from_dict(cls, d: dict[str, Any], rows: np.ndarray, half_step: np.ndarray | None = None) -> "EmbeddingAnchors":
        tokens = d.get("tokens")
        return cls(np.asarray(d["ids"], dtype=np.int64), rows,
                   None if tokens is None else [bytes.fromhex(t) for t in tokens], half_step)


MAX_ANCHORS = 4096
MIN_ANCHORS = 1024


def anchor_count(vocab: int, width: int) -> int:
    """Anchors kept: about four per hidden unit (enough to fit a rotation on half of them), between 1,024 and
    4,096; from width 2,048 on, where even 4,096 anchors cannot fit a rotation (half of them must outnumber the
    width), 1,024: enough for the identity and signed-permutation maps, a quarter of the index's bytes."""
    if MAX_ANCHORS // 2 <= width:
        return min(vocab, MIN_ANCHORS)
    return min(vocab, max(MIN_ANCHORS, min(MAX_ANCHORS, 4 * width)))


def select_anchors(ckpt: Checkpoint, info: TensorInfo, tokens: dict[bytes, int] | None) -> EmbeddingAnchors:
    """Sample embedding rows (regular tokens when a tokenizer is known, seeded by the row count) and read them."""
    n_rows, width = view_shape(info.shape)
    if tokens:
        by_id = {i: t for t, i in tokens.items() if 0 <= i < n_rows}
        candidates = np.asarray(sorted(by_id), dtype=np.int64)
    else:
        by_id, candidates = {}, np.arange(n_rows, dtype=np.int64)
    k = anchor_count(len(candidates), width)
    ids = candidates[sample_indices(len(candidates), k, SKETCH_VERSION)]
    rows = ckpt.read_rows(info.name, ids).reshape(len(ids), width).astype(np.float32)
    return EmbeddingAnchors(ids, rows, [by_id[int(i)] for i in ids] if tokens else None)


@dataclass
class ModelFingerprint:
    """The fingerprint of a whole model: tensors (in storage order) and their sketches by tensor name."""

    tensors: list[TensorFingerprint]
    sketches: dict[str, np.ndarray]
    spec: SketchSpec = field(default_factory=SketchSpec)
    source: dict[str, Any] = field(default_factory=dict)  # format, quantisation, files, transformations
    anchors: dict[str, EmbeddingAnchors] = field(default_factory=dict)  # by token-embedding tensor name
    half_steps: Mapping[str, np.ndarray] = field(default_factory=dict)  # per sketch row, where stored on a row grid

    @property
    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors)

    def tensor(self, name: str) -> TensorFingerprint:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)


def heads_from_config(config: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """Attention heads and key/value heads from a config.json (or GGUF-derived) dict, when it states them."""
    cfg = config or {}
    heads = cfg.get("num_attention_heads") or cfg.get("n_head") or cfg.get("attention.head_count")
    kv = cfg.get("num_key_value_heads") or cfg.get("attention.head_count_kv") or heads
    return (int(heads) if heads else None, int(kv) if kv else None)


def fingerprint_checkpoint(
    ckpt: Checkpoint, spec: SketchSpec | None = None, *, progress: ProgressFn | None = None,
    undo_gguf_qk_permutation: bool | None = None, heads: tuple[int | None, int | None] | None = None,
    tokens: dict[bytes, int] | None = None,
) -> ModelFingerprint:
    """Fingerprint every float tensor of a checkpoint (full read: digests need every byte).

    For a GGUF of the Llama family, q/k rows are put back into Hugging Face order (llama.cpp permutes
    them for rotary embeddings) so the reference lines up with safetensors derivatives; the manifest
    records this. Token embeddings also keep `EmbeddingAnchors` (whole rows of sampled tokens; `tokens`
    is the tokenizer's regular vocabulary, bytes → id, so anchors can be found again by string).
    """
    spec = spec or SketchSpec()
    infos = [i for i in ckpt.tensors() if is_fingerprintable(i)]
    undo = ckpt.format == "gguf" if undo_gguf_qk_permutation is None else undo_gguf_qk_permutation
    n_heads, n_kv = heads if heads is not None else heads_from_config(ckpt.config)
    total = sum(i.numel for i in infos)
    done = 0
    tensors: list[TensorFingerprint] = []
    sketches: dict[str, np.ndarray] = {}
    permuted = 0
    for info in infos:
        role = infer_role(info.name, info.shape)
        h = n_heads if role == "attn_q" else n_kv if role == "attn_k" else None
        order = None
        if undo and h and len(info.shape) == 2 and info.shape[0] % (2 * h) == 0:
            order = np.argsort(gguf_qk_permutation(info.shape[0], h))
            permuted += 1
        fp, sketch = fingerprint_tensor(ckpt, info, spec, row_order=order)
        fp.heads = h
        tensors.append(fp)
        sketches[info.name] = sketch
        done += info.numel
        report(progress, FINGERPRINTING, done, total, info.name)
    source = {
        "format": ckpt.format,
        "quantisation": ckpt.quantisation,
        "gguf_qk_permutation_undone": bool(permuted),
        "attention_heads": n_heads,
        "kv_heads": n_kv,
    }
    anchors = {i.name: select_anchors(ckpt, i, tokens) for i in infos
               if infer_role(i.name, i.shape) == "token_embedding" and len(i.shape) == 2}
    return ModelFingerprint(tensors, sketches, spec, source, anchors)


def sampled_fingerprint(ckpt: Checkpoint, spec: SketchSpec | None = None, progress: ProgressFn | None = None
                        ) -> ModelFingerprint:
    """A fingerprint from each tensor's sketch rows only (a small fraction of the bytes).

    Sketches and tensor descriptions equal those of a full local read. A tensor whose sketch rows are all
    its rows is read whole, so its statistics and digests are exact too; for larger tensors statistics are
    estimated from the sampled rows and digests are left empty (exact-copy checks need the full read).
    """
    spec = spec or SketchSpec()
    n_heads, n_kv = heads_from_config(ckpt.config)
    infos = [i for i in ckpt.tensors() if is_fingerprintable(i)]
    total, done = sum(i.numel for i in infos), 0
    tensors, sketches, estimated = [], {}, 0
    for info in infos:
        fp = describe_tensor(info)
        fp.heads = n_heads if fp.role == "attn_q" else n_kv if fp.role == "attn_k" else None
        rows, cols = sketch_indices(fp.shape2d, spec)
        whole = len(rows) == fp.shape2d[0]
        stats = RunningStats()
        if whole:  # in bounded blocks, as the local fingerprint reads: exact statistics and digests
            digests = ValueDigests()
            sketch = np.empty((len(rows), len(cols)), dtype=np.float32)
            for start, block in iter_row_blocks(ckpt, info):
                stats.update(block)
                digests.update(block)
                sketch[start:start + len(block)] = block[:, cols]
            fp.digests = digests.hexdigests()
        else:
            block = ckpt.read_rows(info.name, rows).reshape(len(rows), -1)
            stats.update(block)
            sketch = np.ascontiguousarray(block[:, cols])
            estimated += 1
        fp.statistics = stats.to_dict()
        sketches[info.name] = sketch
        fp.sketch_shape = (len(rows), len(cols))
        tensors.append(fp)
        done += info.numel
        report(progress, FINGERPRINTING, done, total, info.name)
    source = {"format": ckpt.format, "quantisation": ckpt.quantisation, "gguf_qk_permutation_undone": False,
              "attention_heads": n_heads, "kv_heads": n_kv, "read": "sampled-rows",
              "statistics_estimated_tensors": estimated}
    return ModelFingerprint(tensors, sketches, spec, source)
