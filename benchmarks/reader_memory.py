"""Peak memory and throughput of the checkpoint reader on a synthetic multi-GB sharded safetensors checkpoint.

    python -m benchmarks.reader_memory --size-gb 4

Generates a Llama-shaped BF16 checkpoint (sharded, with a weight-map index) under `benchmarks/_work/`, then runs
each stage in a fresh Python process and reports that process's peak RSS (`VmHWM`), time and throughput:
a plain sequential `read()` of the same files (the I/O ceiling), listing, sampled rows of every tensor,
streaming sha256, sha256 concurrent with row sampling, every tensor read whole one at a time, and every tensor
read in bounded row blocks. Page caches are dropped before each stage when permitted (root), else they are warm
and the output says so. The generated files are deleted afterwards unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from modelprov.reader._safetensors import encode_header

WORK = Path(__file__).resolve().parent / "_work"
HIDDEN, INTERMEDIATE, VOCAB = 4096, 11008, 32000
STAGES = ("baseline", "plain_read", "list", "sample_rows", "hash", "hash_and_sample", "read_whole", "read_blocks")
SAMPLE_ROWS = 32
BLOCK_BYTES = 64 << 20  # float32 bytes per row block in `read_blocks`


# ---------------------------------------------------------------------------------------------- generation
def _layout(size_gb: float) -> list[tuple[str, str, tuple[int, ...]]]:
    """Tensor (name, dtype, shape) list of a Llama-like model of about `size_gb` GB (BF16 matrices, F32 norms)."""
    tensors = [("model.embed_tokens.weight", "BF16", (VOCAB, HIDDEN))]
    per_layer = (4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE) * 2
    layers = max(1, round((size_gb * 1e9 - 2 * VOCAB * HIDDEN * 2) / per_layer))
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors += [(p + "input_layernorm.weight", "F32", (HIDDEN,))]
        tensors += [(p + f"self_attn.{m}_proj.weight", "BF16", (HIDDEN, HIDDEN)) for m in "qkvo"]
        tensors += [(p + "post_attention_layernorm.weight", "F32", (HIDDEN,))]
        tensors += [(p + "mlp.gate_proj.weight", "BF16", (INTERMEDIATE, HIDDEN)),
                    (p + "mlp.up_proj.weight", "BF16", (INTERMEDIATE, HIDDEN)),
                    (p + "mlp.down_proj.weight", "BF16", (HIDDEN, INTERMEDIATE))]
    tensors += [("model.norm.weight", "F32", (HIDDEN,)), ("lm_head.weight", "BF16", (VOCAB, HIDDEN))]
    return tensors


def generate(folder: Path, size_gb: float, shard_gb: float = 1.0, seed: int = 0) -> dict[str, int]:
    """Stream a sharded safetensors checkpoint to `folder` (random bits, a few MiB of memory); return sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = {"BF16": 2, "F32": 4}
    shards: list[list[tuple[str, str, tuple[int, ...]]]] = [[]]
    filled = 0
    for t in _layout(size_gb):
        nbytes = int(np.prod(t[2])) * sizes[t[1]]
        if filled and filled + nbytes > shard_gb * 1e9:
            shards.append([])
            filled = 0
        shards[-1].append(t)
        filled += nbytes
    weight_map = {}
    total = 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        prefix, ranges = encode_header(shard)
        weight_map.update({tname: name for tname in ranges})
        offset = max(end for _, end in ranges.values())
        with open(folder / name, "wb") as f:
            f.write(prefix)
            left = offset
            while left:
                n = min(left, 32 << 20)
                # finite bf16/f32 values: random mantissas, exponents kept away from inf/nan
                f.write((rng.integers(0, 1 << 16, n // 2, dtype=np.uint16) & 0xBFFF).tobytes())
                left -= n
        total += offset
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                                    "num_hidden_layers": sum(1 for t in _layout(size_gb)
                                                                             if t[0].endswith("q_proj.weight")),
                                                    "hidden_size": HIDDEN, "vocab_size": VOCAB}))
    return {"shards": len(shards), "tensors": len(weight_map), "bytes": sum(f.stat().st_size for f in folder.iterdir())}


