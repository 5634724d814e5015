"""Every reader normalises real tokenizer files to raw bytes, so one vocabulary compares equal across formats."""

from __future__ import annotations

import io
import json

import pytest
import sentencepiece
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import decoders

from modelprov.reader.tokenizer import TokenizerFileError, find_tokenizer_file
from modelprov.tokenizers import compare_tokenizers, read_tokenizer, token_mapping
from modelprov.reader.tokenizer._normalise import byte_level_to_bytes


def test_qwen_ranks_and_their_hf_conversion_are_identical(tmp_path, qwen_tok, write_tiktoken):
    """tiktoken ranks (base64) and the tokenizer.json transformers converts them to (GPT-2 alphabet) agree."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    first = {t: i for t, i in qwen_tok.tokens.items() if i < 20000}  # a prefix of BPE ranks is itself a BPE
    ranks_file = write_tiktoken(tmp_path / "small.tiktoken", first)
    converted = TikTokenConverter(vocab_file=str(ranks_file)).converted()
    json_file = tmp_path / "tokenizer.json"
    json_file.write_text(converted.to_str(), encoding="utf-8")

    from_ranks, from_json = read_tokenizer(ranks_file), read_tokenizer(json_file)
    assert from_json.encoding == "byte-level" and from_ranks.encoding == "base64"
    assert from_json.tokens == from_ranks.tokens
    assert from_json.merges == from_ranks.merges
    assert from_json.vocabulary_digest() == from_ranks.vocabulary_digest()
    assert compare_tokenizers(from_json, from_ranks).verdict == "identical"


def test_byte_level_decoding_matches_the_tokenizers_library(smollm2_tok, smollm2_gguf):
    """Each SmolLM2 GGUF token decodes to the same bytes as `tokenizers`' own ByteLevel decoder gives."""
    from gguf import GGUFReader

    texts = GGUFReader(smollm2_gguf).fields["tokenizer.ggml.tokens"].contents()
    decoder = decoders.ByteLevel()
    checked = 0
    for text, i in ((t, i) for i, t in enumerate(texts) if t not in smollm2_tok.special_tokens):
        raw = byte_level_to_bytes(text)
        try:
            expected = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # partial UTF-8 sequences: the library substitutes U+FFFD, nothing to compare
        assert decoder.decode([text]) == expected
        assert smollm2_tok.tokens[raw] == i
        checked += 1
    assert checked > 45000
    assert smollm2_tok.merges is not None and len(smollm2_tok.merges) > 48000
    assert "<|im_start|>" in smollm2_tok.special_tokens


def test_bert_vocab_txt_and_tokenizer_json_are_one_tokenizer(minilm_dir, bert_tok):
    from_txt = read_tokenizer(minilm_dir / "vocab.txt")
    assert from_txt.digest() == bert_tok.digest()
    assert set(bert_tok.special_tokens) == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    # WordPiece word starts carry a space, continuations do not (the sentencepiece convention)
    assert b" the" in bert_tok.tokens and b"ing" in bert_tok.tokens and b" ing" in bert_tok.tokens
    assert bert_tok.tokens[b"ing"] != bert_tok.tokens[b" ing"]


def test_folder_discovery_prefers_tokenizer_json(minilm_dir):
    assert find_tokenizer_file(minilm_dir).name == "tokenizer.json"
    assert read_tokenizer(minilm_dir).format == "tokenizer.json"


def _train_sentencepiece(model_type: str) -> bytes:
    text = ("The quick brown fox jumps over the lazy dog. Tokenizers split text into pieces. "
            "Provenance audits where models come from. 模型来源审计。 ") * 40
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(text.split(". ")), model_writer=out, vocab_size=300, model_type=model_type,
        byte_fallback=True, character_coverage=1.0, minloglevel=2)
    return out.getvalue()


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_model(tmp_path, model_type):
    blob = _train_sentencepiece(model_type)
    (tmp_path / "tokenizer.model").write_bytes(blob)
    tok = read_tokenizer(tmp_path)
    processor = sentencepiece.SentencePieceProcessor(model_proto=blob)
    assert set(tok.special_tokens) == {"<unk>", "<s>", "</s>"}
    by_id = tok.by_id()
    text = "The lazy fox audits tokenizers. 狐狸审计模型 ✓"  # rare characters fall back to byte pieces
    ids = processor.encode(text)
    assert any(processor.is_byte(i) for i in ids)
    pieces = []
    for i in ids:
        if i not in by_id:  # a byte piece whose byte is also a regular piece: counted as a collision
            assert processor.is_byte(i) and tok.collisions > 0
            pieces.append(bytes([int(processor.id_to_piece(i)[3:5], 16)]))
        else:
            pieces.append(by_id[i])
    assert b"".join(pieces) == (" " + text).encode("utf-8")  # sentencepiece's dummy prefix is the leading space
    assert len(tok.tokens) + tok.collisions + len(tok.special_tokens) == processor.get_piece_size()


