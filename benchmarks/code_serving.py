"""Serving-code cases against the shipped code index: disguised vLLM and SGLang model files, and independent code.

Positives: model files of the GLM, DeepSeek, Qwen, Llama, Mistral and Gemma families from the pinned vLLM
and SGLang wheels (read as zips), each disguised as in tests/code/test_serving.py (comments stripped,
definitions reordered, every identifier renamed). A positive is found when the first nearest source is the
original file. Negatives: modules of torch and scikit-learn, which are not in the index; any finding on
them is a false positive.

Run: `python -m benchmarks.code_serving` (needs the pinned wheels: `make reference-wheels`).
"""

from __future__ import annotations

import importlib
import json
import tempfile
import time
import zipfile
from pathlib import Path

from modelprov.code import load_corpus, scan_code
from modelprov.code.build import load_sources
from modelprov.code.index import WHEELS_DIR, default_code_index_dir
from tests.code.mutate import rename_all, reorder_definitions
from tests.code.test_serving import _strip_comments

RESULTS = Path(__file__).with_name("code_serving.json")
MODELS = ("glm4_moe", "glm4", "deepseek_v2", "qwen2", "qwen3_moe", "llama", "mixtral", "gemma3")
FOLDERS = {"vllm": "vllm/model_executor/models", "sglang": "sglang/srt/models"}
NEGATIVES = ("torch.optim.adamw", "torch.optim.lbfgs", "torch.distributions.normal", "sklearn.linear_model._ridge",
             "sklearn.cluster._kmeans", "sklearn.decomposition._pca")


def main() -> None:
    code_dir = default_code_index_dir()
    wheels = {s.name: code_dir / WHEELS_DIR / s.wheel for s in load_sources(code_dir)[0]}
    corpus = load_corpus()
    rows, times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for engine, folder in FOLDERS.items():
            with zipfile.ZipFile(wheels[engine]) as archive:
                for model in MODELS:
                    member = f"{folder}/{model}.py"
                    if member not in archive.namelist():
                        continue
                    disguised, _ = rename_all(reorder_definitions(_strip_comments(archive.read(member).decode())))
                    path = Path(tmp) / f"{engine}_{model}_mine.py"
                    path.write_text(disguised, encoding="utf-8")
                    start = time.perf_counter()
                    result = scan_code(path, corpus=corpus)
                    times.append(time.perf_counter() - start)
                    sources = result.files[0].sources
                    top = f"{sources[0].reference.split('@')[0]}:{sources[0].path}" if sources else None
                    rows.append({"case": f"{engine}:{member}", "positive": True, "top": top,
                                 "found": top == f"{engine}:{member}", "family": sources[0].tags.get("family") if sources else None,
                                 "findings": len(result.findings)})
        for module in NEGATIVES:
            path = Path(importlib.import_module(module).__file__)
            start = time.perf_counter()
            result = scan_code(path, corpus=corpus)
            times.append(time.perf_counter() - start)
            rows.append({"case": module, "positive": False, "findings": len(result.findings),
                         "found": bool(result.findings), "coverage": round(result.files[0].coverage, 4)})
    tp = sum(r["found"] for r in rows if r["positive"])
    fp = sum(r["found"] for r in rows if not r["positive"])
    positives = sum(r["positive"] for r in rows)
    summary = {"positives": positives, "negatives": len(rows) - positives, "true_positives": tp, "false_positives": fp,
               "recall": round(tp / positives, 4), "precision": round(tp / (tp + fp), 4) if tp + fp else None,
               "scan_seconds_median": round(sorted(times)[len(times) // 2], 3), "rows": rows}
    RESULTS.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(f"recall {tp}/{positives}, false positives {fp}/{summary['negatives']}, precision {summary['precision']}")
    for r in rows:
        if r["positive"] != r["found"]:
            print("  wrong:", r)


if __name__ == "__main__":
    main()
