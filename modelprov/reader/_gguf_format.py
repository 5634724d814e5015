"""The GGUF header parsed by us, every count and length bounded by the file's size before anything is allocated.

`gguf.GGUFReader` allocates and loops over whatever count a file claims: a 114-byte file whose metadata array
claims 2^40 entries never returns. Here a count is checked against the bytes left before any loop, arrays are
walked (not decoded) at open and materialised only when asked for, and every problem is a `CheckpointError`
naming the file. Layout per the GGUF spec (ggml `docs/gguf.md`, versions 2 and 3; little-endian only).
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelprov._inputs import open_regular
from modelprov.errors import CheckpointError

MAGIC = b"GGUF"
MAX_DIMS = 4  # GGML_MAX_DIMS: llama.cpp refuses more
MAX_INLINE_ARRAY = 4096  # non-tokenizer arrays longer than this are summarised by their length
_STRING, _ARRAY = 8, 9
# value type -> numpy dtype of its scalars (GGUF value types 0-12 but 8 string and 9 array)
_SCALARS: dict[int, np.dtype] = {
    0: np.dtype("u1"), 1: np.dtype("i1"), 2: np.dtype("<u2"), 3: np.dtype("<i2"), 4: np.dtype("<u4"),
    5: np.dtype("<i4"), 6: np.dtype("<f4"), 7: np.dtype("u1"), 10: np.dtype("<u8"), 11: np.dtype("<i8"),
    12: np.dtype("<f8"),
}
_BOOL = 7
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset


@dataclass(frozen=True)
class GgufTensor:
    """One tensor-info entry: name, GGML `ne` (innermost first), type id, absolute data [start, end)."""

    name: str
    ne: tuple[int, ...]
    type_id: int
    start: int
    end: int


@dataclass(frozen=True)
class LazyArray:
    """A metadata array located but not decoded: element type, length, and its bytes [start, end)."""

    type_id: int
    count: int
    start: int
    end: int


class GgufMetadata(MutableMapping[str, Any]):
    """GGUF key/value fields: scalars as values, arrays decoded from the file on first access (then cached)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        if isinstance(value, LazyArray):
            value = self._values[key] = _decode_array(self._path, value)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = value

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def length(self, key: str) -> int | None:
        """The entry count of array `key` without decoding it (None when absent or not an array)."""
        value = self._values.get(key)
        if isinstance(value, LazyArray):
            return value.count
        return len(value) if isinstance(value, list) else None


@dataclass
class GgufHeader:
    version: int
    metadata: GgufMetadata
    tensors: list[GgufTensor]
    size: int


def read_header(path: Path, type_sizes: dict[int, tuple[int, int]]) -> GgufHeader:
    """Parse the header of GGUF file `path`; `type_sizes` maps GGML type ids to (block size, bytes per block)."""
    fd = open_regular(path, CheckpointError)
    try:
        size = os.fstat(fd).st_size
        if size < 24:
            raise CheckpointError(path, f"not a GGUF file ({size} bytes; the header alone takes 24)")
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            return _Parser(path, mm, size).header(type_sizes)
    except (OSError, ValueError) as exc:
        raise CheckpointError(path, f"cannot read GGUF header: {exc}") from None
    finally:
        os.close(fd)


