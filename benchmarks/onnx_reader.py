"""Peak memory and time of reading a ~1 GB ONNX model (external data, and embedded) against the same weights as
safetensors.

    python -m benchmarks.onnx_reader --size-gb 1 --markdown

Generates a Llama-shaped float32 model under `benchmarks/_work/onnx/` three ways with byte-identical tensor
data: one safetensors file; `model.onnx` + `model.onnx.data` (every initialiser external, MatMul weights
[in, out] as exporters store them); and one `model.onnx` with the weights embedded as `raw_data`. Each stage
runs in a fresh process (page cache dropped first when run as root) and reports its peak RSS (`VmHWM`) and
time: open and list the tensors, 32 random rows of every tensor, every tensor in 64 MiB row blocks.
`--markdown` rewrites the table in docs/reader.md between its `onnx-benchmark` markers.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.reader_memory import peak_rss_mb
from modelprov.reader._safetensors import encode_header

WORK = Path(__file__).resolve().parent / "_work" / "onnx"
DOC = Path(__file__).resolve().parent.parent / "docs" / "reader.md"
HIDDEN, INTERMEDIATE, VOCAB = 2048, 5632, 32000
FORMATS = ("safetensors", "onnx_external", "onnx_embedded")
STAGES = ("baseline", "list", "sample_rows", "read_blocks")
SAMPLE_ROWS = 32
BLOCK_BYTES = 64 << 20
_MARK_START, _MARK_END = "<!-- onnx-benchmark:start -->", "<!-- onnx-benchmark:end -->"


def _layout(size_gb: float) -> list[tuple[str, tuple[int, ...]]]:
    """(name, stored shape) of a float32 Llama-like model of about `size_gb` GB; linear weights [in, out]."""
    tensors = [("embed_tokens.weight", (VOCAB, HIDDEN))]
    per_layer = (4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE) * 4
    layers = max(1, round((size_gb * 1e9 - 2 * VOCAB * HIDDEN * 4) / per_layer))
    for i in range(layers):
        p = f"layers.{i}."
        tensors += [(p + "input_layernorm.weight", (HIDDEN,))]
        tensors += [(p + f"self_attn.{m}_proj.weight", (HIDDEN, HIDDEN)) for m in "qkvo"]
        tensors += [(p + "post_attention_layernorm.weight", (HIDDEN,))]
        tensors += [(p + "mlp.gate_proj.weight", (HIDDEN, INTERMEDIATE)), (p + "mlp.up_proj.weight", (HIDDEN, INTERMEDIATE)),
                    (p + "mlp.down_proj.weight", (INTERMEDIATE, HIDDEN))]
    return tensors + [("norm.weight", (HIDDEN,)), ("lm_head.weight", (HIDDEN, VOCAB))]


def _data(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32) * 0.02


def generate(size_gb: float) -> dict[str, int]:
    """Write the three forms; tensors are generated one at a time (the embedded ONNX is built in memory)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shutil.rmtree(WORK, ignore_errors=True)
    for fmt in FORMATS:
        (WORK / fmt).mkdir(parents=True)
    layout = _layout(size_gb)
    prefix, ranges = encode_header([(name, "F32", shape) for name, shape in layout])
    nodes, external, embedded = [], [], []
    x = "x"
    with open(WORK / "safetensors" / "model.safetensors", "wb") as st, \
            open(WORK / "onnx_external" / "model.onnx.data", "wb") as data:
        st.write(prefix)
        for k, (name, shape) in enumerate(layout):
            arr = _data(shape, k)
            st.write(arr.tobytes())
            offset = data.tell()
            data.write(arr.tobytes())
            t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape),
                            data_location=TensorProto.EXTERNAL)
            for key, value in (("location", "model.onnx.data"), ("offset", str(offset)), ("length", str(arr.nbytes))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            external.append(t)
            embedded.append(numpy_helper.from_array(arr, name))
            op = "Gather" if name.startswith("embed") else "MatMul" if len(shape) == 2 else "Mul"
            inputs = [name, "ids"] if op == "Gather" else [x, name]
            nodes.append(helper.make_node(op, inputs, [f"h{k}"], name=f"/{name.rsplit('.', 1)[0].replace('.', '/')}/{op}"))
            x = f"h{k}"
    for fmt, inits in (("onnx_external", external), ("onnx_embedded", embedded)):
        graph = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info("ids", TensorProto.INT64, None)],
                                  [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], initializer=inits)
        (WORK / fmt / "model.onnx").write_bytes(helper.make_model(graph).SerializeToString())
        del graph
    return {fmt: sum(f.stat().st_size for f in (WORK / fmt).iterdir()) for fmt in FORMATS} | {"tensors": len(layout)}