# ---------------------------------------------------------------------------------------------- stages
def _stage(name: str, folder: Path) -> dict[str, float]:
    """Run one stage in this process; return seconds and bytes processed (peak RSS is added by the caller)."""
    from modelprov._hashing import FileHasher
    from modelprov.reader import open_checkpoint

    files = sorted(folder.glob("*.safetensors"))
    start = time.perf_counter()
    done = 0
    if name == "plain_read":
        buf = bytearray(16 << 20)
        for f in files:
            with open(f, "rb", buffering=0) as h:
                while n := h.readinto(buf):
                    done += n
    elif name == "hash":
        done = sum(d.size for d in FileHasher(files).result())
    elif name in ("list", "sample_rows", "hash_and_sample", "read_whole", "read_blocks"):
        with open_checkpoint(folder) as ckpt:
            infos = list(ckpt.tensors())
            hasher = FileHasher(files) if name == "hash_and_sample" else None
            rng = np.random.default_rng(0)
            for info in infos:
                if name in ("sample_rows", "hash_and_sample"):
                    rows = np.sort(rng.choice(info.rows, size=min(SAMPLE_ROWS, info.rows), replace=False))
                    ckpt.read_rows(info.name, rows)
                    done += len(rows)
                elif name == "read_whole":
                    done += info.nbytes
                    ckpt.read_rows(info.name)
                elif name == "read_blocks":
                    step = max(1, BLOCK_BYTES // (4 * max(1, info.row_length)))
                    for first in range(0, info.rows, step):
                        ckpt.read_rows(info.name, slice(first, first + step))
                    done += info.nbytes
            if hasher is not None:
                hashed = sum(d.size for d in hasher.result())
                return {"seconds": time.perf_counter() - start, "bytes": hashed, "sampled_rows": done}
            if name == "sample_rows":
                return {"seconds": time.perf_counter() - start, "bytes": 0, "sampled_rows": done}
    return {"seconds": time.perf_counter() - start, "bytes": done}


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). `ru_maxrss` is not used on Linux: it survives exec, so a child
    would report its parent's peak if that was higher."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_stage(name: str, folder: Path, drop: bool) -> dict[str, float]:
    if drop:
        _drop_caches()
    out = subprocess.run([sys.executable, "-m", "benchmarks.reader_memory", "--stage", name, str(folder)],
                         check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout)


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=4.0, help="checkpoint size to generate (default 4)")
    parser.add_argument("--keep", action="store_true", help="keep the generated checkpoint")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("folder", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:  # child process: run one stage, print its numbers
        if args.stage == "baseline":
            import modelprov._hashing  # noqa: F401  the imports every stage pays for
            import modelprov.reader  # noqa: F401
            result = {"seconds": 0.0, "bytes": 0}
        else:
            result = _stage(args.stage, args.folder)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    folder = WORK / "sharded"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        made = generate(folder, args.size_gb)
        print(f"generated {made['bytes'] / 1e9:.2f} GB in {made['shards']} shards, {made['tensors']} tensors "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        cold = _drop_caches()
        results = {stage: {"cold": _run_stage(stage, folder, cold), "warm": _run_stage(stage, folder, False)}
                   for stage in STAGES}
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    report = {"checkpoint": made, "page_cache": "dropped before each stage" if cold else "warm (not root)",
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_after": os.getloadavg()}, "stages": results}
    from modelprov._atomic import atomic_write

    with atomic_write(WORK / "reader_memory.json") as out:
        json.dump(report, out, indent=2)
    print(_table(results))


def _table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table: peak RSS and throughput per stage, cold and warm, relative to the plain sequential read."""
    lines = ["| stage | peak RSS (MB) | cold s | cold MB/s | cold vs plain | warm s | warm MB/s | warm vs plain |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for stage, runs in results.items():
        cells = [stage, f"{max(r['peak_rss_mb'] for r in runs.values()):.0f}"]
        for cache in ("cold", "warm"):
            r, plain = runs[cache], results["plain_read"][cache]
            rate = r["bytes"] / r["seconds"] / 1e6 if r["seconds"] and r["bytes"] else None
            ratio = rate / (plain["bytes"] / plain["seconds"] / 1e6) if rate else None
            cells += [f"{r['seconds']:.2f}", f"{rate:.0f}" if rate else "", f"{ratio:.2f}" if ratio else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
