"""GGUF reading against the gguf library: the real SmolLM2-135M Q4_1 file and synthetic files of every required type."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from modelprov.reader import open_checkpoint

from .conftest import write_gguf

QTYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"]


def test_listing_matches_gguf_library(smollm2, smollm2_reader) -> None:
    infos = {t.name: t for t in smollm2.tensors()}
    assert list(infos) == [t.name for t in smollm2_reader.tensors]
    for t in smollm2_reader.tensors:
        info = infos[t.name]
        assert info.shape == tuple(reversed([int(d) for d in t.shape]))  # PyTorch order
        assert info.numel == int(t.n_elements)  # logical parameters, not bytes
        assert info.dtype == t.tensor_type.name
        assert info.byte_range == (int(t.data_offset), int(t.data_offset) + int(t.n_bytes))
    assert smollm2.format == "gguf"
    by_type: dict[str, int] = {}
    for t in smollm2_reader.tensors:
        if len(t.shape) >= 2:
            by_type[t.tensor_type.name] = by_type.get(t.tensor_type.name, 0) + int(t.n_elements)
    assert smollm2.quantisation == max(by_type, key=by_type.get) == "Q4_1"


def test_metadata_and_config_come_from_the_file(smollm2, smollm2_reader) -> None:
    fields = smollm2_reader.fields
    arch = fields["general.architecture"].contents()
    assert smollm2.metadata["general.architecture"] == arch
    assert smollm2.config["num_hidden_layers"] == fields[f"{arch}.block_count"].contents()
    assert smollm2.config["hidden_size"] == fields[f"{arch}.embedding_length"].contents()
    assert smollm2.metadata["tokenizer.ggml.tokens"] == fields["tokenizer.ggml.tokens"].contents()
    assert smollm2.config["vocab_size"] == len(fields["tokenizer.ggml.tokens"].contents())


def test_rows_equal_full_dequantisation(smollm2, smollm2_reader) -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for t in smollm2_reader.tensors:
        if t.tensor_type.name in seen and not t.name.startswith("blk.1."):
            continue
        seen.add(t.tensor_type.name)
        full = gguf.quants.dequantize(t.data, t.tensor_type).reshape(smollm2.tensor(t.name).rows, -1)
        rows = rng.choice(full.shape[0], size=min(5, full.shape[0]), replace=False).tolist() + [0]
        np.testing.assert_array_equal(smollm2.read_rows(t.name, rows), full[rows])
        np.testing.assert_array_equal(smollm2.read_rows(t.name, slice(1, 3)), full[1:3])
    assert {"Q4_1", "Q8_0", "F32"} <= seen


def _raw_tensor(qtype: str, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    q = gguf.GGMLQuantizationType[qtype]
    values = rng.standard_normal((rows, cols)).astype(np.float32)
    if qtype == "F32":
        return values
    if qtype == "F16":
        return values.astype(np.float16)
    try:
        return gguf.quants.quantize(values, q)
    except NotImplementedError:  # K-quants: the library dequantises but cannot quantise; random blocks instead
        block, type_size = gguf.GGML_QUANT_SIZES[q]
        # bytes below 0x7C keep every embedded fp16 scale finite (exponent < 31)
        return rng.integers(0, 0x7C, (rows, cols // block * type_size), dtype=np.uint8)


def test_every_required_type_reads_rows_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows, cols = 12, 512
    tensors = {f"blk.0.{q.lower()}.weight": (q, _raw_tensor(q, rows, cols, rng)) for q in QTYPES}
    write_gguf(tmp_path / "all.gguf", tensors)
    reader = gguf.GGUFReader(tmp_path / "all.gguf")
    with open_checkpoint(tmp_path / "all.gguf") as ckpt:
        assert {t.dtype for t in ckpt.tensors()} == set(QTYPES)
        for t in reader.tensors:
            full = gguf.quants.dequantize(t.data, t.tensor_type).reshape(rows, cols)
            assert ckpt.tensor(t.name).shape == (rows, cols)
            np.testing.assert_array_equal(ckpt.read_rows(t.name, [11, 2, 5]), full[[11, 2, 5]])
            np.testing.assert_array_equal(ckpt.read(t.name), full)