class _Parser:
    """A cursor over the memory-mapped file; every read is checked against the end of the file."""

    def __init__(self, path: Path, buf: mmap.mmap, size: int) -> None:
        self.path, self.buf, self.size, self.pos = path, buf, size, 0

    def fail(self, problem: str) -> CheckpointError:
        return CheckpointError(self.path, f"malformed GGUF: {problem}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.size - self.pos:
            raise self.fail(f"{what} needs {n:,} bytes at offset {self.pos:,} but the file has "
                            f"{max(0, self.size - self.pos):,} left (truncated or a false count)")

    def unpack(self, fmt: str, what: str) -> int:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self, what: str, errors: str = "strict") -> str:
        n = self.unpack("<Q", f"{what} length")
        self.need(n, what)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8", errors)
        except UnicodeDecodeError:
            raise self.fail(f"{what} at offset {self.pos - n:,} is not UTF-8") from None

    def header(self, type_sizes: dict[int, tuple[int, int]]) -> GgufHeader:
        magic = bytes(self.buf[0:4])
        if magic != MAGIC:
            raise CheckpointError(self.path, f"not a GGUF file (magic {magic!r}, expected b'GGUF')")
        self.pos = 4
        version = self.unpack("<I", "version")
        if version not in (2, 3):
            raise self.fail(f"version {version} is not supported (2 and 3 are)")
        n_tensors = self.unpack("<Q", "tensor count")
        n_kv = self.unpack("<Q", "key/value count")
        if n_tensors * _MIN_TENSOR_BYTES + n_kv * _MIN_KV_BYTES > self.size - self.pos:
            raise self.fail(f"{n_tensors:,} tensors and {n_kv:,} key/value pairs cannot fit in "
                            f"{self.size:,} bytes (truncated or a false count)")
        metadata = GgufMetadata(self.path)
        for _ in range(n_kv):
            key = self.string("key")
            if key in metadata._values:
                raise self.fail(f"key {key!r} appears twice")
            metadata._values[key] = self.value(self.unpack("<I", f"type of {key!r}"), key)
        infos = [self.tensor_info() for _ in range(n_tensors)]
        alignment = metadata._values.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise self.fail(f"general.alignment {alignment!r} is not a power of two")
        data_start = -(-self.pos // alignment) * alignment
        tensors, seen = [], set()
        for name, ne, type_id, offset in infos:
            if name in seen:
                raise self.fail(f"tensor {name!r} appears twice")
            seen.add(name)
            if type_id not in type_sizes:
                raise self.fail(f"tensor {name!r}: unknown GGML type {type_id}")
            block, type_size = type_sizes[type_id]
            if any(d < 1 or d > self.size * block for d in ne):  # a 0 would let any other dimension through
                raise self.fail(f"tensor {name!r}: dimensions {list(ne)} are not between 1 and what the file can hold")
            numel = 1
            for d in ne:
                numel *= d
            if ne and ne[0] % block:
                raise self.fail(f"tensor {name!r}: row length {ne[0]} is not a multiple of the block size {block}")
            if block > 1 and len(ne) < 2:
                raise self.fail(f"tensor {name!r}: a quantised tensor must have 2 or more dimensions (has {len(ne)})")
            start = data_start + offset
            end = start + numel // block * type_size
            if end > self.size:
                raise CheckpointError(self.path, f"tensor {name!r}: data [{start}, {end}) runs past the end of the "
                                      f"{self.size}-byte file (truncated)")
            tensors.append(GgufTensor(name, ne, type_id, start, end))
        return GgufHeader(version, metadata, tensors, self.size)

    def tensor_info(self) -> tuple[str, tuple[int, ...], int, int]:
        name = self.string("tensor name")
        n_dims = self.unpack("<I", f"dimension count of {name!r}")
        if n_dims > MAX_DIMS:
            raise self.fail(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})")
        ne = tuple(self.unpack("<Q", f"dimension of {name!r}") for _ in range(n_dims))
        type_id = self.unpack("<I", f"type of {name!r}")
        offset = self.unpack("<Q", f"offset of {name!r}")
        return name, ne, type_id, offset

    def value(self, type_id: int, key: str) -> Any:
        if type_id == _STRING:
            return self.string(f"value of {key!r}", errors="replace")
        if type_id == _ARRAY:
            return self.array(key)
        dtype = _SCALARS.get(type_id)
        if dtype is None:
            raise self.fail(f"key {key!r} has unknown value type {type_id}")
        self.need(dtype.itemsize, f"value of {key!r}")
        value = np.frombuffer(self.buf, dtype=dtype, count=1, offset=self.pos)[0].item()
        self.pos += dtype.itemsize
        return bool(value) if type_id == _BOOL else value

    def array(self, key: str) -> Any:
        """Walk an array without decoding it; small arrays of other keys than the tokenizer's are decoded."""
        type_id = self.unpack("<I", f"element type of {key!r}")
        count = self.unpack("<Q", f"length of {key!r}")
        start = self.pos
        if type_id == _STRING:
            self.need(count * 8, f"{count:,} strings of {key!r}")  # every string has an 8-byte length
            for i in range(count):
                n = self.unpack("<Q", f"length of string {i} of {key!r}")
                self.need(n, f"string {i} of {key!r}")
                self.pos += n
        elif type_id in _SCALARS:
            self.need(count * _SCALARS[type_id].itemsize, f"{count:,} entries of {key!r}")
            self.pos += count * _SCALARS[type_id].itemsize
        else:  # llama.cpp refuses arrays of arrays too
            raise self.fail(f"key {key!r} is an array of type {type_id} (arrays of arrays are not supported)")
        lazy = LazyArray(type_id, count, start, self.pos)
        if key.startswith("tokenizer."):
            return lazy
        if count > MAX_INLINE_ARRAY:
            return {"array_length": count}
        return _decode(self.buf, lazy, self.path)


def _decode_array(path: Path, lazy: LazyArray) -> list[Any]:
    """Read and decode a located array from the file (tokenizer arrays, on first access)."""
    fd = open_regular(path, CheckpointError)
    try:
        raw = os.pread(fd, lazy.end - lazy.start, lazy.start)
    finally:
        os.close(fd)
    if len(raw) != lazy.end - lazy.start:
        raise CheckpointError(path, "GGUF file changed or was truncated after it was opened")
    return _decode(raw, LazyArray(lazy.type_id, lazy.count, 0, len(raw)), path)


def _decode(buf: Any, lazy: LazyArray, path: Path) -> list[Any]:
    """The entries of a located array as Python values (strings strictly UTF-8)."""
    if lazy.type_id != _STRING:
        values = np.frombuffer(buf, dtype=_SCALARS[lazy.type_id], count=lazy.count, offset=lazy.start).tolist()
        return [bool(v) for v in values] if lazy.type_id == _BOOL else values
    out, pos = [], lazy.start
    for i in range(lazy.count):
        try:
            (n,) = struct.unpack_from("<Q", buf, pos)
            out.append(bytes(buf[pos + 8 : pos + 8 + n]).decode("utf-8"))
        except UnicodeDecodeError:
            raise CheckpointError(path, f"malformed GGUF: string {i} of an array at offset {lazy.start:,} is not "
                                        "UTF-8") from None
        except struct.error:
            raise CheckpointError(path, "GGUF file changed or was truncated after it was opened") from None
        pos += 8 + n
    return out
