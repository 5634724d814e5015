"""Benchmark of the code scanner: index transformers' modelling files, scan a 2,000-line plagiarised file.

Ground truth is built, not assumed: positives are reference functions (seeded sample) pasted into one file
whose every identifier is then renamed, with dead code inserted and the layout reformatted; negatives are
functions of code that is not in the index (torch.optim, torch.distributions, scikit-learn). A positive
counts as found when a finding names an origin whose abstracted stream tiles >= 90% with the pasted source.

Run: `python -m benchmarks.code_scan [--out docs/code-scan-benchmark.json]`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import resource
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from modelprov.code import CodeIndex, scan_code
from modelprov.code.fingerprint import DEFAULT_PARAMS
from modelprov.code.index import load_reference
from modelprov.code.tiling import greedy_string_tiling
from modelprov.code.tokenize import tokenize_source
from tests.code.mutate import insert_dead_code, reformat, rename_all

NEGATIVE_PACKAGES = ("torch.optim", "torch.distributions", "sklearn.linear_model", "sklearn.cluster")
MIN_TOKENS = 40  # functions shorter than this are too generic to be evidence either way
TARGET_LINES = 2000


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn):
    wall, cpu = time.perf_counter(), _cpu()
    value = fn()
    return value, time.perf_counter() - wall, _cpu() - cpu


def _functions(path: Path, text: str) -> list[tuple[str, str, int]]:
    """(qualname, dedented source, abstract token count) of leaf functions with >= MIN_TOKENS tokens."""
    tokens = tokenize_source(text.encode("utf-8"), "python")
    lines = text.splitlines()
    sizes = np.bincount(tokens.unit_of, minlength=len(tokens.units))
    names = [u.qualname for u in tokens.units]
    out = []
    for i, unit in enumerate(tokens.units):
        if unit.kind != "function" or sizes[i] < MIN_TOKENS or any(n.startswith(unit.qualname + ".") for n in names):
            continue
        body = textwrap.dedent("\n".join(lines[unit.start_line - 1 : unit.end_line]))
        if body.lstrip().startswith(("def ", "async def ")):
            out.append((unit.qualname, body, int(sizes[i])))
    return out


def _negatives(rng: random.Random, count: int) -> list[tuple[str, str]]:
    pool = []
    for package in NEGATIVE_PACKAGES:
        folder = Path(importlib.import_module(package).__file__).parent
        for path in sorted(folder.glob("*.py")):
            pool += [(f"{package}/{path.name}::{q}", src) for q, src, _ in _functions(path, path.read_text("utf-8"))]
    return rng.sample(pool, min(count, len(pool)))


def _positives(entry, rng: random.Random, count: int) -> list[tuple[str, str, np.ndarray]]:
    files = entry.manifest["files"]
    chosen = []
    for index in rng.sample(range(len(files)), len(files)):
        path = files[index]["path"]
        text = entry.source(index).decode("utf-8")
        for qualname, source, _ in _functions(Path(path), text):
            chosen.append((f"{path}::{qualname}", source, tokenize_source(source.encode(), "python").ids))
            break
        if len(chosen) >= count:
            break
    return chosen


def _subject(positives, negatives) -> tuple[str, dict[str, tuple[str, bool]]]:
    """One file of renamed samples; returns the source and sample name -> (origin, is_copy)."""
    parts, truth = [], {}
    items = [(name, src, True) for name, src, _ in positives] + [(name, src, False) for name, src in negatives]
    random.Random(1).shuffle(items)
    for i, (name, source, is_copy) in enumerate(items):
        head, _, rest = source.partition("(")
        parts.append(head.rsplit(" ", 1)[0] + f" sample_{i}(" + rest)
        truth[f"sample_{i}"] = (name, is_copy)
    return "\n\n\n".join(parts) + "\n", truth


def run(out: Path | None, positives_count: int = 35) -> dict:
    rng = random.Random(20260101)
    with tempfile.TemporaryDirectory() as tmp:
        index = CodeIndex(Path(tmp) / "index")
        reference, index_wall, index_cpu = _timed(
            lambda: index.add("pip:transformers", name="transformers", license="Apache-2.0", include=["models/*/modeling_*.py"])
        )
        index.add("pip:torch/nn/modules", name="torch-nn", license="BSD-3-Clause", role="background")
        entry = load_reference(index, next(index.directory.glob("transformers@*")))
        positives = _positives(entry, rng, positives_count)
        negatives = _negatives(rng, positives_count)
        source, truth = _subject(positives, negatives)
        renamed, mapping = rename_all(source)
        mutated = reformat(insert_dead_code(renamed))
        subject = Path(tmp) / "modeling_suspect.py"
        subject.write_text(mutated, encoding="utf-8")
        scan_code(subject, index.directory)  # warm the page cache; timings below are the second run
        result, scan_wall, scan_cpu = _timed(lambda: scan_code(subject, index.directory))

        source_ids = {name: ids for name, _, ids in positives}
        found = {}
        for match in (m for f in result.files for m in f.matches):
            found[match.subject_qualname] = match
        tp = fp = fn = 0
        misses, false_alarms = [], []
        by_size = {"40-79 tokens": [0, 0], ">=80 tokens": [0, 0]}  # [found, total]
        for sample, (origin, is_copy) in truth.items():
            match = found.get(mapping.get(sample, sample))
            if is_copy:
                ok = False
                if match is not None:
                    ref = entry if match.reference.startswith("transformers@") else None
                    if ref is not None:
                        unit = ref.unit_index(f"{match.reference_path}::{match.reference_qualname}")
                        tiles = greedy_string_tiling(source_ids[origin], ref.unit_ids(unit), DEFAULT_PARAMS.min_match)
                        ok = sum(t.length for t in tiles) >= 0.9 * source_ids[origin].shape[0]
                tp += ok
                fn += not ok
                bucket = by_size["40-79 tokens" if source_ids[origin].shape[0] < 80 else ">=80 tokens"]
                bucket[0] += ok
                bucket[1] += 1
                if not ok:
                    misses.append(origin)
            elif match is not None:
                fp += 1
                false_alarms.append(f"{origin} -> {match.reference_path}::{match.reference_qualname} ({match.similarity})")
        real = Path(importlib.import_module("transformers").__file__).parent / "models/glm4v_moe/modeling_glm4v_moe.py"
        real_result, real_wall, real_cpu = _timed(lambda: scan_code(real, index.directory))

    report = {
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "index": {
            "files": reference.files,
            "tokens": reference.tokens,
            "units": reference.units,
            "fingerprints": reference.fingerprints,
            "wall_s": round(index_wall, 2),
            "cpu_s": round(index_cpu, 2),
        },
        "scan_plagiarised": {
            "lines": mutated.count("\n"),
            "positives": len(positives),
            "negatives": len(negatives),
            "wall_s": round(scan_wall, 3),
            "cpu_s": round(scan_cpu, 3),
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
            "recall_by_size": {k: f"{found}/{total}" for k, (found, total) in by_size.items()},
            "misses": misses,
            "false_alarms": false_alarms,
        },
        "scan_real_file": {
            "file": "models/glm4v_moe/modeling_glm4v_moe.py",
            "lines": real.read_text().count("\n"),
            "wall_s": round(real_wall, 3),
            "cpu_s": round(real_cpu, 3),
            "findings": len(real_result.findings),
            "coverage": round(real_result.files[0].coverage, 4),
        },
        "params": DEFAULT_PARAMS.to_dict(),
    }
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--positives", type=int, default=35, help="copied functions (and as many independent ones)")
    args = parser.parse_args()
    print(json.dumps(run(args.out, args.positives), indent=2))


if __name__ == "__main__":
    main()
