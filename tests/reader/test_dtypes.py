"""Every safetensors dtype converts to float32 exactly as torch converts it, including through a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modelprov.reader import open_checkpoint
from modelprov.reader._dtypes import DTYPE_SIZES, to_float32

TORCH_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8, "BOOL": torch.bool,
}


def _sample(dtype: torch.dtype, rows: int = 6, cols: int = 50) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    if dtype == torch.bool:
        return torch.rand(rows, cols, generator=gen) > 0.5
    if dtype.is_floating_point:
        base = torch.randn(rows, cols, generator=gen, dtype=torch.float64) * 40
        base[0, :4] = torch.tensor([0.0, -0.0, 1e-6, 448.0], dtype=torch.float64)
        return base.to(dtype)
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -(2**40)), min(info.max, 2**40)
    return torch.randint(lo, hi, (rows, cols), generator=gen, dtype=torch.int64).to(dtype)


def test_every_safetensors_dtype_is_covered() -> None:
    assert set(TORCH_DTYPES) == set(DTYPE_SIZES)


@pytest.mark.parametrize("name", sorted(TORCH_DTYPES))
def test_conversion_matches_torch(name: str) -> None:
    t = _sample(TORCH_DTYPES[name])
    raw = t.contiguous().view(torch.uint8).numpy().tobytes() if name != "BOOL" else t.numpy().tobytes()
    np.testing.assert_array_equal(to_float32(raw, name), t.to(torch.float32).numpy().reshape(-1))


def test_every_dtype_round_trips_through_a_file(tmp_path: Path) -> None:
    tensors = {name.lower(): _sample(dt) for name, dt in TORCH_DTYPES.items()}
    save_file(tensors, str(tmp_path / "all.safetensors"))
    with open_checkpoint(tmp_path / "all.safetensors") as ckpt:
        dtypes = {t.name: t.dtype for t in ckpt.tensors()}
        for name, t in tensors.items():
            assert dtypes[name] == name.upper()
            np.testing.assert_array_equal(ckpt.read_rows(name, [4, 0]), t[[4, 0]].to(torch.float32).numpy())


@pytest.mark.parametrize("name", ["F8_E4M3", "F8_E5M2"])
def test_all_256_fp8_codes_match_torch(name: str) -> None:
    codes = torch.arange(256, dtype=torch.uint8)
    expected = codes.view(TORCH_DTYPES[name]).to(torch.float32).numpy()
    np.testing.assert_array_equal(to_float32(codes.numpy().tobytes(), name), expected)
