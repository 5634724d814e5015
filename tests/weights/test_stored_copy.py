"""Exact copies stored as the reference is (its float dtype, or its GGUF quantisation) are confirmed by hashing
their stored bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import modelprov.weights.matchers.copies as copies
from modelprov.findings import Reference
from modelprov.index import ReferenceIndex, add_checkpoint
from modelprov.reader import open_checkpoint
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


def _save_gguf_q8(path: Path, sd: dict[str, np.ndarray]) -> Path:
    """The model as GGUF: matrices in Q8_0 blocks, vectors as F32 (what llama.cpp's converters do)."""
    import gguf
    from gguf.quants import quantize

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "bert")
    for name, v in sd.items():
        if v.ndim == 2:
            writer.add_tensor(name, quantize(v, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, v)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_quantised_gguf_copy_is_exact_from_its_stored_blocks(tmp_path, monkeypatch):
    """A GGUF reference keeps the digest of each quantised tensor's stored blocks, so a copy in the same
    quantisation is confirmed by hashing its bytes instead of dequantising it; one changed block falls back."""
    import hashlib

    sd = bert_like(2)
    ref = _save_gguf_q8(tmp_path / "ref" / "model.gguf", sd)
    index = ReferenceIndex.create(tmp_path / "index")
    add_checkpoint(index, ref, Reference("synthetic-bert-q8"))
    [(_, fp)] = index.weight_references()
    name = "encoder.layer.1.intermediate.dense.weight"
    with open_checkpoint(ref) as ckpt:
        info = ckpt.tensor(name)
        start, end = info.byte_range
        with open(ref, "rb") as f:
            f.seek(start)
            stored = f.read(end - start)
    assert fp.tensor(name).digests["stored:Q8_0"] == hashlib.sha256(stored).hexdigest()

    copy = tmp_path / "copy" / "model.gguf"
    copy.parent.mkdir()
    shutil.copyfile(ref, copy)
    nudged = dict(sd)
    nudged[name] = sd[name].copy()
    nudged[name][3, :32] += 0.5  # one Q8_0 block of one row re-quantised differently
    changed = _save_gguf_q8(tmp_path / "nudged" / "model.gguf", nudged)

    decoded: list[str] = []
    real = copies.exact_precision
    monkeypatch.setattr(copies, "exact_precision",
                        lambda blocks, ref, rows: decoded.append(ref["f32"]) or real(blocks, ref, rows))
    report = scan(copy, index, hash_files=False, tokenizer=False, code=False)
    [finding] = [f for f in report.findings if f.kind == "weights"]
    assert finding.verdict == "copied"
    quantised = [n for n, v in sd.items() if v.ndim == 2]
    exact = {m["suspect"]: m["exact"] for m in finding.statistics["matched_tensors"] if m["exact"]}
    assert set(quantised) <= set(exact) and set(exact.values()) == {"f32"}
    assert decoded == []  # Q8_0 blocks and F32 vectors alike confirmed from their stored bytes

    decoded.clear()
    report = scan(changed, index, hash_files=False, tokenizer=False, code=False)
    [finding] = [f for f in report.findings if f.kind == "weights"]
    exact = {m["suspect"]: m["exact"] for m in finding.statistics["matched_tensors"]}
    assert exact.get(name) is None and len(decoded) == 1  # bytes differ: dequantised, and the values differ too
    assert sum(exact.get(n) == "f32" for n in quantised) == len(quantised) - 1
