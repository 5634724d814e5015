"""Measure how far the quantised suite cases read back from their source, and how fast they dequantise.

    python -m benchmarks.detection.measure_quantised [--suite benchmarks/_work/suite]

For each safetensors case written by a quantising writer, every quantised weight is read through
`open_checkpoint` and compared with the source tensor (rms error / source std, max |Δ| / max |W|,
mean-centred Pearson r); the K-quant encoders are measured on the SmolLM2 source matrices through
`gguf.quants.dequantize`. Prints one JSON object.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.detection import derive
from benchmarks.detection.build_suite import DEFAULT_OUT
from modelprov.reader import open_checkpoint

CASES = {"smollm2_gptq_int4": "smollm2_hf", "smollm2_awq_int4": "smollm2_hf", "smollm2_fp8_block": "smollm2_bf16",
         "minilm_int8_compressed": None}


def _stats(read: np.ndarray, src: np.ndarray) -> tuple[float, float, float]:
    err = read - src
    a, b = read.ravel() - read.mean(), src.ravel() - src.mean()
    r = float(a @ b / np.sqrt((a @ a) * (b @ b)))
    return float(np.sqrt(np.mean(err**2)) / src.std()), float(np.abs(err).max() / np.abs(src).max()), r


def _summary(rows: list[tuple[float, float, float]], params: int, seconds: float) -> dict[str, float]:
    arr = np.array(rows)
    return {"weights": len(rows), "rms_err_over_std_median": round(float(np.median(arr[:, 0])), 5),
            "rms_err_over_std_max": round(float(arr[:, 0].max()), 5),
            "max_abs_err_over_max_abs_max": round(float(arr[:, 1].max()), 5),
            "centred_r_min": round(float(arr[:, 2].min()), 6),
            "dequantised_params_per_s": round(params / seconds) if seconds else None}


def measure(suite: Path) -> dict[str, object]:
    manifest = json.loads((suite / "suite.json").read_text())
    minilm = Path(manifest["references"]["minilm"]["path"])
    out: dict[str, object] = {}
    for case, source in CASES.items():
        folder = suite / case
        if not folder.is_dir():
            continue
        src_dir = minilm if source is None else suite / "_sources" / source
        src, _ = derive.load_checkpoint(src_dir)
        rows, params, seconds = [], 0, 0.0
        with open_checkpoint(folder) as ck:
            for info in ck.tensors():
                if info.dtype not in (ck.metadata.get("quantisation") or {}).get("schemes", {}):
                    continue
                started = time.perf_counter()
                read = ck.read(info.name)
                seconds += time.perf_counter() - started
                params += info.numel
                rows.append(_stats(read, src[info.name].float().numpy()))
            out[case] = {"scheme": ck.quantisation, **_summary(rows, params, seconds)}
    src, _ = derive.load_checkpoint(suite / "_sources" / "smollm2_hf")
    import gguf
    from gguf.quants import dequantize

    for qtype, encode in (("Q6_K", derive.quantize_q6_k), ("Q4_K", derive.quantize_q4_k)):
        rows = []
        mats = [t.float().numpy() for n, t in src.items() if t.ndim == 2 and t.shape[1] % derive.QK_K == 0]
        for w in mats:
            rows.append(_stats(dequantize(encode(w), gguf.GGMLQuantizationType[qtype]), w))
        out[f"encoder_{qtype}"] = _summary(rows, 0, 0.0)
    return out


@click.command()
@click.option("--suite", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True)
def main(suite: Path) -> None:
    """Print dequantisation error and speed of the quantised suite cases as JSON."""
    click.echo(json.dumps(measure(suite), indent=2))


if __name__ == "__main__":
    main()
