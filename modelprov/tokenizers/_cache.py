"""A content-addressed cache of parsed reference tokenizers, so a scan does not re-parse gzip JSON every time.

Parsing the five shipped references (gzip JSON, 600,000 base64 tokens) costs ~0.7 s of CPU per scan. The
cache keeps each one, keyed by the sha256 of its stored file (already checked against the manifest), as
packed token bytes with their offsets: loading is slicing, not decoding. A changed reference has another
digest, so it can never meet a stale entry.

Entry layout: MAGIC, the sha256 of the rest, then length-prefixed sections (meta JSON, token offsets, token
presence, token bytes, merges as token ids (−1: not a token), offsets and bytes of the merges that are not
tokens). Merges that are tokens share the token's bytes object, as a parsed tokenizer's do. The cache folder
is writable by whoever runs the tool, so an entry is checked like any input: regular file, size limit, its
own digest, every offset and id in bounds. Anything wrong means "no entry": the stored file is parsed as
before and the entry rewritten. The cache is an optimisation only; a folder that cannot be written is
skipped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from modelprov._atomic import atomic_write
from modelprov._inputs import parse_json, read_regular
from modelprov.errors import ProvenanceError
from modelprov.reader.tokenizer import Tokenizer

MAGIC = b"MPTOKC2\n"
CACHE_ENV = "MODELPROV_CACHE_DIR"
MAX_ENTRY_BYTES = 256 * 1024 * 1024  # a 1M-token vocabulary packs to ~10 MB
_SECTIONS = ("meta", "ends", "present", "tokens", "merge_ids", "other_ends", "others")
_LENGTH = struct.Struct("<Q")


class _BadEntry(ValueError):
    """A cache entry that is not one this module wrote."""


def cache_dir() -> Path:
    """Where parsed tokenizers are kept: $MODELPROV_CACHE_DIR, else $XDG_CACHE_HOME/modelprov, else
    ~/.cache/modelprov (followed by `/tokenizers`)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "modelprov")
    return Path(root) / "tokenizers"


def cached_tokenizer(sha256: str, name: str, parse: Callable[[], Tokenizer]) -> Tokenizer:
    """The tokenizer whose stored file has digest `sha256`: from the cache when a sound entry exists, else from
    `parse()` (then cached). `name` is set on the result either way."""
    path = cache_dir() / f"{sha256}.bin"
    try:
        tok = unpack(read_regular(path, ProvenanceError, MAX_ENTRY_BYTES))
    except (ProvenanceError, _BadEntry):
        tok = None
    if tok is None:
        tok = parse()
        try:
            with atomic_write(path, "wb") as handle:
                handle.write(pack(tok))
        except OSError:
            pass  # a read-only or full cache folder only costs the next scan the parse
    tok.name = name
    return tok


def pack(tok: Tokenizer) -> bytes:
    """The entry bytes of a tokenizer (deterministic)."""
    by_id = tok.by_id()
    size = max(by_id) + 1 if by_id else 0
    tokens = [by_id.get(i) for i in range(size)]
    merges = [] if tok.merges is None else tok.merges
    ids = [tok.tokens.get(m, -1) for m in merges]
    others = [m for m, i in zip(merges, ids) if i < 0]
    meta = {"source": tok.source, "format": tok.format, "model": tok.model, "encoding": tok.encoding,
            "collisions": tok.collisions, "special_tokens": tok.special_tokens, "ids": size,
            "merges": None if tok.merges is None else len(merges), "other_merges": len(others)}
    sections = [json.dumps(meta, sort_keys=True).encode(), _ends(t or b"" for t in tokens),
                np.array([t is not None for t in tokens], dtype=np.uint8).tobytes(), b"".join(t or b"" for t in tokens),
                np.asarray(ids, dtype="<i8").tobytes(), _ends(others), b"".join(others)]
    body = b"".join(_LENGTH.pack(len(s)) + s for s in sections)
    return MAGIC + hashlib.sha256(body).digest() + body


def unpack(data: bytes) -> Tokenizer:
    """The tokenizer an entry holds; `_BadEntry` for anything `pack` did not write."""
    head = len(MAGIC) + 32
    if data[: len(MAGIC)] != MAGIC or hashlib.sha256(data[head:]).digest() != data[len(MAGIC): head]:
        raise _BadEntry("not a tokenizer cache entry, or altered")
    parts, pos = {}, head
    for key in _SECTIONS:
        if pos + _LENGTH.size > len(data):
            raise _BadEntry("truncated")
        (n,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if n > len(data) - pos:
            raise _BadEntry("section runs past the end")
        parts[key] = data[pos: pos + n]
        pos += n
    try:
        meta = parse_json(parts["meta"], None, what="tokenizer cache meta")
        ids = int(meta["ids"])
        present = np.frombuffer(parts["present"], dtype=np.uint8)
        tokens = _slices(parts["ends"], parts["tokens"], ids)
        if len(present) != ids:
            raise _BadEntry("presence does not match the ids")
        vocab = {t: i for i, (t, p) in enumerate(zip(tokens, present.tolist())) if p}
        merges = None if meta["merges"] is None else _merges(parts, int(meta["merges"]), int(meta["other_merges"]),
                                                             tokens, present)
        return Tokenizer(source=str(meta["source"]), format=str(meta["format"]), model=str(meta["model"]),
                         encoding=str(meta["encoding"]), tokens=vocab,
                         special_tokens={str(k): int(v) for k, v in dict(meta["special_tokens"]).items()},
                         merges=merges, collisions=int(meta["collisions"]))
    except (KeyError, TypeError, ValueError, ProvenanceError) as err:
        raise _BadEntry(str(err)) from None


def _merges(parts: dict[str, bytes], count: int, other_count: int, tokens: list[bytes], present: np.ndarray
            ) -> list[bytes]:
    """The merge order: token ids resolved to the tokens' own bytes objects, the rest from their own section."""
    if len(parts["merge_ids"]) != 8 * count:
        raise _BadEntry("merge count does not match")
    ids = np.frombuffer(parts["merge_ids"], dtype="<i8")
    holes = ids < 0
    if ids.size and (ids.max() >= len(tokens) or not present[ids[~holes]].all()):
        raise _BadEntry("merge names a token the entry lacks")
    others = iter(_slices(parts["other_ends"], parts["others"], other_count))
    if int(holes.sum()) != other_count:
        raise _BadEntry("merge counts do not match")
    return [next(others) if i < 0 else tokens[i] for i in ids.tolist()]


def _ends(items: Iterable[bytes]) -> bytes:
    """Cumulative end offsets (int64) of byte strings laid end to end."""
    return np.cumsum([len(b) for b in items], dtype=np.int64).tobytes()


def _slices(ends_raw: bytes, blob: bytes, count: int) -> list[bytes]:
    """`count` byte strings cut from `blob` at the int64 end offsets `ends_raw`, every offset checked."""
    if len(ends_raw) != 8 * count:
        raise _BadEntry("offset count does not match")
    ends = np.frombuffer(ends_raw, dtype="<i8")
    if count and (ends[0] < 0 or np.any(np.diff(ends) < 0) or ends[-1] != len(blob)):
        raise _BadEntry("offsets out of order or past the data")
    if not count and blob:
        raise _BadEntry("data without offsets")
    bounds = [0, *ends.tolist()]
    return [blob[a:b] for a, b in zip(bounds, bounds[1:])]
