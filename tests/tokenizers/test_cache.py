"""The parsed-tokenizer cache: loading from it gives the tokenizer parsing gives, and a bad entry is never used."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest

from modelprov.tokenizers import Tokenizer, load_reference_entries
from modelprov.tokenizers import reference
from modelprov.tokenizers._cache import MAGIC, cache_dir, pack, unpack

SHIPPED = Path(__file__).resolve().parents[2] / "reference_index"


def _fields(tok: Tokenizer) -> tuple:
    return (tok.source, tok.format, tok.model, tok.encoding, tok.tokens, tok.special_tokens, tok.merges,
            tok.collisions, tok.name)


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPROV_CACHE_DIR", str(tmp_path / "cache"))
    reference._load_stored.cache_clear()
    yield tmp_path / "cache" / "tokenizers"
    reference._load_stored.cache_clear()


def test_every_shipped_reference_round_trips():
    for e in load_reference_entries(SHIPPED):
        parsed = reference._parse_stored((SHIPPED / "tokenizers" / e.file).read_bytes(), Path(e.file), e.reference.name)
        back = unpack(pack(parsed))
        back.name = parsed.name
        assert _fields(back) == _fields(parsed), e.reference.name


def test_holes_duplicates_and_merge_lists_survive():
    tok = Tokenizer("x", "tokenizer.json", "bpe", "byte-level", {b"a": 0, b"b": 3, b"ab": 4, b"": 5},
                    {"<s>": 1}, merges=[b"ab", b"zz"], collisions=2)
    back = unpack(pack(tok))
    assert _fields(back)[:-1] == _fields(tok)[:-1]
    keys = {id(t) for t in back.tokens}
    assert id(back.merges[0]) in keys and id(back.merges[1]) not in keys  # a merge that is a token shares its bytes
    assert unpack(pack(Tokenizer("y", "vocab.txt", "wordpiece", "wordpiece", {}))).tokens == {}


def test_second_load_reads_the_entry_not_the_gzip(fresh_cache, monkeypatch):
    entry = next(e for e in load_reference_entries(SHIPPED) if e.reference.name == "smollm2")
    first = entry.load()
    assert (fresh_cache / f"{entry.sha256}.bin").is_file()
    reference._load_stored.cache_clear()
    monkeypatch.setattr(reference, "_parse_stored", lambda *a: pytest.fail("parsed although cached"))
    assert _fields(entry.load()) == _fields(first)


def test_altered_or_hostile_entries_are_ignored_and_rewritten(fresh_cache):
    entry = next(e for e in load_reference_entries(SHIPPED) if e.reference.name == "bert-base-uncased")
    good = entry.load()
    path = fresh_cache / f"{entry.sha256}.bin"
    blob = bytearray(path.read_bytes())
    body = bytearray(blob[len(MAGIC) + 32:])
    # offsets past the data, with the entry's own digest recomputed: the bounds checks, not the digest, refuse it
    meta_len = struct.unpack_from("<Q", body, 0)[0]
    ends_at = 8 + meta_len + 8
    body[ends_at: ends_at + 8] = struct.pack("<q", 1 << 40)
    forged = MAGIC + hashlib.sha256(bytes(body)).digest() + bytes(body)
    for bad in (forged, bytes(blob[:-1]) + bytes([blob[-1] ^ 1]), b"", MAGIC):
        path.write_bytes(bad)
        reference._load_stored.cache_clear()
        assert _fields(entry.load()) == _fields(good)
        assert path.read_bytes() == bytes(blob)  # parsed again and rewritten
    path.unlink()
    os.mkfifo(path)  # a FIFO would block a plain open(): refused without opening, parsed instead
    reference._load_stored.cache_clear()
    assert _fields(entry.load()) == _fields(good)


def test_unwritable_cache_costs_only_the_parse(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MODELPROV_CACHE_DIR", str(blocker))  # a file: no folder can be made under it
    reference._load_stored.cache_clear()
    try:
        entry = next(e for e in load_reference_entries(SHIPPED) if e.reference.name == "smollm2")
        assert len(entry.load().tokens) == entry.fingerprint["regular_tokens"]
    finally:
        reference._load_stored.cache_clear()
    assert cache_dir() == blocker / "tokenizers"
