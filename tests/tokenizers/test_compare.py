"""Relations between real tokenizers and tokenizers derived from them: extended, pruned, modified, unrelated."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import tiktoken.load
from tokenizers import Tokenizer as HFTokenizer

from modelprov.tokenizers import Tokenizer, compare_tokenizers, read_tokenizer, scan_tokenizers, token_mapping
from modelprov.reader.tokenizer._sketch import estimate_jaccard, minhash


def _new_tokens(base: dict[bytes, int], count: int, seed: int = 0) -> list[bytes]:
    """`count` tokens absent from `base`, each the merge of two existing multi-byte tokens (as BPE extends)."""
    rng = np.random.default_rng(seed)
    pool = sorted(t for t in base if len(t) > 1)
    out: list[bytes] = []
    seen = set(base)
    while len(out) < count:
        a, b = rng.integers(0, len(pool), size=2)
        token = pool[a] + pool[b]
        if token not in seen:
            seen.add(token)
            out.append(token)
    return out


@pytest.fixture(scope="module")
def extended_qwen_dir(tmp_path_factory, qwen_tok, write_tiktoken):
    """A checkpoint folder whose tokenizer is Qwen's 151,643 ranks plus 20,000 appended tokens."""
    ranks = dict(qwen_tok.tokens)
    for k, token in enumerate(_new_tokens(ranks, 20_000)):
        ranks[token] = len(qwen_tok.tokens) + k
    folder = tmp_path_factory.mktemp("extended-qwen")
    write_tiktoken(folder / "extended.tiktoken", ranks)
    return folder


def test_extended_qwen_vocabulary_is_classified_extended(extended_qwen_dir, qwen_tok):
    suspect = read_tokenizer(extended_qwen_dir)
    result = compare_tokenizers(suspect, qwen_tok)
    assert result.verdict == "extended"
    assert result.shared_tokens == 151_643 and result.suspect_tokens == 171_643
    assert result.reference_in_suspect == 1.0 and result.id_agreement == 1.0
    assert result.merges is not None and result.merges.common_prefix == len(qwen_tok.merges)
    # the reverse direction: Qwen is the extended tokenizer with its added tokens removed
    assert compare_tokenizers(qwen_tok, suspect).verdict == "pruned"
    mapping = token_mapping(suspect, qwen_tok)
    assert len(mapping) == 151_643 and mapping.same_id_share == 1.0


def test_scan_finds_extended_qwen_in_the_shipped_index(extended_qwen_dir):
    findings, details = scan_tokenizers(extended_qwen_dir)
    assert [(f.kind, f.verdict, f.reference.name) for f in findings] == [("tokenizer", "extended", "qwen3")]
    finding = findings[0]
    assert finding.reference.org == "Alibaba Cloud (Qwen)" and finding.reference.country == "CN"
    assert finding.subject == "extended.tiktoken"
    assert "20,000 tokens added" in finding.transformations[0]
    assert finding.statistics["shared_tokens"] == 151_643
    # Qwen3 is Apache-2.0: no license file beside the extended tokenizer, so §4(a) is not met
    assert [(o.license, o.met) for o in finding.license_obligations] == [("Apache-2.0", False), ("Apache-2.0", None)]
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs/schema/report.schema.json").read_text())
    jsonschema.validate(json.loads(json.dumps(finding.to_dict())), {"$ref": "#/$defs/finding", "$defs": schema["$defs"]})
    json.dumps(details)  # plain JSON types only
    by_ref = {c["reference"]: c for c in details["comparisons"]}
    assert set(by_ref) == {"qwen3", "qwen3.5", "deepseek-v3", "smollm2", "bert-base-uncased"}
    assert by_ref["deepseek-v3"]["verdict"] == "unrelated" and by_ref["bert-base-uncased"]["verdict"] == "unrelated"


