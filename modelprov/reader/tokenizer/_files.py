"""Read tokenizers from the files checkpoints ship: tokenizer.json, tiktoken rank files, sentencepiece models,
vocab.txt / vocab.json + merges.txt, and the tokenizer arrays in GGUF metadata.

Files are parsed as data (JSON, base64 lines, protobuf via sentencepiece, GGUF via our bounded header parser); nothing is
executed and no remote code is trusted. Every malformed file raises `TokenizerFileError` naming the file.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sentencepiece

from modelprov._inputs import load_json, read_regular, read_text
from modelprov.errors import CheckpointError, ProvenanceError

from .._gguf_format import read_header
from .._layout import nested_root, transformer_folder
from ._model import Tokenizer
from ._normalise import byte_level_to_bytes, metaspace_to_bytes, wordpiece_to_bytes


class TokenizerFileError(ProvenanceError):
    """A tokenizer file that is missing, malformed or of a kind the tool cannot read."""


# Files that hold a vocabulary, in the order a folder is searched (the first found is the tokenizer).
TOKENIZER_FILE_PATTERNS = ("tokenizer.json", "*.tiktoken", "tokenizer.model", "*.model", "vocab.json", "vocab.txt",
                           "*.gguf")
_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_BERT_SPECIALS = re.compile(r"^\[(PAD|UNK|CLS|SEP|MASK)\]$")
_GGUF_SPECIAL_TYPES = {2, 3, 4, 5}  # unknown, control, user-defined, unused (llama.cpp token types)
_GGUF_BYTE_TYPE = 6


def find_tokenizer_file(folder: str | Path) -> Path | None:
    """The file in `folder` (or a `tokenizer/` sub-folder, a sentence-transformers model's Transformer module
    folder, or the lone sub-folder a model is nested in) that defines its tokenizer, or None."""
    folder = Path(folder)
    nested = nested_root(folder) if folder.is_dir() else folder
    for directory in (folder, folder / "tokenizer", transformer_folder(folder) or folder, nested):
        if not directory.is_dir():
            continue
        for pattern in TOKENIZER_FILE_PATTERNS:
            found = sorted(p for p in directory.glob(pattern) if p.is_file())
            if found:
                return found[0]
    return None


def read_tokenizer(path: str | Path, name: str | None = None) -> Tokenizer:
    """Read the tokenizer in a file or checkpoint folder, whatever its format, into a normalised `Tokenizer`."""
    path = Path(path)
    if not path.exists():
        raise TokenizerFileError(path, "no such file or directory")
    if path.is_dir():
        found = find_tokenizer_file(path)
        if found is None:
            raise TokenizerFileError(path, "no tokenizer file (tokenizer.json, *.tiktoken, *.model, vocab.txt, "
                                           "vocab.json + merges.txt or GGUF) in this folder")
        path = found
    suffix = path.suffix.lower()
    if path.name.endswith("tokenizer_config.json") or path.name == "special_tokens_map.json":
        raise TokenizerFileError(path, "holds tokenizer settings, not a vocabulary; give tokenizer.json or vocab files")
    if suffix == ".tiktoken":
        tok = read_tiktoken(path)
    elif suffix == ".model":
        tok = read_sentencepiece(path)
    elif suffix == ".gguf":
        tok = read_gguf_tokenizer(path)
    elif suffix == ".txt" and path.name != "merges.txt":
        tok = read_wordpiece_vocab(path)
    elif path.name == "merges.txt" or path.name == "vocab.json":
        tok = read_gpt2_vocab(path.with_name("vocab.json"), path.with_name("merges.txt"))
    elif suffix == ".json":
        tok = read_tokenizer_json(path)
    else:
        raise TokenizerFileError(path, f"unsupported tokenizer file type {suffix or '(no extension)'!r}")
    tok.name = name or tok.name
    return tok


# --- tokenizer.json (Hugging Face `tokenizers`) -------------------------------------------------------------


def _types_in(section: Any) -> set[str]:
    """All component `type`s in a (possibly nested Sequence) pre-tokenizer/decoder/normalizer section."""
    found: set[str] = set()
    if isinstance(section, dict):
        if isinstance(section.get("type"), str):
            found.add(section["type"])
        for value in section.values():
            found |= _types_in(value)
    elif isinstance(section, list):
        for value in section:
            found |= _types_in(value)
    return found


def _json_encoding(doc: dict[str, Any]) -> str:
    """How a tokenizer.json stores its tokens: GPT-2 byte-level, sentencepiece metaspace, or plain text."""
    types = _types_in(doc.get("pre_tokenizer")) | _types_in(doc.get("decoder"))
    if "ByteLevel" in types:
        return "byte-level"
    if "Metaspace" in types or "\u2581" in json.dumps(doc.get("normalizer"), ensure_ascii=False):
        return "metaspace"
    return "utf-8"


def _decoder(encoding: str, prefix: str = "##"):
    if encoding == "byte-level":
        return lambda s: byte_level_to_bytes(s)
    if encoding == "metaspace":  # byte pieces are decoded only where the file marks them (byte_tokens)
        return lambda s: metaspace_to_bytes(s, byte_fallback=False)
    if encoding == "wordpiece":
        return lambda s: wordpiece_to_bytes(s, prefix)
    return lambda s: s.encode("utf-8")


def _build(source: Path, fmt: str, model: str, encoding: str, entries: Iterable[tuple[str, int]],
           specials: dict[str, int], merges: Iterable[str] | None = None,
           byte_tokens: set[int] | None = None, prefix: str = "##") -> Tokenizer:
    """Normalise `(text, id)` entries (specials excluded) and merge products into a `Tokenizer`."""
    decode = _decoder(encoding, prefix)
    tokens: dict[bytes, int] = {}
    collisions = 0
    special_ids = set(specials.values())
    # Byte-fallback pieces go last: where `<0x65>` and `e` both exist, the real piece keeps the byte string.
    ordered = sorted(entries, key=lambda e: (byte_tokens is not None and e[1] in byte_tokens, e[1]))
    for text, i in ordered:
        if text in specials or i in special_ids:
            continue
        if byte_tokens is not None and i in byte_tokens:
            raw = metaspace_to_bytes(text, byte_fallback=True)
        else:
            raw = decode(text)
        if raw is None:  # outside the byte-level alphabet: an added token stored as text
            raw = text.encode("utf-8")
        if raw in tokens:
            collisions += 1
            continue
        tokens[raw] = i
    products: list[bytes] | None = None
    if merges is not None:
        products, seen = [], set()
        for merged in merges:
            raw = decode(merged)
            if raw is None:
                raw = merged.encode("utf-8")
            if raw not in seen:
                seen.add(raw)
                products.append(raw)
    return Tokenizer(source=str(source), format=fmt, model=model, encoding=encoding, tokens=tokens,
                     special_tokens=specials, merges=products, collisions=collisions)


def _merge_text(merge: Any, path: Path, index: int) -> str:
    """The token a merge rule produces, from either `"a b"` or `["a", "b"]` form."""
    if isinstance(merge, str):
        parts = merge.split(" ")
        if len(parts) != 2:
            raise TokenizerFileError(path, f"merge {index} {merge!r} is not two tokens separated by a space")
        return parts[0] + parts[1]
    if isinstance(merge, list) and len(merge) == 2 and all(isinstance(p, str) for p in merge):
        return merge[0] + merge[1]
    raise TokenizerFileError(path, f"merge {index} is neither 'a b' nor a pair of strings")


def _checked_vocab(vocab: Any, path: Path, what: str) -> list[tuple[str, int]]:
    if not isinstance(vocab, dict) or not vocab:
        raise TokenizerFileError(path, f"{what} is missing or not a token -> id mapping")
    entries = []
    for text, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TokenizerFileError(path, f"{what}: token {text!r} has id {i!r}, not a non-negative integer")
        entries.append((text, i))
    return entries


def _byte_fallback_ids(model: dict[str, Any], entries: list[tuple[str, int]]) -> set[int] | None:
    """Ids of `<0xNN>` byte pieces when the model falls back to bytes (Llama/Gemma-style tokenizer.json)."""
    if not model.get("byte_fallback"):
        return None
    return {i for text, i in entries if _BYTE_PIECE.match(text)}


def read_tokenizer_json(path: str | Path) -> Tokenizer:
    """Read a Hugging Face `tokenizer.json` (BPE, WordPiece, Unigram or WordLevel model)."""
    path = Path(path)
    doc = load_json(path, TokenizerFileError)
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise TokenizerFileError(path, "has no 'model' section; not a Hugging Face tokenizer.json")
    model = doc["model"]
    kind = model.get("type")
    specials: dict[str, int] = {}
    for added in doc.get("added_tokens") or []:
        if not isinstance(added, dict) or not isinstance(added.get("content"), str) or not isinstance(added.get("id"), int):
            raise TokenizerFileError(path, "an entry of 'added_tokens' lacks 'content' or 'id'")
        specials[added["content"]] = added["id"]
    if kind is None and "merges" in model:
        kind = "BPE"
    if kind == "BPE":
        encoding = _json_encoding(doc)
        merges = model.get("merges")
        if not isinstance(merges, list):
            raise TokenizerFileError(path, "model.merges is missing or not a list")
        texts = [_merge_text(m, path, k) for k, m in enumerate(merges)]
        entries = _checked_vocab(model.get("vocab"), path, "model.vocab")
        return _build(path, "tokenizer.json", "bpe", encoding, entries, specials, texts,
                      byte_tokens=_byte_fallback_ids(model, entries))
    if kind == "WordPiece":
        return _build(path, "tokenizer.json", "wordpiece", "wordpiece",
                      _checked_vocab(model.get("vocab"), path, "model.vocab"), specials,
                      prefix=model.get("continuing_subword_prefix") or "##")
    if kind == "Unigram":
        vocab = model.get("vocab")
        if not isinstance(vocab, list) or not vocab:
            raise TokenizerFileError(path, "model.vocab of a Unigram model is missing or not a list of [piece, score]")
        entries = []
        for i, item in enumerate(vocab):
            if not (isinstance(item, list) and item and isinstance(item[0], str)):
                raise TokenizerFileError(path, f"model.vocab entry {i} is not [piece, score]")
            entries.append((item[0], i))
        return _build(path, "tokenizer.json", "unigram", "metaspace", entries, specials,
                      byte_tokens=_byte_fallback_ids(model, entries))
    if kind == "WordLevel":
        return _build(path, "tokenizer.json", "wordlevel", "utf-8",
                      _checked_vocab(model.get("vocab"), path, "model.vocab"), specials)
    raise TokenizerFileError(path, f"unsupported tokenizer model type {kind!r}")


# --- tiktoken rank files -----------------------------------------------------------------------------------


def read_tiktoken(path: str | Path) -> Tokenizer:
    """Read a tiktoken BPE rank file (`base64-token rank` per line); ranks are ids and the merge order."""
    path = Path(path)
    lines = read_regular(path, TokenizerFileError).splitlines()
    tokens: dict[bytes, int] = {}
    seen_ranks: set[int] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise TokenizerFileError(path, f"line {number}: expected 'base64-token rank', found {len(fields)} fields")
        try:
            token = base64.b64decode(fields[0], validate=True)
        except (binascii.Error, ValueError):
            raise TokenizerFileError(path, f"line {number}: invalid base64 token {fields[0][:40].decode('latin-1')!r}") from None
        try:
            rank = int(fields[1])
        except ValueError:
            raise TokenizerFileError(path, f"line {number}: rank {fields[1][:20].decode('latin-1')!r} is not an integer") from None
        if rank in seen_ranks or token in tokens:
            raise TokenizerFileError(path, f"line {number}: duplicate token or rank {rank}")
        seen_ranks.add(rank)
        tokens[token] = rank
    if not tokens:
        raise TokenizerFileError(path, "holds no tokens")
    merges = [t for t, _ in sorted(tokens.items(), key=lambda kv: kv[1]) if len(t) > 1]
    return Tokenizer(source=str(path), format="tiktoken", model="bpe", encoding="base64", tokens=tokens,
                     merges=merges)


# --- sentencepiece -----------------------------------------------------------------------------------------


def read_sentencepiece(path: str | Path) -> Tokenizer:
    """Read a sentencepiece `.model` (protobuf, parsed by the `sentencepiece` library)."""
    path = Path(path)
    data = read_regular(path, TokenizerFileError)
    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(data)
    except Exception as err:  # sentencepiece raises RuntimeError/OSError with C++ messages
        problem = " ".join(str(err).split()) or type(err).__name__
        raise TokenizerFileError(path, f"not a valid sentencepiece model (truncated or corrupt): {problem}") from None
    size = processor.get_piece_size()
    if size == 0:
        raise TokenizerFileError(path, "sentencepiece model holds no pieces")
    specials: dict[str, int] = {}
    entries, byte_ids = [], set()
    for i in range(size):
        piece = processor.id_to_piece(i)
        if processor.is_control(i) or processor.is_unknown(i) or processor.is_unused(i):
            specials[piece] = i
            continue
        if processor.is_byte(i):
            byte_ids.add(i)
        entries.append((piece, i))
    return _build(path, "sentencepiece", "sentencepiece", "metaspace", entries, specials, byte_tokens=byte_ids)


# --- vocab.txt (WordPiece) and vocab.json + merges.txt (GPT-2) ---------------------------------------------


def _special_strings(folder: Path) -> set[str]:
    """Special-token strings named by `special_tokens_map.json` / `tokenizer_config.json` beside a vocab file."""
    names: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, str):
            names.add(value)
        elif isinstance(value, dict) and isinstance(value.get("content"), str):
            names.add(value["content"])
        elif isinstance(value, list):
            for v in value:
                collect(v)

    for filename in ("special_tokens_map.json", "tokenizer_config.json"):
        if not (folder / filename).is_file():
            continue
        try:
            doc = load_json(folder / filename, TokenizerFileError)
        except TokenizerFileError:  # settings beside the vocabulary: an unreadable one names no specials
            continue
        if not isinstance(doc, dict):
            continue
        for key, value in doc.items():
            if key.endswith("_token") or key == "additional_special_tokens":
                collect(value)
        for value in (doc.get("added_tokens_decoder") or {}).values():
            collect(value)
    return names


def read_wordpiece_vocab(path: str | Path) -> Tokenizer:
    """Read a BERT-style `vocab.txt` (one token per line, line number = id, `##` continues a word)."""
    path = Path(path)
    lines = read_text(path, TokenizerFileError).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise TokenizerFileError(path, "holds no tokens")
    named = _special_strings(path.parent)
    specials = {t: i for i, t in enumerate(lines) if t in named or (not named and _BERT_SPECIALS.match(t))}
    entries = [(t.rstrip("\r"), i) for i, t in enumerate(lines)]
    return _build(path, "vocab.txt", "wordpiece", "wordpiece", entries, specials)


def read_gpt2_vocab(vocab_path: str | Path, merges_path: str | Path) -> Tokenizer:
    """Read a GPT-2-style `vocab.json` (byte-level token -> id) with its `merges.txt`."""
    vocab_path, merges_path = Path(vocab_path), Path(merges_path)
    if not vocab_path.exists():
        raise TokenizerFileError(vocab_path, "missing (merges.txt needs its vocab.json)")
    vocab = load_json(vocab_path, TokenizerFileError)
    if not merges_path.exists():
        raise TokenizerFileError(merges_path, "missing (vocab.json needs its merges.txt)")
    merge_lines = read_text(merges_path, TokenizerFileError).splitlines()
    texts = [_merge_text(line, merges_path, k) for k, line in enumerate(merge_lines)
             if line.strip() and not line.startswith("#version")]
    specials = {t: i for t, i in (vocab.items() if isinstance(vocab, dict) else [])
                if t in _special_strings(vocab_path.parent)}
    return _build(vocab_path, "vocab.json+merges.txt", "bpe", "byte-level",
                  _checked_vocab(vocab, vocab_path, "vocab.json"), specials, texts)


# --- GGUF metadata -----------------------------------------------------------------------------------------


def read_gguf_tokenizer(path: str | Path) -> Tokenizer:
    """Read the tokenizer llama.cpp embeds in a GGUF file's metadata (`tokenizer.ggml.*`)."""
    import gguf  # deferred: gguf takes ~0.3 s to import; only GGUF files need it (for its type sizes)

    path = Path(path)
    try:
        header = read_header(path, {int(t): sizes for t, sizes in gguf.GGML_QUANT_SIZES.items()})
    except CheckpointError as err:
        raise TokenizerFileError(path, err.problem) from None
    return tokenizer_from_gguf_metadata(header.metadata, path)