# --- malformed files: one clear error naming the file ------------------------------------------------------


def test_bad_base64_line_in_tiktoken(tmp_path, qwen_tiktoken):
    lines = qwen_tiktoken.read_bytes().splitlines()[:100]
    lines[41] = b"not*base64! 41"
    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(b"\n".join(lines))
    with pytest.raises(TokenizerFileError) as err:
        read_tokenizer(bad)
    assert err.value.path == str(bad)
    assert "line 42" in err.value.problem and "base64" in err.value.problem


def test_tokenizer_json_not_json(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": {"type": "BPE", "vocab": {"a": 0}', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="not valid JSON"):
        read_tokenizer(tmp_path)


def test_tokenizer_json_without_model(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps({"version": "1.0", "added_tokens": []}), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="no 'model' section"):
        read_tokenizer(bad)


def test_tokenizer_json_with_bad_merge(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b c"]}}))
    with pytest.raises(TokenizerFileError, match="merge 0"):
        read_tokenizer(bad)


def test_truncated_sentencepiece_model(tmp_path):
    blob = _train_sentencepiece("unigram")
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(TokenizerFileError) as err:
        read_tokenizer(bad)
    assert err.value.path == str(bad) and "sentencepiece" in err.value.problem


def test_truncated_gguf(tmp_path, smollm2_gguf):
    bad = tmp_path / "model.gguf"
    with open(smollm2_gguf, "rb") as handle:
        bad.write_bytes(handle.read(100_000))
    with pytest.raises(TokenizerFileError, match="GGUF"):
        read_tokenizer(bad)


def test_folder_without_tokenizer(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TokenizerFileError, match="no tokenizer file"):
        read_tokenizer(tmp_path)


def test_token_mapping_pairs_shared_strings(deepseek_tok, qwen_tok):
    mapping = token_mapping(deepseek_tok, qwen_tok)
    shared = deepseek_tok.tokens.keys() & qwen_tok.tokens.keys()
    assert len(mapping) - int(mapping.special.sum()) == len(shared)
    for s, r, t, special in zip(mapping.suspect_ids[:500], mapping.reference_ids[:500], mapping.tokens[:500],
                                mapping.special[:500]):
        if not special:
            assert deepseek_tok.tokens[t] == s and qwen_tok.tokens[t] == r
    assert list(mapping.suspect_ids) == sorted(mapping.suspect_ids)


_CORPUS = ["Provenance audits where a model's weights, tokenizer and code came from.",
           "The quick brown fox jumps over the lazy dog; tokenizers split text into pieces.",
           "模型来源审计 checks reuse of Qwen, DeepSeek and Llama tokenizers.", "  indented   code\n\tline"] * 50


def _bytes_of_encoding(tok, ids) -> bytes:
    by_id = tok.by_id()
    return b"".join(by_id[i] for i in ids)


def test_byte_level_bpe_trained_by_tokenizers_in_both_file_layouts(tmp_path):
    """vocab.json + merges.txt and tokenizer.json of one trained GPT-2-style BPE read as one tokenizer,
    and the bytes of the ids the library encodes reproduce the text exactly."""
    from tokenizers import ByteLevelBPETokenizer

    trained = ByteLevelBPETokenizer()
    trained.train_from_iterator(_CORPUS, vocab_size=400, min_frequency=1, show_progress=False)
    (tmp_path / "split").mkdir()
    trained.save_model(str(tmp_path / "split"))
    trained.save(str(tmp_path / "tokenizer.json"))
    from_json = read_tokenizer(tmp_path / "tokenizer.json")
    from_split = read_tokenizer(tmp_path / "split")
    assert from_split.format == "vocab.json+merges.txt"
    assert from_json.vocabulary_digest() == from_split.vocabulary_digest()
    text = "Provenance of the lazy 模型 tokenizer"
    assert _bytes_of_encoding(from_json, trained.encode(text).ids) == text.encode("utf-8")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_metaspace_tokenizer_json_trained_by_tokenizers(tmp_path, kind):
    from tokenizers import SentencePieceBPETokenizer, SentencePieceUnigramTokenizer

    trained = SentencePieceBPETokenizer() if kind == "bpe" else SentencePieceUnigramTokenizer()
    trained.train_from_iterator(_CORPUS, vocab_size=300, show_progress=False)
    trained.save(str(tmp_path / "tokenizer.json"))
    tok = read_tokenizer(tmp_path)
    assert tok.encoding == "metaspace" and tok.model == kind
    text = "The lazy fox audits tokenizers"
    assert _bytes_of_encoding(tok, trained.encode(text).ids) == (" " + text).encode("utf-8")


@settings(deadline=None)  # the first example imports transformers
@given(st.binary(min_size=1, max_size=40))
def test_byte_level_decoding_inverts_gpt2_encoding(raw):
    """Any byte string written in GPT-2's alphabet (transformers' table) decodes back to itself."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = bytes_to_unicode()
    assert byte_level_to_bytes("".join(table[b] for b in raw)) == raw
