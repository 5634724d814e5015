"""Exact copies stored in the reference's own float dtype are confirmed by hashing their stored bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

import modelprov.weights.matchers.copies as copies
from modelprov.findings import Reference
from modelprov.index import ReferenceIndex, add_checkpoint
from modelprov.scan import scan
from tests.weights.synthetic import bert_like


def _save_bf16(folder: Path, sd: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))


def test_bf16_copy_is_exact_from_stored_bytes_and_a_changed_tensor_falls_back(tmp_path, monkeypatch):
    sd = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in bert_like(1).items()}
    _save_bf16(tmp_path / "ref", sd)
    index = ReferenceIndex.create(tmp_path / "index")
    add_checkpoint(index, tmp_path / "ref", Reference("synthetic-bert-bf16"))
    shutil.copytree(tmp_path / "ref", tmp_path / "copy")
    nudged_name = "encoder.layer.1.intermediate.dense.weight"
    nudged = dict(sd)
    bits = nudged[nudged_name].clone().view(torch.int16)
    bits[3, 7] += 1  # one value one bf16 step away: the sketch cannot tell, the digests must
    nudged[nudged_name] = bits.view(torch.bfloat16)
    _save_bf16(tmp_path / "nudged", nudged)

    converted: list[str] = []
    real = copies.exact_precision
    monkeypatch.setattr(copies, "exact_precision",
                        lambda blocks, ref, rows: converted.append(ref["f32"]) or real(blocks, ref, rows))

    report = scan(tmp_path / "copy", index, hash_files=False, tokenizer=False, code=False)
    [finding] = [f for f in report.findings if f.kind == "weights"]
    assert finding.verdict == "copied"
    assert converted == []  # every tensor confirmed from its stored bytes, nothing converted to float
    exact = {m["suspect"]: m["exact"] for m in finding.statistics["matched_tensors"] if m["exact"]}
    assert len(exact) >= 24 and set(exact.values()) == {"f32"}

    report = scan(tmp_path / "nudged", index, hash_files=False, tokenizer=False, code=False)
    [finding] = [f for f in report.findings if f.kind == "weights"]
    exact = {m["suspect"]: m["exact"] for m in finding.statistics["matched_tensors"]}
    assert exact[nudged_name] is None and len(converted) == 1  # bytes differ: value digests decided, and differ
    assert sum(v == "f32" for v in exact.values()) >= 23
