"""Reference sketches and anchors stored on a per-row int8 grid (index format 3): the grid's rounding, the copy
check that allows it on the reference side, the exact-copy trigger it widens, and indexes written before it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelprov.errors import ReferenceIndexError
from modelprov.findings import Reference
from modelprov.index import ReferenceIndex
from modelprov.index.store import mapped_arrays
from modelprov.reader import float_rounding, open_checkpoint
from modelprov.weights.fingerprint import anchor_count, bf16_bits, sample_indices, sketch_indices
from modelprov.weights.storage import (
    copy_check, row_grid_decode, row_grid_encode, row_grid_half_step, similarity_floor, stored_anchors, stored_sketch,
)

SIGMA = 0.02


def _rows(seed: int = 0, shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * SIGMA).astype(np.float32)


def _bf16(x: np.ndarray) -> np.ndarray:
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def _grid(values: np.ndarray):
    codes, grid = row_grid_encode(values)
    return codes, grid, row_grid_decode(codes, grid), row_grid_half_step(grid)


@pytest.mark.parametrize("case", ["gaussian", "outlier-column", "constant-rows", "tiny-range", "huge-and-nan", "offset-rows"])
def test_row_grid_keeps_every_entry_within_half_a_step(case: str):
    v = _rows(1).astype(np.float64)
    if case == "outlier-column":
        v[:, 7] *= 300
    if case == "constant-rows":
        v[:4] = 1.0
        v[4:8] = 0.0
    if case == "tiny-range":
        v = 1e-7 * v
    if case == "huge-and-nan":
        v[0, 0], v[1, 1], v[2, 2] = np.inf, -1e9, np.nan
    if case == "offset-rows":
        v = 1.0 + 0.01 * v  # norm weights: a large offset, a small spread
    codes, grid, decoded, half = _grid(v)
    assert codes.dtype == np.uint8 and grid.dtype == np.float16 and grid.shape == (len(v), 2)
    expected = np.clip(np.nan_to_num(v, nan=0.0), -65504, 65504)
    assert np.all(np.abs(decoded - expected) <= half[:, None] + 2.0 ** -20 * np.abs(expected))
    if case == "constant-rows":
        assert np.array_equal(decoded[:8], expected[:8]) and not half[:8].any()


def test_gaussian_grid_half_step_is_about_a_hundredth_of_the_spread():
    """Quantified for docs/reference-index.md: half a step of a 256-entry Gaussian row is ≈ 0.011 σ, far below the
    √2 σ by which an independently trained weight differs."""
    _, _, _, half = _grid(_rows(2))
    assert 0.008 < float(np.median(half)) / SIGMA < 0.015


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F16"])
def test_exact_copies_under_any_float_cast_are_copies_of_a_grid_reference(dtype: str):
    w = _rows(3)
    codes, grid, decoded, half = _grid(w)
    stored = stored_anchors(_anchors(decoded, half))
    suspect = {"F32": w, "BF16": _bf16(w), "F16": w.astype(np.float16).astype(np.float32)}[dtype]
    assert copy_check(float_rounding(suspect, dtype), dtype, stored).copy


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
@pytest.mark.parametrize("delta", [1e-4, 1e-3, 1e-2])
def test_a_fine_tune_far_below_the_grid_step_is_no_copy(dtype: str, delta: float):
    """A fine-tune moving each weight by δ ≪ half a step: entries whose stored rounding lay within δ of the grid's
    boundary now fall outside it (a share δ / step of 65,536), so even δ = 10⁻⁴ σ is caught."""
    w = _rows(4)
    _, _, decoded, half = _grid(w)
    tuned = w + (np.random.default_rng(5).standard_normal(w.shape) * delta * SIGMA).astype(np.float32)
    suspect = _bf16(tuned) if dtype == "BF16" else tuned
    check = copy_check(float_rounding(suspect, dtype), dtype, stored_anchors(_anchors(decoded, half)))
    assert not check.copy and check.outside > 0


def test_similarity_floor_admits_an_exact_copy_of_an_outlier_row_grid():
    """A column 300 σ wide widens every row's step: the stored sketch's centred r with the original falls below
    the exact-copy trigger (0.9999); the floor, widened by the stored rounding, still admits the original."""
    w = _rows(6)
    w[:, 7] *= 300
    _, _, decoded, half = _grid(w)
    stored = stored_anchors(_anchors(decoded, half))
    a, b = w.ravel() - w.mean(), decoded.ravel() - decoded.mean()
    r = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert r < 0.9999  # the plain trigger would not read the tensor to compare digests
    assert r >= similarity_floor(0.9999, stored, centre=True)
    other = _rows(7)
    o = other.ravel() - other.mean()
    assert float(o @ b / np.linalg.norm(o) / np.linalg.norm(b)) < similarity_floor(0.9999, stored, centre=True)


def _anchors(rows: np.ndarray, half: np.ndarray | None):
    from modelprov.weights.fingerprint import EmbeddingAnchors

    return EmbeddingAnchors(np.arange(len(rows)), rows, None, half)


def test_wide_models_keep_1024_anchors_narrow_ones_enough_for_a_rotation():
    assert anchor_count(32000, 4096) == anchor_count(150000, 2048) == 1024
    assert anchor_count(32000, 1536) == 4096 and anchor_count(32000, 384) == 1536 and anchor_count(500, 384) == 500
    for width in (64, 384, 576, 1024, 2047):  # a rotation needs more fit rows (half the anchors) than the width
        assert anchor_count(10 ** 6, width) // 2 > width


def test_index_stores_uint8_codes_memory_mapped_and_reads_float32(minilm_index: Path):
    idx = ReferenceIndex.load(minilm_index)
    fp = idx.fingerprint("all-MiniLM-L6-v2")
    raw = mapped_arrays(minilm_index / "weights" / "all-MiniLM-L6-v2.safetensors")
    name = next(t.name for t in fp.tensors if t.role == "attn_q")
    assert raw[name].dtype == np.uint8 and raw["grid:" + name].dtype == np.float16
    view, bases = raw[name], []
    while view is not None:
        bases.append(type(view))
        view = getattr(view, "base", None)
    assert np.memmap in bases
    assert fp.sketches[name].dtype == np.float32
    assert np.array_equal(fp.sketches[name], row_grid_decode(raw[name], raw["grid:" + name]))
    rounded = stored_sketch(fp, name)
    assert np.array_equal(rounded.below[:, 0], row_grid_half_step(raw["grid:" + name]))
    assert json.loads((minilm_index / "weights" / "all-MiniLM-L6-v2.json").read_text())["sketch_storage"] == "int8-row-grid"
    assert idx.format_version == 3 and fp.source["sketch_storage"] == "int8-row-grid"


def _as_format_2(index: Path) -> Path:
    """Rewrite an index as format 2 wrote it: float16 arrays, `sketch_storage: float16`, format_version 2."""
    idx = ReferenceIndex.load(index)
    for e in idx.entries_of("weights"):
        path = index / f"weights/{e.name}.safetensors"
        raw = mapped_arrays(path)
        arrays = {k: row_grid_decode(v, raw["grid:" + k]).astype(np.float16) for k, v in raw.items()
                  if not k.startswith("grid:")}
        del raw
        save_file(arrays, str(path), metadata={"reference": e.name, "sketch_version": "1"})
        manifest = index / f"weights/{e.name}.json"
        m = json.loads(manifest.read_text())
        m["sketch_storage"] = "float16"
        manifest.write_text(json.dumps(m))
    meta = json.loads((index / "index.json").read_text())
    old = ReferenceIndex(index, {**meta, "format_version": 2}, idx.entries)
    old.meta["files"] = old._file_hashes()
    old.meta["digest"] = old.compute_digest()
    (index / "index.json").write_text(json.dumps({**old.meta, "entries": [e.to_dict() for e in idx.entries]}))
    return index


def test_a_format_2_index_still_loads_with_float16_rounding(minilm_index: Path, minilm_dir: Path, tmp_path: Path):
    import shutil

    from modelprov.scan import scan

    old = _as_format_2(Path(shutil.copytree(minilm_index, tmp_path / "old")))
    idx = ReferenceIndex.load(old)
    idx.verify()
    assert idx.format_version == 2
    fp = idx.fingerprint("all-MiniLM-L6-v2")
    name = fp.tensors[0].name
    assert not fp.half_steps and fp.sketches[name].dtype == np.float32 and fp.source["sketch_storage"] == "float16"
    rounded = stored_sketch(fp, name)
    assert np.array_equal(rounded.below, float_rounding(fp.sketches[name], "F16").below)
    report = scan(minilm_dir, old, hash_files=False, tokenizer=False, code=False)
    [finding] = [f for f in report.findings if f.kind == "weights"]
    assert finding.statistics["exact_parameter_share"] == 1.0


def test_exact_copy_of_a_reference_with_outlier_columns_is_confirmed_by_digests(minilm_dir: Path, tmp_path: Path):
    """One outlier column (300 σ) among the sampled ones of every MLP input matrix widens each row's grid step
    until the stored sketch's r with the original falls below 0.9999: the trigger for the digest comparison must
    allow the stored rounding."""
    import shutil

    from safetensors.numpy import load_file

    from modelprov.index import add_checkpoint
    from modelprov.scan import scan

    model = tmp_path / "outliers"
    shutil.copytree(minilm_dir, model, ignore=shutil.ignore_patterns("*.bin", "*.onnx", "onnx", "openvino", "*.h5", "*.ot"))
    weights = load_file(str(model / "model.safetensors"))
    for name, w in weights.items():
        if name.endswith("intermediate.dense.weight"):
            w[:, sample_indices(w.shape[1], 256)[3]] *= 300
    save_file(weights, str(model / "model.safetensors"))
    index = tmp_path / "index"
    add_checkpoint(ReferenceIndex.create(index), model, Reference(name="outliers"))
    fp = ReferenceIndex.load(index).fingerprint("outliers")
    t = next(t for t in fp.tensors if t.name.endswith("0.intermediate.dense.weight"))
    with open_checkpoint(model) as ckpt:
        rows, cols = sketch_indices(t.shape2d, fp.spec)
        original = ckpt.read_rows(t.name)[rows][:, cols]
    a, b = original.ravel() - original.mean(), fp.sketches[t.name].ravel() - fp.sketches[t.name].mean()
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) < 0.9999
    report = scan(model, index, hash_files=False, tokenizer=False, code=False)
    [finding] = [f for f in report.findings if f.kind == "weights"]
    assert finding.statistics["exact_parameter_share"] == 1.0


def test_an_index_newer_than_this_reader_is_a_one_line_error(minilm_index: Path, tmp_path: Path, cli):
    import shutil

    from modelprov.cli.main import app

    copy = Path(shutil.copytree(minilm_index, tmp_path / "newer"))
    meta = json.loads((copy / "index.json").read_text())
    (copy / "index.json").write_text(json.dumps({**meta, "format_version": 4}))
    with pytest.raises(ReferenceIndexError, match="newer than this modelprov reads"):
        ReferenceIndex.load(copy)
    r = cli.invoke(app, ["index", "verify", "--index", str(copy)])
    assert r.exit_code == 2 and "newer than this modelprov" in r.stderr and "Traceback" not in r.stderr


def test_unknown_sketch_storage_is_an_error_naming_the_manifest(minilm_index: Path, tmp_path: Path):
    import shutil

    copy = Path(shutil.copytree(minilm_index, tmp_path / "odd"))
    manifest = copy / "weights" / "all-MiniLM-L6-v2.json"
    manifest.write_text(manifest.read_text().replace('"int8-row-grid"', '"int4-block"'))
    with pytest.raises(ReferenceIndexError, match=r"all-MiniLM-L6-v2\.json.*unknown sketch storage"):
        ReferenceIndex.load(copy).fingerprint("all-MiniLM-L6-v2")


def test_a_seven_b_shaped_reference_stores_under_20_mb(tmp_path: Path):
    from benchmarks.reference_scale import seven_b_fingerprint

    idx = ReferenceIndex.create(tmp_path / "index")
    idx.add_weights(Reference(name="llama7b-shaped"), seven_b_fingerprint(0), seal=False)
    size = sum((tmp_path / "index" / "weights" / f"llama7b-shaped.{ext}").stat().st_size for ext in ("safetensors", "json"))
    assert size < 20e6


@pytest.mark.parametrize("damage", ["grid-missing", "grid-wrong-shape", "codes-not-uint8"])
def test_a_damaged_row_grid_is_an_error_naming_the_sketch_file(minilm_index: Path, tmp_path: Path, damage: str):
    import shutil

    copy = Path(shutil.copytree(minilm_index, tmp_path / "damaged"))
    path = copy / "weights" / "all-MiniLM-L6-v2.safetensors"
    arrays = {k: np.array(v) for k, v in mapped_arrays(path).items()}
    name = next(k for k in arrays if not k.startswith(("grid:", "anchors:")) and len(arrays[k]) > 1)
    if damage == "grid-missing":
        del arrays["grid:" + name]
    if damage == "grid-wrong-shape":
        arrays["grid:" + name] = arrays["grid:" + name][:1]
    if damage == "codes-not-uint8":
        arrays[name] = arrays[name].astype(np.float16)
    save_file(arrays, str(path))
    with pytest.raises(ReferenceIndexError, match=r"all-MiniLM-L6-v2\.safetensors") as err:
        fp = ReferenceIndex.load(copy).fingerprint("all-MiniLM-L6-v2")
        fp.sketches[name]
    assert "\n" not in err.value.one_line()
