"""Nearest-source recall on transformers' own lineage, against the shipped code index.

Ground truth: each `modular_X.py` of the pinned transformers wheel imports the models X was written from
(`from ..glm4_moe.modeling_glm4_moe import Glm4MoeMoE`). Every model with such parents is scanned: its
generated `modeling_X.py` (read from the pinned wheel, never imported) against the shipped index *without*
X's own files and without the models written from X (transitively: modular imports and `# Copied from`
declarations the index records), nor vLLM's and SGLang's ports of those models: the index as it could
have been before X existed. A hit at k: one of the first k nearest source files is a transformers file of
a parent.

Run: `python -m benchmarks.code_lineage [--markdown]` (needs the pinned wheels: `make reference-wheels`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
import zipfile
from pathlib import Path, PurePosixPath

from modelprov.code import load_corpus, scan_code
from modelprov.code.build import load_sources, model_name
from modelprov.code.index import WHEELS_DIR, default_code_index_dir

RESULTS = Path(__file__).with_name("code_lineage.json")
_IMPORT = re.compile(r"^from \.\.(\w+)\.(?:modeling|modular)_\w+ import", re.MULTILINE)


def lineage(wheel: Path) -> tuple[dict[str, set[str]], dict[str, bytes]]:
    """Parents of each model (from its modular file) and the generated modelling file of each."""
    parents: dict[str, set[str]] = {}
    modeling: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            parts = PurePosixPath(name).parts
            if len(parts) != 4 or parts[:2] != ("transformers", "models"):
                continue
            model = parts[2]
            if parts[3] == f"modular_{model}.py":
                found = set(_IMPORT.findall(archive.read(name).decode("utf-8", "replace"))) - {model}
                if found:
                    parents[model] = found
            elif parts[3] == f"modeling_{model}.py":
                modeling[model] = archive.read(name)
    return {m: p for m, p in parents.items() if m in modeling}, modeling


def declared_copies(corpus) -> dict[str, set[str]]:
    """Model -> models it declares copies from (`# Copied from`, modular), as recorded in the transformers entry."""
    entry = next(e for e in corpus.entries if e.reference.name == "transformers")
    out: dict[str, set[str]] = {}
    for record in entry.manifest["files"]:
        child = model_name(record["path"])
        out.setdefault(child, set()).update(model_name(p) for p in record.get("parent_files", []) if model_name(p) != child)
    return out


def descendants(model: str, relations: dict[str, set[str]]) -> set[str]:
    """Models written (transitively) from `model`."""
    out: set[str] = set()
    frontier = {model}
    while frontier:
        frontier = {child for child, ps in relations.items() if ps & frontier and child not in out and child != model}
        out |= frontier
    return out


def run(out_dir: Path) -> dict:
    code_dir = default_code_index_dir()
    source = next(s for s in load_sources(code_dir)[0] if s.name == "transformers")
    parents, modeling = lineage(code_dir / WHEELS_DIR / source.wheel)
    corpus = load_corpus()
    relations = declared_copies(corpus)
    for child, ps in parents.items():
        relations.setdefault(child, set()).update(ps)
    rows, times = [], []
    for model in sorted(parents):
        left_out = {model} | descendants(model, relations)
        subject = out_dir / f"modeling_{model}.py"
        subject.write_bytes(modeling[model])
        patterns = [p for m in sorted(left_out) for p in (f"transformers/models/{m}/*", f"*/models/{m}.py")]
        start = time.perf_counter()
        result = scan_code(subject, corpus=corpus, exclude=patterns)
        times.append(time.perf_counter() - start)
        ranked = [(s.reference.split("@")[0], model_name(s.path)) for s in result.files[0].sources]
        hits = [name == "transformers" and folder in parents[model] for name, folder in ranked]
        rows.append({"model": model, "parents": sorted(parents[model]), "left_out": len(left_out),
                     "ranked": [f"{n}:{f}" for n, f in ranked], "top1": any(hits[:1]), "top3": any(hits[:3])})
    n = len(rows)
    return {
        "models": n,
        "top1": sum(r["top1"] for r in rows), "top3": sum(r["top3"] for r in rows),
        "top1_rate": round(sum(r["top1"] for r in rows) / n, 4), "top3_rate": round(sum(r["top3"] for r in rows) / n, 4),
        "scan_seconds_median": round(statistics.median(times), 3), "scan_seconds_max": round(max(times), 3),
        "misses": [r for r in rows if not r["top1"]],
        "solar_open": next((r for r in rows if r["model"] == "solar_open"), None),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        summary = run(Path(tmp))
    args.out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(f"{summary['models']} models: top-1 {summary['top1']} ({summary['top1_rate']:.1%}), "
          f"top-3 {summary['top3']} ({summary['top3_rate']:.1%}); scan median {summary['scan_seconds_median']} s")
    for miss in summary["misses"]:
        print(f"  miss {miss['model']}: parents {', '.join(miss['parents'])}; ranked {', '.join(miss['ranked'][:3])}")


if __name__ == "__main__":
    main()