def _stage(fmt: str, name: str) -> dict[str, float]:
    from modelprov.reader import open_checkpoint

    start = time.perf_counter()
    if name == "baseline":
        return {"seconds": 0.0}
    with open_checkpoint(WORK / fmt) as ckpt:
        infos = list(ckpt.tensors())
        rng = np.random.default_rng(0)
        for info in infos if name != "list" else []:
            if name == "sample_rows":
                ckpt.read_rows(info.name, np.sort(rng.choice(info.rows, min(SAMPLE_ROWS, info.rows), replace=False)))
            else:
                step = max(1, BLOCK_BYTES // (4 * max(1, info.row_length)))
                for first in range(0, info.rows, step):
                    ckpt.read_rows(info.name, slice(first, first + step))
    return {"seconds": time.perf_counter() - start, "tensors": len(infos)}


def _drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=False)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _run(fmt: str, name: str) -> dict[str, float]:
    dropped = _drop_caches()
    out = subprocess.run([sys.executable, "-m", "benchmarks.onnx_reader", "--stage", fmt, name], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    return {**json.loads(out.stdout), "cold": dropped}


def _table(results: dict[str, dict[str, dict[str, float]]], sizes: dict[str, int]) -> str:
    rows = ["| form | size (MB) | baseline RSS | open + list: RSS / s | 32 rows of every tensor: RSS / s | "
            "every tensor in 64 MiB blocks: RSS / s |", "|---|---:|---:|---:|---:|---:|"]
    for fmt in FORMATS:
        r = results[fmt]
        cells = [f"{r[s]['peak_rss_mb']:.0f} MB / {r[s]['seconds']:.2f}" for s in STAGES[1:]]
        rows.append(f"| {fmt.replace('_', ' ')} | {sizes[fmt] / 1e6:,.0f} | {r['baseline']['peak_rss_mb']:.0f} MB | "
                    + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--markdown", action="store_true", help="write the table into docs/reader.md")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--stage", nargs=2, metavar=("FORMAT", "STAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        fmt, name = args.stage
        result = _stage(fmt, name)
        print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))
        return
    sizes = generate(args.size_gb)
    results = {fmt: {name: _run(fmt, name) for name in STAGES} for fmt in FORMATS}
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cpus",
            "load": open("/proc/loadavg").read().split()[:3], "sizes": sizes, "cold": results["safetensors"]["list"]["cold"]}
    (WORK.parent / "onnx_reader.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    table = _table(results, sizes)
    print(table)
    print(json.dumps(meta))
    if args.markdown:
        text = DOC.read_text()
        head, rest = text.split(_MARK_START, 1)
        _, tail = rest.split(_MARK_END, 1)
        note = (f"Measured {meta['date']} ({meta['machine']}, load average {' '.join(meta['load'])}, page cache "
                f"{'dropped before each stage' if meta['cold'] else 'warm'}; {sizes['tensors']} tensors).")
        DOC.write_text(f"{head}{_MARK_START}\n{table}\n\n{note}\n{_MARK_END}{tail}")
    if not args.keep:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
