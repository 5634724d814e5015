"""Property: any mutation of a checkpoint header gives a clear `CheckpointError` or a correct read, never a crash or hang."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from modelprov.errors import CheckpointError
from modelprov.reader import open_checkpoint

from .conftest import write_gguf

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture],
                derandomize=True)


def _base_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "a.weight": rng.standard_normal((4, 6)).astype(np.float32),
        "b.weight": rng.standard_normal((3, 2, 2)).astype(np.float16),
        "c.bias": rng.integers(-100, 100, 5).astype(np.int32),
        "d.ids": rng.integers(0, 255, (2, 3)).astype(np.uint8),
    }


def _split(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                         st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
field_values = {
    "dtype": st.one_of(st.sampled_from(["F32", "F16", "BF16", "I32", "U8", "F8_E4M3", "BOOL", "I64", "F64", "X"]),
                       json_values),
    "shape": st.one_of(st.lists(st.integers(-2, 30), max_size=4), json_values),
    "data_offsets": st.one_of(st.lists(st.integers(-8, 260), min_size=2, max_size=2), json_values),
}


@st.composite
def header_mutations(draw):
    """A list of edits: (tensor, field, new value) or a tensor removal or a junk entry."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["field", "field", "field", "drop_field", "drop_tensor", "junk", "metadata"]))
        tensor = draw(st.sampled_from(sorted(_base_tensors())))
        if kind == "field":
            key = draw(st.sampled_from(sorted(field_values)))
            edits.append((kind, tensor, key, draw(field_values[key])))
        elif kind == "drop_field":
            edits.append((kind, tensor, draw(st.sampled_from(sorted(field_values))), None))
        else:
            edits.append((kind, tensor, None, draw(json_values)))
    return edits


def _apply(header: dict, edits) -> dict:
    header = json.loads(json.dumps(header))
    for kind, tensor, key, value in edits:
        if kind == "field" and isinstance(header.get(tensor), dict):
            header[tensor][key] = value
        elif kind == "drop_field" and isinstance(header.get(tensor), dict):
            header[tensor].pop(key, None)
        elif kind == "drop_tensor":
            header.pop(tensor, None)
        elif kind == "junk":
            header[f"junk.{tensor}"] = value
        elif kind == "metadata":
            header["__metadata__"] = value
    return header


def _read_everything_or_error(path: Path) -> dict[str, np.ndarray] | None:
    """Every tensor read whole and by rows; None when the reader refused the file with a `CheckpointError`."""
    try:
        with open_checkpoint(path) as ckpt:
            out = {}
            for info in ckpt.tensors():
                full = ckpt.read_rows(info.name)
                assert full.dtype == np.float32 and full.shape == (info.rows, info.row_length)
                if info.rows:
                    np.testing.assert_array_equal(ckpt.read_rows(info.name, [info.rows - 1, 0]),
                                                  full[[info.rows - 1, 0]])
                out[info.name] = full.reshape(info.shape)
            return out
    except CheckpointError as err:
        assert "\n" not in err.one_line() and err.path == str(path)
        return None


def _library_read(path: Path) -> dict[str, np.ndarray] | None:
    try:
        return {k: v.astype(np.float32) for k, v in load_file(str(path)).items()}
    except Exception:  # the reference library refusing is fine; it is stricter (no gaps allowed)
        return None


@FUZZ
@given(edits=header_mutations())
def test_header_field_mutations(tmp_path: Path, edits) -> None:
    base = tmp_path / "base.safetensors"
    if not base.exists():
        save_file(_base_tensors(), str(base))
    header, data = _split(base)
    mutated = _apply(header, edits)
    raw = json.dumps(mutated).encode()
    f = tmp_path / "m.safetensors"
    f.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    ours = _read_everything_or_error(f)
    reference = _library_read(f)
    if ours is not None and reference is not None:
        assert set(ours) == set(reference)
        for name in ours:
            np.testing.assert_array_equal(ours[name], reference[name])
    if reference is not None and not any(np.dtype(v.dtype) != np.float32 for v in reference.values()):
        assert ours is not None  # anything the library reads as float32, we read too


@FUZZ
@given(data=st.data())
def test_header_byte_mutations(tmp_path: Path, data) -> None:
    base = tmp_path / "base.safetensors"
    if not base.exists():
        save_file(_base_tensors(), str(base))
    raw = bytearray(base.read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, 8 + n - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    f = tmp_path / "m.safetensors"
    f.write_bytes(bytes(raw[:cut]))
    ours = _read_everything_or_error(f)
    reference = _library_read(f)
    if ours is not None and reference is not None:
        for name in set(ours) & set(reference):
            np.testing.assert_array_equal(ours[name], reference[name])


@settings(max_examples=80, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(data=st.data())
def test_gguf_byte_mutations(tmp_path: Path, data) -> None:
    base = tmp_path / "base.gguf"
    if not base.exists():
        rng = np.random.default_rng(5)
        write_gguf(base, {"blk.0.a.weight": ("F32", rng.standard_normal((4, 32)).astype(np.float32)),
                          "blk.0.b.weight": ("F16", rng.standard_normal((2, 64)).astype(np.float16))})
    raw = bytearray(base.read_bytes())
    header_end = raw.index(b"blk.0.b.weight") + 64  # the tensor infos end shortly after the last name
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, header_end))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    f = tmp_path / "m.gguf"
    f.write_bytes(bytes(raw[:cut]))
    _read_everything_or_error(f)
