"""Scan time, peak memory and bytes read versus checkpoint size (1, 4, 16 GB) and number of references.

Checkpoints are synthetic Llama-shaped bf16 safetensors (hidden 4096, MLP 11008) written as *sparse*
files: the header is real, the data section is holes that read as zeros, so building a 16 GB case
takes no disk and no time. Reading holes is faster than reading a real disk, so times are a lower
bound on I/O and an honest measure of the scanner's own work; bytes read are exact. References are
synthetic fingerprints of the same shapes (random sketches), so every suspect tensor is compared
with every reference tensor of its role and shape, as in a real scan.

    python -m benchmarks.scan_scaling [--sizes 1 4 16] [--refs 1 4 16] [--out docs/scan-scaling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HIDDEN, MLP = 4096, 11008
LAYER_SHAPES = {
    "self_attn.q_proj.weight": (HIDDEN, HIDDEN), "self_attn.k_proj.weight": (1024, HIDDEN),
    "self_attn.v_proj.weight": (1024, HIDDEN), "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
    "mlp.gate_proj.weight": (MLP, HIDDEN), "mlp.up_proj.weight": (MLP, HIDDEN), "mlp.down_proj.weight": (HIDDEN, MLP),
    "input_layernorm.weight": (HIDDEN,), "post_attention_layernorm.weight": (HIDDEN,),
}
LAYER_BYTES = 2 * sum(int(np.prod(s)) for s in LAYER_SHAPES.values())
EMBED = (32000, HIDDEN)


def tensor_shapes(n_layers: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": EMBED}
    for i in range(n_layers):
        shapes.update({f"model.layers.{i}.{k}": v for k, v in LAYER_SHAPES.items()})
    shapes["model.norm.weight"] = (HIDDEN,)
    return shapes


def write_sparse_checkpoint(folder: Path, gigabytes: float) -> Path:
    """A bf16 safetensors file of about `gigabytes` GB whose data section is a hole (reads as zeros)."""
    n_layers = max(1, round((gigabytes * 2**30 - 2 * EMBED[0] * EMBED[1]) / LAYER_BYTES))
    header, offset = {}, 0
    for name, shape in tensor_shapes(n_layers).items():
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.safetensors"
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset)
    (folder / "config.json").write_text(json.dumps({"num_attention_heads": 32, "num_key_value_heads": 8}))
    return path


def write_reference_index(folder: Path, n_refs: int, n_layers: int = 4) -> Path:
    """An index of `n_refs` synthetic references of the same shapes (random sketches, no weights)."""
    from modelprov.findings import Reference
    from modelprov.weights.fingerprint import (
        ModelFingerprint, SketchSpec, TensorFingerprint, describe_tensor, sketch_indices,
    )
    from modelprov.reader import TensorInfo
    from modelprov.index import ReferenceIndex

    spec = SketchSpec()
    index = ReferenceIndex.create(folder)
    rng = np.random.default_rng(0)
    for r in range(n_refs):
        tensors: list[TensorFingerprint] = []
        sketches = {}
        for name, shape in tensor_shapes(n_layers).items():
            fp = describe_tensor(TensorInfo(name, "BF16", shape, folder, (0, 0)))
            rows, cols = sketch_indices(fp.shape2d, spec)
            fp.sketch_shape = (len(rows), len(cols))
            tensors.append(fp)
            sketches[name] = rng.standard_normal(fp.sketch_shape).astype(np.float32)
        index.add_weights(Reference(f"synthetic-{r}"), ModelFingerprint(tensors, sketches, spec, {"format": "synthetic"}))
    return folder


def run_case(checkpoint: Path, index: Path) -> dict:
    """One scan in this process: wall time, peak RSS, bytes read."""
    import resource

    from modelprov.scan import scan

    start = time.perf_counter()
    report = scan(checkpoint, index, hash_files=False)
    elapsed = time.perf_counter() - start
    b = report.details["weights"]["bytes"]
    return {"seconds": round(elapsed, 2), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "checkpoint_bytes": b["checkpoint"], "bytes_read": b["read_total"],
            "fraction_read": round(b["fraction_read"], 4), "pairs_compared": report.details["weights"]["pairs_compared"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="*", default=[1, 4, 16])
    parser.add_argument("--refs", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--out", default=None)
    parser.add_argument("--case", nargs=2, metavar=("CHECKPOINT", "INDEX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child process: one measurement, clean peak memory
        print(json.dumps(run_case(Path(args.case[0]), Path(args.case[1]))))
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="scan_scaling_") as tmp:
        root = Path(tmp)
        indexes = {n: write_reference_index(root / f"index{n}", n) for n in sorted(set(args.refs) | {1})}
        checkpoints = {gb: write_sparse_checkpoint(root / f"ckpt{gb:g}", gb) for gb in args.sizes}
        cases = [(gb, 1) for gb in args.sizes] + [(min(args.sizes), n) for n in args.refs if n != 1]
        for gb, n in cases:
            out = subprocess.run([sys.executable, "-m", "benchmarks.scan_scaling", "--case", str(checkpoints[gb].parent),
                                  str(indexes[n])], capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
            row = {"checkpoint_gb": gb, "references": n, **json.loads(out.stdout.strip().splitlines()[-1])}
            print(json.dumps(row), flush=True)
            results.append(row)
    if args.out:
        Path(args.out).write_text(json.dumps({"cases": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
