"""Measured null of the neuron-matching test: independent models matched neuron by neuron, all layer pairs.

For each independent suite case, every (suspect layer, reference layer) pair and every compatible
(reference tensor, suspect tensor) is matched one-to-one, under the unchanged residual map and under
the map fitted on the embeddings (which independently trained models can partly satisfy). Reports the
empirical per-neuron hit rate against the nominal α, how often a tensor reaches the evidence threshold
(log10 p ≤ −6: a false positive), and the largest quick layer score the probe gate (0.1) would see.
docs/weights.md quotes the output.

    python -m benchmarks.neuron_null [--suite benchmarks/_work/suite] [--out benchmarks/_work/neuron_null.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from modelprov.index import ReferenceIndex
from modelprov.reader import SuspectReader, checkpoint_tokens, open_checkpoint
from modelprov.weights.fingerprint import SKETCH_VERSION, sample_indices, suspect_fingerprints
from modelprov.weights.matchers.neuron import LAYER_PROBE, layer_null_matches, reference_neurons, reference_width
from modelprov.weights.neurons import ALPHA
from modelprov.weights.residual import identity_map, residual_maps

DEFAULT_SUITE = Path(__file__).resolve().parent / "_work" / "suite"


def measure_case(path: Path, index: ReferenceIndex, reference: str) -> list[dict]:
    fp = index.fingerprint(reference)
    width = reference_width(fp)
    refs = reference_neurons(fp, width)
    columns = sample_indices(width, fp.spec.cols, SKETCH_VERSION)
    out = []
    with open_checkpoint(path) as ckpt:
        suspects = suspect_fingerprints(ckpt)
        reader = SuspectReader(ckpt)
        maps = {"identity": identity_map(width)} if any(width in s.shape for s in suspects) else {}
        for name, m in residual_maps(reader, suspects, fp, checkpoint_tokens(ckpt)).items():
            maps[f"fitted on {name} ({m.method}, held-out r {m.heldout_r:.3f})"] = m
        by_layer: dict[int, list] = {}
        for s in suspects:
            if s.layer is not None and s.stack is not None:
                by_layer.setdefault(s.layer, []).append(s)
        for label, rmap in maps.items():
            start = time.perf_counter()
            hits = trials = 0
            log_ps, probe = [], []
            for li, tensors in sorted(by_layer.items()):
                share, matches = layer_null_matches(reader, tensors, refs, rmap, columns)
                probe.append(share)
                for m in matches:
                    hits += m.hits
                    trials += len(m.reference_ids)
                    log_ps.append(m.log10_p)
            out.append({
                "case": path.name, "reference": reference, "residual_map": label, "matches": len(log_ps),
                "neurons": trials, "hit_rate": hits / trials if trials else 0.0, "nominal_alpha": ALPHA,
                "false_positive_tensors": int(np.sum(np.asarray(log_ps) <= -6.0)),
                "min_log10_p": float(min(log_ps, default=0.0)),
                "probe_max_share": max(probe, default=0.0), "probe_neurons_per_tensor": LAYER_PROBE,
                "seconds": round(time.perf_counter() - start, 1),
            })
            print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE)
    parser.add_argument("--out", type=Path, default=DEFAULT_SUITE.parent / "neuron_null.json")
    args = parser.parse_args()
    suite = json.loads((args.suite / "suite.json").read_text())
    index = ReferenceIndex.load(None)
    names = {e.reference.name for e in index.entries_of("weights")}
    rows = []
    for case in suite["cases"]:
        reference = suite["references"][case["source_reference"]]["name"].split("/")[-1]
        if case["derived"] or reference not in names or case["case"].startswith("composite"):
            continue
        rows += measure_case(args.suite / case["path"], index, reference)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    total = sum(r["neurons"] for r in rows)
    print(f"pooled hit rate {sum(r['hit_rate'] * r['neurons'] for r in rows) / total:.5f} (nominal {ALPHA}); "
          f"false-positive tensors {sum(r['false_positive_tensors'] for r in rows)} of {sum(r['matches'] for r in rows)}; "
          f"largest probe share {max(r['probe_max_share'] for r in rows):.3f}")


if __name__ == "__main__":
    main()
