"""Measured null and signal of the weights statistics: centred similarity of same-role tensor pairs.

For each (suspect, reference) pair of models, compares every suspect matrix with the reference matrix
of the same role and layer on the sketches (n entries each) and reports mean, sd·sqrt(n) (1.0 under
the analytic null) and max |r| — for independent models (fresh init, trained from another seed) and
derived ones (fine-tune, cast). docs/weights.md quotes the output.

    python -m benchmarks.weights_null SUSPECT_DIR[=label] ... [--reference DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from modelprov.weights.fingerprint import WEAK_ROLES, SketchSpec, fingerprint_checkpoint
from modelprov.reader import open_checkpoint
from modelprov.weights.similarity import centred_similarity, raw_cosine


def _fingerprint(path: str):
    with open_checkpoint(path) as ckpt:
        return fingerprint_checkpoint(ckpt, SketchSpec())


def measure(suspect: str, reference: str) -> dict:
    a, b = _fingerprint(suspect), _fingerprint(reference)
    def keyed(fp):  # role, layer, shape and the occurrence among such tensors (two norms per layer)
        seen: dict[tuple, int] = {}
        out = {}
        for t in fp.tensors:
            k = (t.role, t.layer, t.shape)
            seen[k] = seen.get(k, 0) + 1
            out[(*k, seen[k])] = t.name
        return out

    by_key = keyed(b)
    strong, norms, biases = [], [], []
    for key, name in keyed(a).items():
        t = a.tensor(name)
        other = by_key.get(key)
        if other is None:
            continue
        x, y = a.sketches[t.name], b.sketches[other]
        row = (centred_similarity(x, y), raw_cosine(x, y), x.size)
        (norms if t.role == "norm_weight" else biases if t.role in WEAK_ROLES else strong).append(row)
    out = {}
    for label, rows in (("matrices", strong), ("norm_weights", norms), ("biases", biases)):
        if not rows:
            continue
        r = np.array([x[0] for x in rows])
        cos = np.array([x[1] for x in rows])
        n = np.array([x[2] for x in rows])
        out[label] = {"pairs": len(rows), "median_n": int(np.median(n)), "mean_centred": float(r.mean()),
                      "sd_times_sqrt_n": float(np.std(r * np.sqrt(n))), "max_abs_centred": float(np.abs(r).max()),
                      "min_centred": float(r.min()), "median_raw_cosine": float(np.median(cos))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suspects", nargs="+", help="DIR or DIR=label")
    parser.add_argument("--reference", required=True)
    parser.add_argument("--out")
    args = parser.parse_args()
    results = {}
    for item in args.suspects:
        path, _, label = item.partition("=")
        results[label or Path(path).name] = measure(path, args.reference)
        print(json.dumps({label or path: results[label or Path(path).name]}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
