"""What a finding says about structure, on small synthetic Llamas: MoE upcycling (three naming styles),
vocabulary growth, quantised storage and depth changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.detection import derive
from modelprov.findings import Reference
from modelprov.index import ReferenceIndex, add_checkpoint
from modelprov.weights._findings import combine_counted
from modelprov.scan import scan

CONFIG = {**derive.TINY_LLAMA_CONFIG, "num_hidden_layers": 4, "intermediate_size": 256, "vocab_size": 512}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A random tiny Llama saved as a checkpoint, and an index holding it as the only reference."""
    root = tmp_path_factory.mktemp("tiny")
    sd = derive.random_llama(CONFIG, seed=11)
    derive.save_checkpoint(sd, CONFIG, root / "ref")
    add_checkpoint(ReferenceIndex.create(root / "index"), root / "ref", Reference("tiny-llama", country="US"))
    return sd, root / "index"


def _finding(path: Path, index: Path):
    [finding] = [f for f in scan(path, index, hash_files=False, tokenizer=False, code=False).findings
                 if f.kind == "weights"]
    return finding


@pytest.mark.parametrize("naming", ["mixtral", "qwen_moe", "deepseek"])
def test_moe_upcycling_is_named(naming: str, tiny, tmp_path: Path):
    sd, index = tiny
    out = derive.save_checkpoint(derive.upcycle_moe(sd, 4, 0.01, naming, seed=1), CONFIG, tmp_path / "moe")
    finding = _finding(out, index)
    assert finding.subject == "(whole model)" and finding.statistics["layers_matched"] == 4
    assert any("MoE upcycling" in t and "4 experts per layer (4 layers)" in t for t in finding.transformations)


def test_dense_copy_is_not_called_moe(tiny, tmp_path: Path):
    sd, index = tiny
    finding = _finding(derive.save_checkpoint(sd, CONFIG, tmp_path / "copy"), index)
    assert finding.verdict == "copied" and not any("MoE" in t for t in finding.transformations)


def test_vocabulary_growth_and_depth_upscaling_are_named(tiny, tmp_path: Path):
    sd, index = tiny
    grown = derive.upscale_depth(derive.extend_vocab(sd, 64, seed=2), [(0, 3), (1, 4)])
    out = derive.save_checkpoint(grown, derive.fit_config(grown, CONFIG), tmp_path / "grown")
    finding = _finding(out, index)
    text = " | ".join(finding.transformations)
    assert "vocabulary extended by 64 tokens" in text
    assert "stacked copy" in text


def test_quantised_storage_is_named(tiny, tmp_path: Path):
    sd, index = tiny
    out = derive.to_gguf(derive.save_checkpoint(sd, CONFIG, tmp_path / "hf"), tmp_path / "tiny.Q8_0.gguf", "Q8_0")
    finding = _finding(out, index)
    assert any(t.startswith("stored quantised as Q8_0") for t in finding.transformations)


def test_counted_lines_are_summed_not_repeated():
    lines = ["names differ (1/1 tensors)", "transposed (2 tensors)", "names differ (20/30 tensors)",
             "transposed (3 tensors)", "plain"]
    assert combine_counted(lines) == ["names differ (21/31 tensors)", "transposed (5 tensors)", "plain"]
