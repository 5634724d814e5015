"""Lazy safetensors reading: validate the header, then read only the byte ranges of requested rows."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from modelprov._inputs import open_regular, parse_json
from modelprov.errors import CheckpointError
from ._base import CheckpointFile, RowSelection, TensorInfo
from ._dtypes import DTYPE_SIZES, to_float32
from ._quantised import dominant_scheme, find_quantised, stored_reader
from ._rounding import Rounded
from ._rows import PLAIN_FLOAT_DTYPES, read_stored_rows, stored_sha256
from ._table import TableCheckpoint

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit the safetensors library itself enforces


class SafetensorsCheckpoint(TableCheckpoint):
    """One or more safetensors files (single, sharded, or in sub-model folders) read lazily.

    Quantised layers (GPTQ, AWQ, scaled fp8/int8, compressed-tensors packed; see `quantised`) are listed
    as one dequantised `<module>.weight` each, their scales and zero points hidden; `quantisation` names
    the dominant scheme and `metadata["quantisation"]` what was found.

    `shards` pairs each file with the dotted name prefix of its sub-model folder ("" at the root).
    `expected` optionally maps each shard to the tensor names its weight-map index promises it holds.
    """

    format = "safetensors"

    def __init__(
        self,
        path: Path,
        shards: list[tuple[Path, str]],
        extra_files: list[CheckpointFile],
        config: dict[str, Any] | None,
        expected: dict[Path, set[str]] | None = None,
    ) -> None:
        super().__init__(path)
        self.config = config
        self._files = list(extra_files)
        for shard, prefix in shards:
            infos, meta = parse_header(shard, prefix)
            if meta:
                self.metadata.setdefault("safetensors", {})[str(shard.name)] = meta
            if expected and shard in expected:
                check_weight_map(shard, prefix, infos, expected[shard])
            for info in infos:
                self._add(info)
            self._files.append(CheckpointFile(shard, shard.stat().st_size, "weights"))
        self._stored = dict(self._infos)
        try:  # may read a few small shape tensors; a malformed layer must not leave descriptors open
            self._infos, self._quantised, summary = find_quantised(self._stored, config, stored_reader(self._fd))
        except CheckpointError:
            self.close()
            raise
        if summary:
            self.metadata["quantisation"] = summary
            self.quantisation = dominant_scheme(summary)

    def read_rows(self, name: str, rows: RowSelection = None) -> np.ndarray:
        quantised = self._quantised.get(name)
        if quantised is not None:
            return quantised.read_rows(rows, stored_reader(self._fd), self._read_stored_rows)
        return self._read_stored_rows(self._infos[name], rows)

    def read_rows_rounded(self, name: str, rows: RowSelection = None) -> Rounded | None:
        quantised = self._quantised.get(name)
        if quantised is not None:
            return quantised.read_rows_rounded(rows, stored_reader(self._fd), self._read_stored_rows)
        return super().read_rows_rounded(name, rows)

    def stored_sha256(self, name: str) -> str | None:
        info = self._infos[name]
        if name in self._quantised or info.dtype not in PLAIN_FLOAT_DTYPES:
            return None
        return stored_sha256(self._fd(info.file), info)

    def _read_stored_rows(self, info: TensorInfo, rows: RowSelection) -> np.ndarray:
        return read_stored_rows(self._fd(info.file), info, rows)


def check_weight_map(shard: Path, prefix: str, infos: list[TensorInfo], names: set[str]) -> None:
    """The index's weight map must name only tensors the shard really holds."""
    held = {info.name[len(prefix):] for info in infos}
    missing = sorted(names - held)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(shard, f"weight map places tensor {missing[0]!r}{more} in this shard, but it is not there")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_header(path: Path, prefix: str = "") -> tuple[list[TensorInfo], dict[str, Any]]:
    """Read and validate a safetensors header; return tensors (sorted by offset) and `__metadata__`."""
    fd = open_regular(path, CheckpointError)
    try:
        size = os.fstat(fd).st_size
        with os.fdopen(fd, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise CheckpointError(path, f"file is {size} bytes, too short for a safetensors header")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise CheckpointError(path, f"header length {n} is larger than the file ({size} bytes)")
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(path, f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
            raw = handle.read(n)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from None
    header = parse_json(raw, path, CheckpointError, what="header", object_pairs_hook=_no_duplicate_keys)
    if not isinstance(header, dict):
        raise CheckpointError(path, f"header is a JSON {_json_type(header)}, not an object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise CheckpointError(path, "__metadata__ is not an object")
    for key, value in metadata.items():  # the format: "a map of string to string"
        if not isinstance(value, str):
            raise CheckpointError(path, f"__metadata__ value of {key!r} is a JSON {_json_type(value)}; the "
                                  "safetensors format allows only strings")
    data_start = 8 + n
    data_len = size - data_start
    infos = [_tensor_info(path, prefix, name, entry, data_start, data_len) for name, entry in header.items()]
    infos.sort(key=lambda t: (t.byte_range, t.name))
    _check_no_overlap(path, infos)
    return infos, metadata


def encode_header(tensors: Iterable[tuple[str, str, Sequence[int]]],
                  metadata: dict[str, str] | None = None) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """The length prefix and header of a safetensors file holding `(name, dtype, shape)` back to back.

    Returns the bytes to write before the data section and each tensor's [start, end) within that section,
    so generators (benchmarks, fixtures) can stream tensor data without holding it.
    """
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    ranges: dict[str, tuple[int, int]] = {}
    offset = 0
    for name, dtype, shape in tensors:
        nbytes = math.prod(shape) * DTYPE_SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        ranges[name] = (offset, offset + nbytes)
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned, as the safetensors library writes it
    return struct.pack("<Q", len(raw)) + raw, ranges


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_info(path: Path, prefix: str, name: str, entry: Any, data_start: int, data_len: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise CheckpointError(path, f"tensor {name!r}: header entry is not an object")
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise CheckpointError(path, f"tensor {name!r}: unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
        raise CheckpointError(path, f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise CheckpointError(path, f"tensor {name!r}: data_offsets {offsets!r} is not a pair of integers")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise CheckpointError(
            path, f"tensor {name!r}: byte range [{begin}, {end}) lies outside the {data_len}-byte data section"
        )
    expected = math.prod(shape) * DTYPE_SIZES[dtype]  # exact integer arithmetic: no overflow on hostile shapes
    if end - begin != expected:
        raise CheckpointError(
            path, f"tensor {name!r}: {end - begin} bytes do not match {dtype} x {shape} ({expected} bytes)"
        )
    return TensorInfo(prefix + name, dtype, tuple(shape), path, (data_start + begin, data_start + end))


def _check_no_overlap(path: Path, infos: list[TensorInfo]) -> None:
    last: TensorInfo | None = None
    for cur in infos:
        if not cur.nbytes:
            continue
        if last is not None and cur.byte_range[0] < last.byte_range[1]:
            raise CheckpointError(path, f"tensors {last.name!r} and {cur.name!r} overlap in the data section")
        if last is None or cur.byte_range[1] > last.byte_range[1]:
            last = cur
