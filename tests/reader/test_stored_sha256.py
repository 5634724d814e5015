"""`stored_sha256`: the sha256 of a plain-float tensor's stored bytes is its value digest at that precision; of a
GGUF quantised tensor, the digest of its blocks as stored."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import save_file

from modelprov.reader import SuspectReader, open_checkpoint
from modelprov.weights.fingerprint import ValueDigests


def _digest(values: np.ndarray, kind: str) -> str:
    d = ValueDigests()
    d.update(values)
    return d.hexdigests()[kind]


def test_plain_floats_hash_to_their_value_digest(tmp_path):
    w = torch.randn(48, 40)
    save_file({"a": w, "b": w.to(torch.bfloat16), "c": w.to(torch.float16), "ids": torch.arange(5)},
              str(tmp_path / "model.safetensors"))
    with open_checkpoint(tmp_path) as ckpt:
        reader = SuspectReader(ckpt)
        for name, kind in (("a", "f32"), ("b", "bf16"), ("c", "f16")):
            assert reader.stored_sha256(name) == _digest(ckpt.read_rows(name), kind), name
        assert reader.bytes_read == 48 * 40 * (4 + 2 + 2)
        assert reader.stored_sha256("ids") is None and reader.bytes_read == 48 * 40 * 8


def test_gguf_floats_hash_to_their_value_digest_and_blocks_to_their_bytes(smollm2_gguf):
    import hashlib

    with open_checkpoint(smollm2_gguf) as ckpt:
        reader = SuspectReader(ckpt)
        norm = "blk.0.attn_norm.weight"
        assert ckpt.tensor(norm).dtype == "F32"
        assert reader.stored_sha256(norm) == _digest(ckpt.read_rows(norm), "f32")
        info = ckpt.tensor("blk.0.ffn_down.weight")
        assert info.dtype == "Q4_1"
        with open(smollm2_gguf, "rb") as f:
            f.seek(info.byte_range[0])
            blocks = f.read(info.byte_range[1] - info.byte_range[0])
        assert reader.stored_sha256(info.name) == hashlib.sha256(blocks).hexdigest()
        assert reader.bytes_read == ckpt.tensor(norm).nbytes + len(blocks)
