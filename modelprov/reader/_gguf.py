"""GGUF checkpoints (llama.cpp) read lazily: our bounded header parser (`_gguf_format.py`) lists tensors, rows are
read and dequantised (`gguf.quants`) on demand.

Shapes are exposed in PyTorch order (GGUF's `ne` reversed), so a row is one output feature and every row is
a whole number of quantisation blocks; `read_rows` reads and dequantises only those rows' blocks.
Names stay GGUF-native (`blk.3.attn_q.weight`). llama.cpp's conversion permutes the rows of the Q and K
projections of Llama-family models for its rotary layout; the reader does NOT undo that (matching does).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelprov.errors import CheckpointError
from ._base import CheckpointFile, RowSelection, TensorInfo
from ._gguf_format import GgufMetadata, read_header
from ._rounding import GGUF_BLOCK_ROUNDING, Rounded, gguf_rounding, gguf_values
from ._rows import read_raw_rows, read_row_runs, stored_sha256
from ._table import TableCheckpoint

_PLAIN = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I8": "i1", "I16": "<i2", "I32": "<i4", "I64": "<i8"}
_DECODE_CHUNK_BYTES = 1 << 22  # stored bytes decoded per pass (bounds the decoders' temporaries to ~100 MB)


class GgufCheckpoint(TableCheckpoint):
    """One GGUF file: tensors in PyTorch-order shapes with their GGML type as dtype, metadata as `metadata`."""

    format = "gguf"

    def __init__(self, path: Path, side_files: list[CheckpointFile]) -> None:
        import gguf  # deferred: gguf takes ~0.3 s to import; only GGUF checkpoints need it (to dequantise)

        super().__init__(path)
        self._gguf = gguf
        header = read_header(path, {int(t): sizes for t, sizes in gguf.GGML_QUANT_SIZES.items()})
        self.metadata = header.metadata
        self._qtypes: dict[str, Any] = {}
        for t in header.tensors:
            qtype = gguf.GGMLQuantizationType(t.type_id)
            self._add(TensorInfo(t.name, qtype.name, tuple(reversed(t.ne)), path, (t.start, t.end)))
            self._qtypes[t.name] = qtype
        self.quantisation = dominant_type(self._infos.values())
        self.config = config_from_metadata(self.metadata)
        self._files = [*side_files, CheckpointFile(path, header.size, "weights")]

    def read_rows(self, name: str, rows: RowSelection = None) -> np.ndarray:
        info = self._infos[name]
        qtype = self._qtypes[name]
        row_bytes = info.nbytes // info.rows if info.rows else 0
        if qtype.name in GGUF_BLOCK_ROUNDING:  # block formats: every selected row's blocks in vectorised passes
            return self._block_rows(info, qtype, rows, row_bytes)

        def decode(raw: bytes, out: np.ndarray) -> None:
            out[...] = self._decode(raw, qtype, out.shape[0], row_bytes).reshape(out.shape)

        return read_row_runs(self._fd(info.file), info, rows, row_bytes, decode)

    def _block_rows(self, info: TensorInfo, qtype: Any, rows: RowSelection, row_bytes: int) -> np.ndarray:
        """Rows of a block-quantised tensor: the bytes of all selected row runs gathered, then decoded by the
        numpy block decoders (the ones the rounding uses) a bounded number of rows at a time."""
        _, type_size = self._gguf.GGML_QUANT_SIZES[qtype]
        raw = read_raw_rows(self._fd(info.file), info, rows, row_bytes)
        out = np.empty((raw.shape[0], info.row_length), dtype=np.float32)
        step = max(1, _DECODE_CHUNK_BYTES // max(row_bytes, 1))
        for lo in range(0, raw.shape[0], step):
            part = raw[lo:lo + step]
            out[lo:lo + len(part)] = gguf_values(part, qtype.name, type_size, len(part))
        return out

    def stored_sha256(self, name: str) -> str | None:
        info = self._infos[name]  # every GGUF tensor is one byte range, plain or in quantisation blocks
        return stored_sha256(self._fd(info.file), info)

    def read_rows_rounded(self, name: str, rows: RowSelection = None) -> Rounded | None:
        info = self._infos[name]
        qtype = self._qtypes[name]
        if qtype.name not in GGUF_BLOCK_ROUNDING:  # plain floats by dtype; unknown grids give None
            return super().read_rows_rounded(name, rows)
        row_bytes = info.nbytes // info.rows if info.rows else 0
        _, type_size = self._gguf.GGML_QUANT_SIZES[qtype]
        raw = read_raw_rows(self._fd(info.file), info, rows, row_bytes)
        return gguf_rounding(raw, qtype.name, type_size, raw.shape[0])

    def _decode(self, raw: bytes, qtype: Any, n_rows: int, row_bytes: int) -> np.ndarray:
        plain = _PLAIN.get(qtype.name)
        if plain is not None:
            return np.frombuffer(raw, dtype=plain)
        data = np.frombuffer(raw, dtype=np.uint8).reshape(n_rows, row_bytes)
        try:
            return self._gguf.quants.dequantize(data, qtype)
        except NotImplementedError:
            raise CheckpointError(self.path, f"dequantisation of {qtype.name} is not supported") from None


def dominant_type(infos: Any) -> str | None:
    """The tensor type holding the most parameters among the weight matrices (2-D and up), e.g. "Q4_1"."""
    counts: collections.Counter[str] = collections.Counter()
    for info in infos:
        if len(info.shape) >= 2:
            counts[info.dtype] += info.numel
    return counts.most_common(1)[0][0] if counts else None


def config_from_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A config.json-like view of GGUF metadata (HF key names), so later stages treat both formats alike."""
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        return {}

    def get(key: str) -> Any:
        return meta.get(f"{arch}.{key}")

    n_tokens = meta.length("tokenizer.ggml.tokens") if isinstance(meta, GgufMetadata) else None
    cfg: dict[str, Any] = {
        "model_type": arch,
        "source": "gguf metadata",
        "num_hidden_layers": get("block_count"),
        "hidden_size": get("embedding_length"),
        "intermediate_size": get("feed_forward_length"),
        "num_attention_heads": get("attention.head_count"),
        "num_key_value_heads": get("attention.head_count_kv"),
        "max_position_embeddings": get("context_length"),
        "rope_theta": get("rope.freq_base"),
        "rms_norm_eps": get("attention.layer_norm_rms_epsilon"),
        "vocab_size": get("vocab_size") or n_tokens,
        "name": meta.get("general.name"),
    }
    return {k: v for k, v in cfg.items() if v is not None}