def test_deepseek_vs_qwen_unrelated_with_real_overlap(deepseek_tok, qwen_tok, deepseek_tokenizer_json, qwen_tiktoken):
    result = compare_tokenizers(deepseek_tok, qwen_tok)
    assert result.verdict == "unrelated"
    # The overlap, recomputed with the libraries' own loaders: tiktoken for Qwen, tokenizers for DeepSeek.
    qwen_ranks = tiktoken.load.load_tiktoken_bpe(str(qwen_tiktoken))
    hf = HFTokenizer.from_file(str(deepseek_tokenizer_json))
    added = {t.content for t in hf.get_added_tokens_decoder().values()}
    byte_of = _gpt2_alphabet()
    deepseek_bytes = {bytes(byte_of[ch] for ch in text) for text in hf.get_vocab(with_added_tokens=False)
                      if text not in added}
    shared = deepseek_bytes & set(qwen_ranks)
    assert result.shared_tokens == len(shared)
    assert result.jaccard == pytest.approx(len(shared) / len(deepseek_bytes | set(qwen_ranks)))
    # Independent BPE vocabularies share much (this is why overlap alone is no evidence) but not ids or merge order.
    assert 0.3 < result.jaccard < 0.6
    assert result.id_agreement < 0.01
    assert result.merges is not None and result.merges.rank_correlation < 0.9 and result.merges.common_prefix < 10
    assert abs(result.jaccard_estimate - result.jaccard) < 0.1


def _gpt2_alphabet() -> dict[str, int]:
    """GPT-2's printable character -> byte table, from transformers (not from the code under test)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {ch: b for b, ch in bytes_to_unicode().items()}


def test_pruned_qwen_with_renumbered_ids(qwen_tok, tmp_path, write_tiktoken):
    rng = np.random.default_rng(1)
    multi = [t for t in qwen_tok.tokens if len(t) > 1]
    dropped = set(rng.choice(len(multi), size=40_000, replace=False).tolist())
    keep_multi = {t for k, t in enumerate(multi) if k not in dropped}
    kept = [t for t, _ in sorted(qwen_tok.tokens.items(), key=lambda kv: kv[1]) if len(t) == 1 or t in keep_multi]
    suspect = read_tokenizer(write_tiktoken(tmp_path / "pruned.tiktoken", {t: i for i, t in enumerate(kept)}))
    result = compare_tokenizers(suspect, qwen_tok)
    assert result.verdict == "pruned"
    assert result.suspect_in_reference == 1.0 and result.shared_tokens == len(qwen_tok.tokens) - 40_000
    assert result.id_agreement < 0.5  # renumbered: only ids before the first removed token survive
    assert result.merges.rank_correlation == pytest.approx(1.0)


def test_pruned_and_shuffled_wordpiece_without_merges_is_pruned(bert_tok):
    """No merges and no ids kept: only near-total containment links a pruned, reordered WordPiece vocabulary."""
    rng = np.random.default_rng(4)
    tokens = list(bert_tok.tokens)
    kept = [tokens[i] for i in rng.choice(len(tokens), size=20_000, replace=False)]
    suspect = Tokenizer(source="pruned", format="vocab.txt", model="wordpiece", encoding="wordpiece",
                        tokens={t: i for i, t in enumerate(kept)})
    result = compare_tokenizers(suspect, bert_tok)
    assert result.verdict == "pruned" and result.id_agreement < 0.01
    # the same size drawn mostly from elsewhere is no relation, though most tokens are shared
    foreign = Tokenizer(source="mixed", format="vocab.txt", model="wordpiece", encoding="wordpiece",
                        tokens={t: i for i, t in enumerate(kept[:17_000] + _new_tokens(bert_tok.tokens, 3_000))})
    assert compare_tokenizers(foreign, bert_tok).verdict == "unrelated"


def test_reordered_ids_are_modified(qwen_tok):
    rng = np.random.default_rng(2)
    tokens = list(qwen_tok.tokens)
    ids = rng.permutation(len(tokens))
    shuffled = Tokenizer(source="shuffled", format="tiktoken", model="bpe", encoding="base64",
                         tokens={t: int(i) for t, i in zip(tokens, ids)}, merges=list(qwen_tok.merges))
    result = compare_tokenizers(shuffled, qwen_tok)
    assert result.verdict == "modified"
    assert result.jaccard == 1.0 and result.id_agreement < 0.01
    assert any("shared tokens at other ids" in r for r in result.reasons)


def test_bert_vs_qwen_unrelated(bert_tok, qwen_tok):
    result = compare_tokenizers(bert_tok, qwen_tok)
    assert result.verdict == "unrelated" and result.merges is None
    assert result.jaccard < 0.2


def test_identical_after_format_change_but_special_tokens_reported(qwen_tok):
    with_specials = dataclasses.replace(qwen_tok, special_tokens={"<|endoftext|>": 151643, "<extra>": 151644})
    result = compare_tokenizers(with_specials, qwen_tok)
    assert result.verdict == "identical"
    assert result.special_tokens.only_in_suspect == ["<|endoftext|>", "<extra>"]
    assert "special tokens" in result.summary()


def test_minhash_is_deterministic_and_order_free(bert_tok):
    tokens = list(bert_tok.tokens)
    a = minhash(tokens)
    b = minhash(list(reversed(tokens)))
    assert a == b and len(a) == 256
    half = minhash(tokens[: len(tokens) // 2])
    assert abs(estimate_jaccard(a, half) - 0.5) < 0.1


def test_tiny_shared_alphabet_is_not_a_relation(qwen_tok):
    """A 300-token byte-level vocabulary is contained in any byte-level BPE; that alone is no lineage."""
    small = {t: i for t, i in qwen_tok.tokens.items() if i < 300}
    tiny = Tokenizer(source="tiny", format="tiktoken", model="bpe", encoding="base64",
                     tokens={t: i for i, t in enumerate(sorted(small, key=lambda t: (-len(t), t)))}, merges=None)
    assert compare_tokenizers(tiny, qwen_tok).verdict == "unrelated"


def test_scan_of_a_gguf_checkpoint_reads_its_embedded_tokenizer(smollm2_gguf):
    """Through the checkpoint reader's metadata, as `provenance scan` passes it (one parse of the file)."""
    from modelprov.reader import open_checkpoint

    with open_checkpoint(smollm2_gguf) as checkpoint:
        metadata = checkpoint.metadata
    findings, details = scan_tokenizers(smollm2_gguf, gguf_metadata=metadata)
    assert [(f.verdict, f.reference.name) for f in findings] == [("identical", "smollm2")]
    assert findings[0].subject == smollm2_gguf.name
    assert details["fingerprint"]["format"] == "gguf"


