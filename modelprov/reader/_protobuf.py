"""A bounded walker over the protobuf wire format: fields of a message by number, without decoding payloads.

The ONNX reader uses it to find initialiser bytes by offset instead of loading them (the `onnx` package reads
every embedded `raw_data` into memory). Every length is checked against the enclosing message, so a hostile
or truncated file gives a `CheckpointError` naming it, never a read past the end, a huge allocation or a hang:
each step consumes at least one byte of a buffer whose size is the file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from modelprov.errors import CheckpointError

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10


@dataclass(frozen=True)
class Field:
    """One field of a message: its number and wire type; `value` for varints and fixed-width fields, else the
    payload's [start, end) in the buffer."""

    number: int
    wire: int
    value: int
    start: int
    end: int


class WireReader:
    """Fields of protobuf messages held in `buf` (bytes or a memory map of `path`), by absolute offsets."""

    def __init__(self, buf: bytes | memoryview, path: Path) -> None:
        self.buf = buf
        self.path = path

    def fail(self, offset: int, problem: str) -> CheckpointError:
        return CheckpointError(self.path, f"malformed protobuf at byte {offset}: {problem} (truncated or not ONNX)")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        """The varint at `pos` (not past `end`) and the position after it."""
        value = shift = 0
        buf = self.buf
        for i in range(pos, min(end, pos + _MAX_VARINT_BYTES)):
            byte = buf[i]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value & 0xFFFFFFFFFFFFFFFF, i + 1
            shift += 7
        raise self.fail(pos, "varint runs past its message" if end - pos < _MAX_VARINT_BYTES else "varint too long")

    def fields(self, start: int, end: int) -> Iterator[Field]:
        """Every field of the message occupying [start, end), in stored order."""
        pos = start
        while pos < end:
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.fail(pos, "field number 0")
            if wire == VARINT:
                value, nxt = self.varint(pos, end)
                yield Field(number, wire, value, pos, nxt)
            elif wire in (FIXED64, FIXED32):
                width = 8 if wire == FIXED64 else 4
                nxt = pos + width
                if nxt > end:
                    raise self.fail(pos, "fixed-width field runs past its message")
                yield Field(number, wire, int.from_bytes(self.buf[pos:nxt], "little"), pos, nxt)
            elif wire == LENGTH:
                length, body = self.varint(pos, end)
                nxt = body + length
                if nxt > end:
                    raise self.fail(pos, f"field {number} declares {length} bytes, {end - body} remain")
                yield Field(number, wire, length, body, nxt)
            else:
                raise self.fail(pos, f"unsupported wire type {wire} (field {number})")
            pos = nxt

    def text(self, field: Field) -> str:
        """A string field (invalid UTF-8 replaced: names are reported, never trusted)."""
        self.expect(field, LENGTH)
        return bytes(self.buf[field.start:field.end]).decode("utf-8", "replace")

    def expect(self, field: Field, wire: int) -> None:
        if field.wire != wire:
            raise self.fail(field.start, f"field {field.number} has wire type {field.wire}, expected {wire}")

    def ints(self, field: Field) -> list[int]:
        """A repeated varint field, packed or one entry per field (as signed 64-bit integers)."""
        if field.wire == VARINT:
            return [signed64(field.value)]
        self.expect(field, LENGTH)
        out = []
        pos = field.start
        while pos < field.end:
            value, pos = self.varint(pos, field.end)
            out.append(signed64(value))
        return out

    def packed_varints(self, field: Field) -> np.ndarray:
        """A packed repeated varint field decoded at once (vectorised) as unsigned 64-bit integers."""
        self.expect(field, LENGTH)
        # a copy, not a view: a view of the mmap kept alive by an error's traceback stops the mmap from closing
        # (BufferError instead of the one-line error; found by the fuzzer); callers bound the field to 4 MiB
        raw = np.frombuffer(bytes(self.buf[field.start:field.end]), dtype=np.uint8)
        if raw.size == 0:
            return np.zeros(0, dtype=np.uint64)
        ends = np.flatnonzero(raw < 0x80)
        if ends.size == 0 or ends[-1] != raw.size - 1:
            raise self.fail(field.start, "packed varints end inside a value")
        starts = np.concatenate(([0], ends[:-1] + 1))
        if int(np.max(ends - starts)) >= _MAX_VARINT_BYTES:
            raise self.fail(field.start, "varint too long")
        position = np.arange(raw.size) - np.repeat(starts, ends - starts + 1)
        parts = (raw & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
        return np.bitwise_or.reduceat(parts, starts)


def signed64(value: int) -> int:
    """A varint's 64 bits read as a two's-complement integer (how protobuf encodes negative int32/int64)."""
    return value - (1 << 64) if value >= 1 << 63 else value