def tokenizer_from_gguf_metadata(metadata: dict[str, Any], path: str | Path) -> Tokenizer:
    """The tokenizer in GGUF metadata already parsed (e.g. `GgufCheckpoint.metadata`), so a scan parses once."""
    path = Path(path)
    texts, types = metadata.get("tokenizer.ggml.tokens"), metadata.get("tokenizer.ggml.token_type")
    merges, model = metadata.get("tokenizer.ggml.merges"), metadata.get("tokenizer.ggml.model")
    if not texts or not isinstance(texts, list):
        raise TokenizerFileError(path, "GGUF metadata has no tokenizer.ggml.tokens array")
    if types is not None and len(types) != len(texts):
        raise TokenizerFileError(path, f"tokenizer.ggml.token_type has {len(types)} entries for {len(texts)} tokens")
    types = types or [1] * len(texts)
    specials = {t: i for i, (t, kind) in enumerate(zip(texts, types)) if kind in _GGUF_SPECIAL_TYPES}
    byte_ids = {i for i, kind in enumerate(types) if kind == _GGUF_BYTE_TYPE}
    entries = [(t, i) for i, t in enumerate(texts)]
    if model == "gpt2":
        merge_texts = [_merge_text(m, path, k) for k, m in enumerate(merges or [])]
        return _build(path, "gguf", "bpe", "byte-level", entries, specials, merge_texts)
    if model in ("llama", "t5", "bert"):
        # llama.cpp writes sentencepiece pieces as they are and BERT vocabularies with `▁` for a word start.
        kind = {"llama": "sentencepiece", "t5": "unigram", "bert": "wordpiece"}[model]
        return _build(path, "gguf", kind, "metaspace", entries, specials, byte_tokens=byte_ids)
    raise TokenizerFileError(path, f"unsupported GGUF tokenizer model {model!r}")