def test_scan_sees_the_license_file_beside_the_tokenizer(tmp_path, minilm_dir):
    import shutil

    shutil.copy(minilm_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "LICENSE").write_text("Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n"
                                      "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION\n")
    findings, _ = scan_tokenizers(tmp_path)
    assert [(f.verdict, f.reference.name) for f in findings] == [("identical", "bert-base-uncased")]
    assert [(o.obligation.split(":")[0], o.met) for o in findings[0].license_obligations] == [("Apache-2.0 §4(a)", True)]


def test_scan_without_tokenizer_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    findings, details = scan_tokenizers(tmp_path)
    assert findings == [] and details["tokenizer"] is None


def test_scan_with_an_index_without_tokenizers(tmp_path, minilm_dir):
    """A weights-only index: the tokenizer is still fingerprinted, no finding, and the reason is given."""
    findings, details = scan_tokenizers(minilm_dir, index_dir=tmp_path)
    assert findings == [] and details["comparisons"] == []
    assert details["fingerprint"]["regular_tokens"] == 30517 and "no tokenizers" in details["reason"]


def test_vocabulary_extended_through_added_tokens(tmp_path, minilm_dir, bert_tok):
    """`tokenizer.add_tokens` puts new words in added_tokens, not the model vocabulary: still an extension."""
    hf = HFTokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    words = [f"provenancefeature{k}" for k in range(500)]
    assert hf.add_tokens(words) == 500
    hf.save(str(tmp_path / "tokenizer.json"))
    result = compare_tokenizers(read_tokenizer(tmp_path), bert_tok)
    assert result.verdict == "extended" and len(result.special_tokens.only_in_suspect) == 500
    # a handful of chat-template tokens leaves the verdict at identical (reported beside it)
    few = HFTokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    few.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    few.save(str(tmp_path / "few.json"))
    assert compare_tokenizers(read_tokenizer(tmp_path / "few.json"), bert_tok).verdict == "identical"


def test_merge_order_ties_do_not_break_identity(qwen_tok):
    """Two adjacent merges listed the other way round (as converters may) keep the tokenizer identical;
    a merge order reversed from rank 1000 on does not."""
    swapped = list(qwen_tok.merges)
    swapped[500], swapped[501] = swapped[501], swapped[500]
    assert compare_tokenizers(dataclasses.replace(qwen_tok, merges=swapped), qwen_tok).verdict == "identical"
    scrambled = swapped[:1000] + swapped[1000:][::-1]
    result = compare_tokenizers(dataclasses.replace(qwen_tok, merges=scrambled), qwen_tok)
    assert result.verdict == "modified" and "merge order differs" in result.reasons
